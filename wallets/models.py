"""Assets, accounts, the double-entry ledger, holds, idempotency keys and the withdrawal outbox.

Only wallets/ledger.py changes a balance. Entries and transactions are append-only: the database
refuses UPDATE and DELETE on them (migration 0002), and refuses a statement whose entries do not
sum to zero per transaction and asset.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from paygo.api.amounts import format_minor
from paygo.fields import MinorUnitsField


class Asset(models.Model):
    code = models.CharField(max_length=10, unique=True)
    name = models.CharField(max_length=60)
    decimals = models.PositiveSmallIntegerField()
    is_default = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    # Every withdrawal (and payout) is signed and sent on chain, its gas paid by the platform's
    # paymaster: one of a few minor units cost PayGo more than it moved. In minor units; 0 is none.
    # Set per token by staff (the admin), first by the migration that added it (wallets 0024).
    minimum_withdrawal = MinorUnitsField(
        default=0, help_text="The smallest withdrawal or payout of this token, in its minor units (0: none)."
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="wallets_one_default_asset"
            ),
            models.CheckConstraint(
                condition=Q(minimum_withdrawal__gte=0), name="wallets_asset_minimum_withdrawal_gte_0"
            ),
            # Every request that names no token uses the default one: it is always in use.
            models.CheckConstraint(condition=~Q(is_default=True, is_active=False), name="wallets_default_asset_active"),
            models.CheckConstraint(condition=Q(decimals__lte=18), name="wallets_asset_decimals_lte_18"),
        ]

    def __str__(self) -> str:
        return self.code


class AccountKind(models.TextChoices):
    USER = "user", "User wallet"
    SYSTEM = "system", "System account"


class SystemAccount(models.TextChoices):
    PLATFORM_REVENUE = "platform_revenue", "Platform revenue"
    # The mirror of what PayGo holds on chain: deposits debit it, sent withdrawals credit it back,
    # so minus its balance is what Chipi custody should hold (the reconciliation compares them).
    CUSTODY = "custody", "Chipi custody (external world)"
    WITHDRAWALS_IN_FLIGHT = "withdrawals_in_flight", "Withdrawals in flight"
    SWAP_LIQUIDITY = "swap_liquidity", "Swap liquidity"


class Account(models.Model):
    kind = models.CharField(max_length=10, choices=AccountKind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="wallet_accounts"
    )
    # NULL, not "", for user accounts: the partial unique index and the shape check rely on it.
    system_code = models.CharField(max_length=30, choices=SystemAccount.choices, null=True, blank=True)  # noqa: DJ001
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="accounts")
    # Cached sums, changed only by wallets/ledger.py in the same transaction as the entries/holds.
    balance = MinorUnitsField(default=0)
    held = MinorUnitsField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "asset"], condition=Q(kind="user"), name="wallets_one_user_account"
            ),
            models.UniqueConstraint(
                fields=["system_code", "asset"], condition=Q(kind="system"), name="wallets_one_system_account"
            ),
            models.CheckConstraint(
                condition=(Q(kind="user", owner__isnull=False, system_code__isnull=True))
                | Q(kind="system", owner__isnull=True, system_code__isnull=False),
                name="wallets_account_kind_shape",
            ),
            models.CheckConstraint(condition=Q(held__gte=0), name="wallets_account_held_gte_0"),
            # A user wallet never goes below zero, nor below what it holds for running sessions.
            models.CheckConstraint(
                condition=~Q(kind="user") | (Q(balance__gte=0) & Q(balance__gte=models.F("held"))),
                name="wallets_user_account_not_negative",
            ),
            # PayGo sells in a swap only what it holds of the token (wallets.services.wallet_swap):
            # below zero, users' balances of it exceeded what custody holds. (wallets 0016 covered
            # the deficits it found out of platform revenue before adding it.)
            models.CheckConstraint(
                condition=~Q(kind="system", system_code="swap_liquidity") | Q(balance__gte=0),
                name="wallets_swap_liquidity_not_negative",
            ),
        ]

    def __str__(self) -> str:
        # Named as an operator knows it: its owner (name and email) or its system role, and its asset.
        who = str(self.owner) if self.owner_id else self.get_system_code_display()
        return f"{who} · {self.asset.code}"

    @property
    def available(self) -> int:
        return self.balance - self.held


class TransactionKind(models.TextChoices):
    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"
    TRANSFER = "transfer", "Transfer"
    CHARGE = "charge", "Charge"
    REFUND = "refund", "Refund"
    SWAP = "swap", "Swap"
    ADJUSTMENT = "adjustment", "Adjustment"


class LedgerTransaction(models.Model):
    kind = models.CharField(max_length=12, choices=TransactionKind.choices)
    # What this transaction is, unique when set: "deposit:<hash>:<address>:<token>:<amount>:<n>" (one
    # transfer: services.ChainDeposit), "charge:<session>:<n>", ... The unique index is what makes
    # "once per transfer / per period" hold under any race.
    reference = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 (unique when set)
    memo = models.CharField(max_length=500, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["kind", "created_at"], name="wallets_tx_kind_created")]
        # A constraint rather than unique=True: the same unique index, without the extra LIKE index
        # Django adds for unique text columns (every index is paid for on each of a sweep's inserts).
        constraints = [models.UniqueConstraint(fields=["reference"], name="wallets_tx_reference_unique")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.reference or ''}".strip()


class Entry(models.Model):
    # The references of an entry (its transaction; its account, holding the entry's asset) are
    # checked by the database once per INSERT statement, set-based (migration 0006), rather than
    # by a foreign key per row: a sweep inserts tens of thousands of entries at a time, and the
    # row-by-row checks were a fifth of its cost. Indexed by wallets_entry_tx_cov below.
    transaction = models.ForeignKey(
        LedgerTransaction,
        on_delete=models.PROTECT,
        related_name="entries",
        db_constraint=False,
        db_index=False,
    )
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="entries", db_constraint=False, db_index=False
    )
    # Denormalised from the account so that the per-asset zero-sum check needs no join.
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False)
    amount = MinorUnitsField()
    # A metering charge: the debit of one session's payer, carrying the session and the interval
    # it bills, is that session's charge record (the vendor's and the platform's credits are
    # shared by the batch). Checked per INSERT statement by streaming's guard, not by a foreign
    # key per row (streaming/sql/charge_guards.sql).
    session = models.ForeignKey(
        "streaming.StreamingSession",
        on_delete=models.PROTECT,
        related_name="charge_entries",
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
    )
    billed_from = models.DateTimeField(null=True, blank=True)
    billed_until = models.DateTimeField(null=True, blank=True)
    fee = MinorUnitsField(
        null=True, blank=True, help_text="The platform's fee on this charge (the vendor got the rest)."
    )
    # Its transaction's time, copied (wallets_post writes both; the entries' guard checks that they
    # agree): an account's history, newest first and by date, is then a range of one index
    # (wallets_entry_account_time) rather than a sort of all of the account's entries.
    created_at = models.DateTimeField(editable=False)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "entries"
        # Both cover what the dashboards sum (amounts per account, per transaction), so that their
        # aggregates over a window or an account read the indexes only, not the table. The first is
        # also an account's history in the order it is shown (wallets.selectors.entries_for).
        indexes = [
            models.Index(
                fields=["account", "-created_at", "-id"],
                include=["transaction", "amount"],
                name="wallets_entry_account_time",
            ),
            models.Index(fields=["transaction"], include=["account", "asset", "amount"], name="wallets_entry_tx_cov"),
            # A session's charges, in order (its timeline, its dashboard figures).
            models.Index(
                fields=["session", "billed_until"],
                include=["amount", "fee"],
                condition=Q(session__isnull=False),
                name="wallets_entry_session_charges",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="wallets_entry_not_zero"),
            # A charge is a debit with its interval and its fee; any other entry has none of them.
            models.CheckConstraint(
                condition=Q(
                    session__isnull=False,
                    amount__lt=0,
                    billed_from__isnull=False,
                    billed_until__gte=F("billed_from"),
                    fee__gte=0,
                    fee__lte=-F("amount"),
                )
                | Q(session__isnull=True, billed_from__isnull=True, billed_until__isnull=True, fee__isnull=True),
                name="wallets_entry_charge_shape",
            ),
        ]

    def __str__(self) -> str:
        sign = "+" if self.amount > 0 else ""
        return f"{sign}{format_minor(self.amount, self.asset.decimals)} {self.asset.code} on {self.account}"

    @property
    def charged(self) -> int:
        """What a charge took from its payer, as a positive amount."""
        return -self.amount


class HoldStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RELEASED = "released", "Released"
    CAPTURED = "captured", "Captured"


class Hold(models.Model):
    """Funds reserved on a user account (for a running session); `amount` is what is still held."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="holds")
    amount = MinorUnitsField(default=0)
    reference = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=10, choices=HoldStatus.choices, default=HoldStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="wallets_hold_amount_gte_0"),
            models.CheckConstraint(condition=Q(status="active") | Q(amount=0), name="wallets_closed_hold_is_empty"),
        ]
        indexes = [models.Index(fields=["account"], condition=Q(status="active"), name="wallets_hold_active")]

    def __str__(self) -> str:
        return f"hold {self.reference} ({self.status})"


