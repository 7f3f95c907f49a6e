"""Assets, accounts, the double-entry ledger, holds, idempotency and the Chipi gateway."""
