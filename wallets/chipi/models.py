"""The sandbox's simulated chain: Chipi's wallets, transactions, balances per address and token, and
the outside-execution nonces each account has used.

Only ChipiSandbox reads and writes these tables. They live in the database (not in process memory)
so the sandbox behaves like one chain across processes and restarts, and custody keeps matching
the ledger that reconciliation compares it with.
"""

from __future__ import annotations

from django.db import models


class RawAmountField(models.Field):
    """A raw on-chain amount, a non-negative int of up to 38 digits, kept exactly in NUMERIC(38,0)
    (one ETH is already 10**18 raw units, far past what a float keeps)."""

    description = "Raw on-chain amount"

    def db_type(self, connection) -> str:
        return "numeric(38,0)"

    def from_db_value(self, value, expression, connection) -> int | None:
        return None if value is None else int(value)

    def to_python(self, value) -> int | None:
        return None if value is None else int(value)

    def get_db_prep_value(self, value, connection, prepared=False):
        return None if value is None else int(value)


class SandboxWallet(models.Model):
    """A wallet as Chipi keeps it (POST /chipi-wallets): its address, the owner's public key the
    account checks signatures with, and the private key encrypted with the app's encryptKey."""

    address = models.CharField(max_length=66, unique=True)
    external_user_id = models.CharField(max_length=255, unique=True)
    api_public_key = models.CharField(max_length=255)
    wallet_type = models.CharField(max_length=10)
    owner_public_key = models.CharField(max_length=66)
    encrypted_private_key = models.TextField()
    class_hash = models.CharField(max_length=66)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "chipi_sandbox_wallet"

    def __str__(self) -> str:
        return f"{self.external_user_id} {self.address}"


class SandboxTransaction(models.Model):
    """A token transfer on the simulated chain, as Chipi's transaction-list shows it: one record per
    transfer, so a transaction that made several (a multicall) has several records with its hash."""

    class Status(models.TextChoices):
        PENDING = "PENDING"
        PROCESSING = "PROCESSING"
        SUCCESS = "SUCCESS"
        FAILED = "FAILED"
        CANCELLED = "CANCELLED"

    tx_hash = models.CharField(max_length=66, db_index=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    token = models.CharField(max_length=10)  # Chipi's chainToken: USDC, USDC_E, USDT, ETH, STRK
    amount = RawAmountField()
    sender_address = models.CharField(max_length=66, db_index=True)
    destination_address = models.CharField(max_length=66, db_index=True)
    called_function = models.CharField(max_length=40, default="transfer")
    # The outside execution's nonce ("0x..." as SandboxUsedNonce keeps it) for a transfer an account
    # executed; empty for a payment from outside. A reverted execution frees it (revert()).
    nonce = models.CharField(max_length=66, blank=True, default="")
    block_number = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "chipi_sandbox_transaction"
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="chipi_sandbox_tx_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.tx_hash} {self.amount} {self.token}"


class SandboxBalance(models.Model):
    """What one address holds of one token (any address: PayGo's wallets and the world's)."""

    address = models.CharField(max_length=66)
    token = models.CharField(max_length=10)
    balance = RawAmountField(default=0)

    class Meta:
        db_table = "chipi_sandbox_balance"
        constraints = [
            models.UniqueConstraint(fields=["address", "token"], name="chipi_sandbox_balance_one_per_token"),
            models.CheckConstraint(condition=models.Q(balance__gte=0), name="chipi_sandbox_balance_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.address} {self.balance} {self.token}"


class SandboxUsedNonce(models.Model):
    """Outside-execution nonces an account has consumed: the account refuses them ever after."""

    address = models.CharField(max_length=66)
    nonce = models.CharField(max_length=66)

    class Meta:
        db_table = "chipi_sandbox_used_nonce"
        constraints = [models.UniqueConstraint(fields=["address", "nonce"], name="chipi_sandbox_nonce_once")]

    def __str__(self) -> str:
        return f"{self.address} used {self.nonce}"