class IdempotencyKey(models.Model):
    """A money POST's Idempotency-Key: the first response, replayed for the same key and body."""

    # No index of its own: the unique (user, key) index leads with it.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=300)
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="wallets_idempotency_user_key")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"


class WithdrawalKind(models.TextChoices):
    WITHDRAWAL = "withdrawal", "User withdrawal"
    PAYOUT = "payout", "Vendor payout"


class WithdrawalStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # in the outbox, not yet handed to Chipi (or to be retried)
    SENDING = "sending", "Sending"  # claimed by a sender; Chipi may or may not have acted
    # Executed: Chipi answered its hash and the money left custody. confirmed_at is set once Chipi's
    # records show it succeeded on chain; one they show failed (reverted) is refunded and FAILED.
    SENT = "sent", "Sent"
    # Refused by Chipi for good, or reverted on chain after it was sent: the money went back to the
    # wallet (or staff settled a row in review as refunded).
    FAILED = "failed", "Failed"
    # A send whose outcome is unknown that Chipi's records never showed, re-signed and refused for
    # long enough (settings.OUTBOX_REVIEW_AFTER_*): whether it left is for staff to see on chain. The
    # outbox sends it no more; its money stays in flight until staff settle it, refunded or sent
    # (services.withdrawal_settle).
    NEEDS_REVIEW = "needs_review", "Needs review"
    # Its one execution reverted on chain (Chipi's records show it FAILED): nothing left, but the
    # transfer PayGo signed for it can still be executed by anyone until its window closes (a
    # reverted transaction leaves no state, the account's record of its nonce included, and its
    # calldata is public). Its money waits in flight until refund_due_at; then the treasury's records
    # are read again: refunded (FAILED) if no such transfer went out, else SENT. A status of its own:
    # not in the outbox (nothing is to be signed), not for staff (the rule settles it), and neither
    # failed nor sent yet.
    REVERTED = "reverted", "Reverted: refund due"


