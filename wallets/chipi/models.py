"""The sandbox's simulated chain: deposit wallets, transactions and custody per token.

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
    address = models.CharField(max_length=66, unique=True)
    external_user_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "chipi_sandbox_wallet"

    def __str__(self) -> str:
        return f"{self.external_user_id} {self.address}"


class SandboxTransaction(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "inbound"  # someone paid into one of our deposit addresses
        OUTBOUND = "outbound"  # a transfer we sent from custody

    class Status(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        FAILED = "failed"

    tx_hash = models.CharField(max_length=66, unique=True)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    status = models.CharField(max_length=9, choices=Status.choices)
    token = models.CharField(max_length=8)
    amount = RawAmountField()
    from_address = models.CharField(max_length=66)
    to_address = models.CharField(max_length=66)
    reference = models.CharField(max_length=128, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "chipi_sandbox_transaction"
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="chipi_sandbox_tx_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.tx_hash} {self.direction} {self.amount} {self.token}"


class SandboxCustody(models.Model):
    token = models.CharField(max_length=8, primary_key=True)
    balance = RawAmountField(default=0)

    class Meta:
        db_table = "chipi_sandbox_custody"
        constraints = [
            models.CheckConstraint(condition=models.Q(balance__gte=0), name="chipi_sandbox_custody_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.token} {self.balance}"
