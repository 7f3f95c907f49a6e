"""wallets_post() reads only the accounts and holds of its batch when it writes them.

The entries' insert looked up each entry's asset with a join on wallets_account, the balances'
update and the holds' update joined the batch's deltas to their tables, and the holds' check
joined the batch to wallets_hold. For a sweep's batch of thousands, PostgreSQL chose hash joins
that read the whole table: every account, for every batch, twice (30 ms each per batch with
100,000 accounts, and growing with the table). Each of those statements now also says which
rows it wants (`id = ANY` of the batch's account or hold ids), which bounds it to the batch.
Nothing else changes: the same checks, the same writes, the same signature.
"""

import importlib

from django.db import migrations


PREVIOUS = importlib.import_module("wallets.migrations.0005_ledger_post_function").POST_FUNCTION.replace(
    "CREATE FUNCTION wallets_post(", "CREATE OR REPLACE FUNCTION wallets_post(", 1
)

BOUNDED = {
    # The holds' check.
    "ON c.id = h.id AND c.account = h.account_id\n": "ON c.id = h.id AND c.account = h.account_id AND h.id = ANY (v_hold)\n",
    # The entries' asset.
    "JOIN wallets_account AS a ON a.id = e.account;": "JOIN wallets_account AS a ON a.id = e.account AND a.id = ANY (v_id);",
    # The balances.
    "WHERE a.id = d.id;": "WHERE a.id = d.id AND a.id = ANY (v_id);",
    # The holds.
    "WHERE h.id = c.id;": "WHERE h.id = c.id AND h.id = ANY (v_hold);",
}


def _bounded(text: str) -> str:
    for old, new in BOUNDED.items():
        if text.count(old) != 1:
            raise ValueError(f"wallets_post of 0005 does not hold {old!r} exactly once")
        text = text.replace(old, new)
    return text


POST_FUNCTION = _bounded(PREVIOUS)


class Migration(migrations.Migration):
    dependencies = [("wallets", "0006_entry_references_checked_per_statement")]

    operations = [migrations.RunSQL([POST_FUNCTION], [PREVIOUS])]