class Withdrawal(models.Model):
    """The outbox: money that left a wallet into 'withdrawals in flight', to be sent on chain."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)  # Chipi's reference
    kind = models.CharField(max_length=10, choices=WithdrawalKind.choices, default=WithdrawalKind.WITHDRAWAL)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="withdrawals")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    amount = MinorUnitsField()
    to_address = models.CharField(max_length=80)
    status = models.CharField(max_length=16, choices=WithdrawalStatus.choices, default=WithdrawalStatus.PENDING)
    tx_hash = models.CharField(max_length=80, blank=True, default="")
    # Executions: sends that may have acted. One Chipi refused (a 4xx, a 429) or that never reached
    # it is none, so that a send executed once and reverted on chain is still refunded automatically.
    attempts = models.PositiveIntegerField(default=0)
    # Set (and committed) just before the first send: from then on, a retry looks the transfer up
    # at Chipi before sending again, so that an unknown outcome never becomes a double send. The
    # latest execution's: a send Chipi refused or never received puts back the one before.
    send_attempted_at = models.DateTimeField(null=True, blank=True)
    # Chipi's refusals of the row's re-signing since its latest execution (whose outcome is unknown):
    # how long the row has been in doubt, with send_attempted_at (settings.OUTBOX_REVIEW_AFTER_*).
    refusals = models.PositiveIntegerField(default=0)
    # The outside execution's nonce, chosen when the row is made (rows made before that got theirs
    # at their first send): every execution of this row signs the same nonce, which the treasury
    # account accepts only once.
    nonce = models.CharField(max_length=66, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # When Chipi's records first showed the sent transfer succeeded on chain (services.sends_confirm).
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # A reverted withdrawal's (REVERTED): when its signed transfer can no longer execute, and its money
    # may go back to the wallet (services.withdrawal_refund_due_at).
    refund_due_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="wallets_withdrawal_amount_gt_0")]
        permissions = [("settle_withdrawal", "Can settle a withdrawal in review (refunded or sent)")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending"]),
                name="wallets_withdrawal_due",
            ),
            # What the confirmation checker reads every minute: the few sends not confirmed yet.
            models.Index(
                fields=["sent_at"],
                condition=Q(status="sent", confirmed_at__isnull=True),
                name="wallets_withdrawal_unconfirmed",
            ),
            # What the dispatcher reads every run: the few reverted ones whose refund has come due.
            models.Index(
                fields=["refund_due_at"],
                condition=Q(status="reverted"),
                name="wallets_withdrawal_refund_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} {self.status}"


class Reconciliation(models.Model):
    """One comparison of Chipi custody with the ledger, per asset."""

    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    on_chain = MinorUnitsField()
    ledger = MinorUnitsField()
    difference = MinorUnitsField()
    in_flight = MinorUnitsField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        difference = format_minor(self.difference, self.asset.decimals)
        return f"{self.asset.code} custody check at {self.created_at:%Y-%m-%d %H:%M:%S}: difference {difference}"


class ChipiWalletRole(models.TextChoices):
    DEPOSIT = "deposit"  # a user's deposit address
    TREASURY = "treasury"  # the one wallet custody lives in


class ChipiWallet(models.Model):
    """A wallet PayGo holds the key of: Chipi keeps its private key encrypted with `encrypt_key`,
    which PayGo generated and keeps sealed under the master key (wallets/keys.py).

    The row (with its sealed key) is committed before Chipi is asked to make the wallet, so a
    wallet made behind a lost answer is still PayGo's to use: the next attempt finds it by
    external_user_id and opens it with the key kept here."""

    role = models.CharField(max_length=10, choices=ChipiWalletRole.choices)
    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="chipi_wallet"
    )
    external_user_id = models.CharField(max_length=255, unique=True)
    encrypt_key_sealed = models.TextField()  # never shown: not in any serializer or admin form
    address = models.CharField(max_length=66, blank=True, default="")
    encrypted_private_key = models.TextField(blank=True, default="")  # Chipi's blob, useless without the key
    wallet_type = models.CharField(max_length=10, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True)  # deposits last looked for (services.deposits_poll)
    # Until when a deposit is expected: the owner was given the address (services.deposits_expect).
    poll_wanted_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["role"], condition=Q(role="treasury"), name="wallets_chipiwallet_one_treasury"
            ),
            models.UniqueConstraint(
                fields=["address"], condition=~Q(address=""), name="wallets_chipiwallet_address_unique"
            ),
            models.CheckConstraint(
                condition=Q(address="") | Q(address__regex=r"^0x[0-9a-f]{64}$"),
                name="wallets_chipiwallet_address_normalised",
            ),
            models.CheckConstraint(
                condition=Q(role="treasury", owner__isnull=True) | Q(role="deposit", owner__isnull=False),
                name="wallets_chipiwallet_owner_by_role",
            ),
        ]
        # services.deposits_poll's two picks (selectors.deposit_wallets_wanted, _round_robin), each
        # read in its index's order: the wallets deposits are expected in, and every deposit wallet,
        # looked at longest ago first.
        indexes = [
            models.Index(
                fields=["poll_wanted_until"],
                condition=Q(role="deposit", poll_wanted_until__isnull=False) & ~Q(address=""),
                name="wallets_chipiwallet_wanted_idx",
            ),
            models.Index(
                F("polled_at").asc(nulls_first=True),
                F("id"),
                condition=Q(role="deposit") & ~Q(address=""),
                name="wallets_chipiwallet_poll_idx",
            ),
        ]

    def __repr__(self) -> str:  # the sealed key stays out of logs and tracebacks
        return f"<ChipiWallet {self.role} {self.external_user_id} {self.address or '(not opened)'}>"

    def __str__(self) -> str:
        return f"{self.role} {self.address or self.external_user_id}"


class SweepStatus(models.TextChoices):
    PENDING = "pending"  # to be sent (again, after a send that reverted on chain)
    SENT = "sent"  # executed; confirmed_at once Chipi's records show it succeeded
    FAILED = "failed"


class Sweep(models.Model):
    """A verified deposit on its way from the user's deposit wallet into the treasury wallet, so that
    custody lives in one wallet. Chain-only: the ledger already counts both wallets as custody.
    The nonce is chosen when the row is made, so every execution signs the same one.

    One per deposit (its ledger credit), not per transaction hash: one transaction (a multicall)
    can pay several deposits, each swept on its own."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    wallet = models.ForeignKey(ChipiWallet, on_delete=models.PROTECT, related_name="sweeps")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    amount = MinorUnitsField()
    deposit = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT, related_name="sweep")
    deposit_tx_hash = models.CharField(max_length=66, db_index=True)
    nonce = models.CharField(max_length=66)
    status = models.CharField(max_length=10, choices=SweepStatus.choices, default=SweepStatus.PENDING)
    tx_hash = models.CharField(max_length=66, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)  # executions, as a withdrawal's
    send_attempted_at = models.DateTimeField(null=True, blank=True)
    refusals = models.PositiveIntegerField(default=0)  # as a withdrawal's
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="wallets_sweep_amount_gt_0")]
        # A sweep per deposit, kept: what the outbox (sweeps_due) and the confirmation checker
        # (sends_confirm) read every minute are the few pending and the few sent not confirmed yet.
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="wallets_sweep_due"),
            models.Index(
                fields=["sent_at"],
                condition=Q(status="sent", confirmed_at__isnull=True),
                name="wallets_sweep_unconfirmed",
            ),
        ]

    def __str__(self) -> str:
        return f"sweep {self.id} {self.status}"
