"""The write paths of wallets: deposits, transfers, swaps, withdrawals and payouts (the outbox),
staff adjustments and reconciliation. Every balance change goes through wallets/ledger.py."""

from __future__ import annotations

import logging
import math
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone
from rest_framework import exceptions

from paygo.api.amounts import MAX_WHOLE_UNITS, format_minor, max_minor_units
from paygo.api.errors import Conflict, UpstreamUnavailable
from paygo.db import constraint_of
from wallets import keys, ledger
from wallets.models import (
    Account,
    AccountKind,
    Asset,
    ChipiWallet,
    ChipiWalletRole,
    Entry,
    LedgerTransaction,
    Reconciliation,
    Sweep,
    SweepStatus,
    SystemAccount,
    TransactionKind,
    Withdrawal,
    WithdrawalKind,
    WithdrawalStatus,
)
from wallets.rates import RateUnavailable
from wallets.selectors import (
    chain_payment_asset,
    deposit_wallets_round_robin,
    deposit_wallets_wanted,
    wallet_owner,
)
from wallets.starknet import address_normalize, tx_hash_canonical

if TYPE_CHECKING:
    from wallets.chipi.interface import ChainTransaction

logger = logging.getLogger("paygo.wallets")

STARKNET_ADDRESS_HELP = "a Starknet address: 0x followed by 1 to 64 hexadecimal digits"


def _invalid(field: str, message: str, code: str = "invalid") -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [exceptions.ErrorDetail(message, code=code)]})


def insufficient_funds_error(asset: Asset, available_minor: int) -> exceptions.ValidationError:
    available = format_minor(available_minor, asset.decimals)
    return exceptions.ValidationError(
        {
            "amount": [
                exceptions.ErrorDetail(
                    f"Insufficient funds: {available} {asset.code} available.", code="insufficient_funds"
                )
            ]
        }
    )


class BelowMinimum(exceptions.ValidationError):
    """A withdrawal or payout below its token's minimum (Asset.minimum_withdrawal): a 400 on the
    amount, naming the minimum in its message and beside it (`minimum`, `token`)."""

    def __init__(self, asset: Asset):
        minimum = format_minor(asset.minimum_withdrawal, asset.decimals)
        message = f"Below the minimum withdrawal of {minimum} {asset.code}."
        super().__init__({"amount": [exceptions.ErrorDetail(message, code="below_minimum")]})
        self.extra = {"minimum": minimum, "token": asset.code}


# --- Wallet address -------------------------------------------------------------------------------


def wallet_open(*, user) -> str:
    """Give the user a deposit address: a Chipi wallet whose key PayGo holds (made once). Whoever is
    given it is about to pay into it, or just did (the address shown: GET /wallet/address, sign-up;
    a deposit reported: deposit_verify, for the API and webhooks): deposits are looked for there
    first for a while (deposits_expect)."""
    if not user.wallet_address:
        held = held_wallet(role=ChipiWalletRole.DEPOSIT, owner=user, external_user_id=str(user.pk))
        # Conditional: a concurrent opener that won stored the same address.
        if type(user).objects.filter(pk=user.pk, wallet_address="").update(wallet_address=held.address):
            user.wallet_address = held.address
        else:
            user.refresh_from_db(fields=["wallet_address"])
    deposits_expect(user=user)
    return user.wallet_address


TREASURY_EXTERNAL_USER_ID = "paygo-treasury"


def treasury_wallet() -> ChipiWallet:
    """The one wallet custody lives in: deposits are swept into it, withdrawals leave from it."""
    return held_wallet(role=ChipiWalletRole.TREASURY, owner=None, external_user_id=TREASURY_EXTERNAL_USER_ID)


class TreasuryKeyUnusable(Exception):
    """The treasury wallet's sealed encryptKey does not open under the configured master keys: nothing
    can be signed from the treasury (no withdrawal, no payout) until its master key is configured again."""


def treasury_key_check() -> None:
    """TreasuryKeyUnusable when the treasury's sealed key does not open (its master key deleted, or
    rotated away without CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS). No treasury yet is no problem: it will be
    made, and its key sealed, under the master key configured then."""
    sealed = (
        ChipiWallet.objects.filter(role=ChipiWalletRole.TREASURY).values_list("encrypt_key_sealed", flat=True).first()
    )
    if sealed is None:
        return
    try:
        keys.unseal(sealed)
    except keys.KeyUnsealError as exc:
        raise TreasuryKeyUnusable(f"The treasury wallet's key does not open: {exc}") from None


def deposit_keys_unusable() -> int:
    """How many deposit wallets' keys were sealed under a master key no longer configured: deposits
    in them are credited (crediting reads the chain, not the key) but cannot be swept into the
    treasury until that master key is configured again."""
    return (
        ChipiWallet.objects.filter(role=ChipiWalletRole.DEPOSIT)
        .exclude(keys.sealed_under_configured("encrypt_key_sealed"))
        .count()
    )


def held_wallet(*, role: str, owner, external_user_id: str) -> ChipiWallet:
    """The wallet PayGo holds the key of for `external_user_id`, made at Chipi on first use.

    The row and its sealed encryptKey are committed before Chipi is asked, so a wallet made behind a
    lost answer is found by the next attempt (get_wallet) and opened with the key kept here. Chipi
    refuses a second create for the same user, which the look-up after a refusal or a timeout covers.
    Slow I/O: call outside any transaction.
    """
    from wallets.chipi import ChipiRejected, ChipiTimeout, ChipiUnavailable, get_gateway

    row, created = ChipiWallet.objects.get_or_create(
        external_user_id=external_user_id,
        defaults={"role": role, "owner": owner, "encrypt_key_sealed": keys.seal(keys.new_encrypt_key())},
    )
    if row.address:
        return row
    gateway = get_gateway()
    encrypt_key = keys.unseal(row.encrypt_key_sealed)
    wallet = None if created else gateway.get_wallet(external_user_id=external_user_id)
    if wallet is None:
        try:
            wallet = gateway.create_wallet(external_user_id=external_user_id, encrypt_key=encrypt_key)
        except (ChipiRejected, ChipiTimeout):
            # "Wallet already exists" (a concurrent opener, or an earlier try whose answer was lost).
            wallet = gateway.get_wallet(external_user_id=external_user_id)
            if wallet is None:
                raise
    if not _key_opens(wallet.encrypted_private_key, encrypt_key):
        raise ChipiUnavailable(f"Chipi's wallet for {external_user_id} is not one PayGo holds the key of.")
    opened = {
        "address": wallet.address,
        "encrypted_private_key": wallet.encrypted_private_key,
        "wallet_type": wallet.wallet_type,
        "opened_at": timezone.now(),
    }
    # Conditional: a concurrent opener that won keeps what it stored (the same wallet).
    if ChipiWallet.objects.filter(pk=row.pk, address="").update(**opened):
        for name, value in opened.items():
            setattr(row, name, value)
    else:
        row.refresh_from_db()
    return row


def _key_opens(encrypted_private_key: str, encrypt_key: str) -> bool:
    from chipi_sdk.encryption import decrypt_private_key

    try:
        return bool(decrypt_private_key(encrypted_private_key, encrypt_key))
    except ValueError:
        return False


def _as_chipi(row: ChipiWallet):
    from wallets.chipi import ChipiWallet as Wallet

    return Wallet(address=row.address, encrypted_private_key=row.encrypted_private_key, wallet_type=row.wallet_type)


def new_nonce() -> str:
    """A fresh outside-execution nonce (a random felt), as the outbox records it."""
    return f"0x{secrets.randbits(248):064x}"


# --- Deposits -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepositResult:
    transaction: LedgerTransaction
    created: bool


@dataclass(frozen=True)
class ChainDeposit:
    """One transfer into a PayGo deposit address, as the ledger credits it: once.

    A deposit is what it is on chain: its transaction's hash, its recipient, its token and its
    amount, not the hash alone. One transaction (a multicall: an exchange's batched withdrawal) can
    pay several PayGo users, and the same user more than once: keyed by its hash, only the first
    transfer of such a transaction was ever credited. The same address can even be paid the same
    amount of the same token twice in one transaction: `position` counts those (0 for the first).

    Counted, not named by Chipi's record id: transfers equal in all four are the same money, so n
    of them credited is n references, whichever record was read first; and a deposit credited when
    the hash alone was its reference (before wallets 0021) was one whole transfer of a known amount
    into a known account: the first of its equal ones, position 0 (deposit_hash_reference).
    """

    transfer: ChainTransaction
    position: int = 0

    @classmethod
    def ledger_only(cls, *, tx_hash: str, token: str, amount: int) -> ChainDeposit:
        """A deposit no chain record stands behind: a fixture's or a benchmark's funding, credited
        with a source that is not swept (SWEPT)."""
        from wallets.chipi.interface import CONFIRMED, ChainTransaction

        return cls(ChainTransaction(tx_hash, CONFIRMED, token, amount, from_address="", to_address=""))

    @property
    def reference(self) -> str:
        """The ledger's unique reference for this deposit: what makes it credited once. Its amount in
        the token's units, as every amount an operator reads (the token's decimals never change)."""
        from wallets.chipi.interface import TOKEN_DECIMALS

        paid = self.transfer
        amount = format_minor(paid.amount, TOKEN_DECIMALS[paid.token])
        return f"{deposit_hash_reference(paid.tx_hash)}:{paid.to_address}:{paid.token}:{amount}:{self.position}"


def deposit_hash_reference(tx_hash: str) -> str:
    """A transaction's hash as one reference however it is written: a Starknet hash is a number, and
    "0x0ABC", "0xabc" and "0x" + 61 zeros + "abc" name the same one. Before wallets 0021 it was a
    deposit's whole reference (and still is of those credited then: deposits_credited_by_hash); now
    it begins the reference of each deposit the transaction made (ChainDeposit.reference)."""
    return f"deposit:{tx_hash_canonical(tx_hash) or tx_hash.strip().lower()}"


def deposits_in(transfers: Iterable[ChainTransaction]) -> list[ChainDeposit]:
    """Chipi's records (each read once: the gateway's wallet_transactions) as deposits, each counted
    among the transfers of its transaction equal to it (ChainDeposit.position)."""
    counted: Counter[tuple[str, str, str, int]] = Counter()
    deposits = []
    for transfer in transfers:
        tx_hash = tx_hash_canonical(transfer.tx_hash) or transfer.tx_hash
        equal = (tx_hash, transfer.to_address, transfer.token, transfer.amount)
        deposits.append(ChainDeposit(transfer, counted[equal]))
        counted[equal] += 1
    return deposits


def deposits_credited_by_hash(*, owner, deposits: Sequence[ChainDeposit]) -> dict[str, int]:
    """Those of `deposits` (into `owner`'s address) credited before wallets 0021, when a deposit's
    reference was its transaction's hash alone: their references -> the crediting transaction's id.

    Such a credit was one transfer of the transaction into the owner's address (its amount, in the
    token of the account it credited: deposit_check held it to that): the first of its equal ones.
    The ledger is append-only, so those references stay as they were and are read here."""
    firsts = {
        (deposit_hash_reference(d.transfer.tx_hash), d.transfer.token, d.transfer.amount): d.reference
        for d in deposits
        if d.position == 0
    }
    if not firsts:
        return {}
    credits = Entry.objects.filter(
        transaction__reference__in={hash_reference for hash_reference, _, _ in firsts},
        transaction__kind=TransactionKind.DEPOSIT,
        account__kind=AccountKind.USER,
        account__owner=owner,
        amount__gt=0,
    ).values_list("transaction__reference", "asset__code", "amount", "transaction_id")
    return {
        firsts[reference, token, amount]: tx_id
        for reference, token, amount, tx_id in credits
        if (reference, token, amount) in firsts
    }


def deposit_verify(*, user, asset: Asset, amount: int, tx_hash: str | None) -> list[ChainDeposit]:
    """Check an on-chain payment against Chipi's records of the user's deposit wallet (hash,
    destination, token, amount, status SUCCESS) before it is credited (slow I/O: call outside any
    transaction). Without a hash, the sandbox simulates the payment into the user's address.

    The transaction's transfers into the user's address of this token and amount, for
    deposit_credit_reported: a transaction can pay the user more than once."""
    from wallets.chipi import ChipiError, ChipiRejected, get_gateway
    from wallets.chipi.gateway import sandbox_in_use

    try:
        address = wallet_open(user=user)
        if not tx_hash:
            if not sandbox_in_use():
                raise _invalid("tx_hash", "This field is required.", code="required")
            from wallets.chipi.sandbox import get_sandbox

            return [ChainDeposit(get_sandbox().receive_payment(to_address=address, token=asset.code, amount=amount))]
        wanted = tx_hash_canonical(tx_hash)
        in_tx = [tx for tx in get_gateway().wallet_transactions(address) if tx.tx_hash == wanted]
    except ChipiRejected as exc:
        raise UpstreamUnavailable(
            f"Chipi refused PayGo's request to verify the deposit ({exc.code}); nothing was credited."
        ) from None
    except ChipiError as exc:
        raise UpstreamUnavailable(
            f"Chipi could not be reached to verify the deposit ({exc.code}); nothing was credited."
        ) from None
    if not in_tx:
        raise _invalid("tx_hash", "Chipi has no such transaction for your deposit address.", code="unknown_transaction")
    return deposit_check(in_tx, address=address, asset=asset, amount=amount)


def deposit_check(in_tx: Sequence[ChainTransaction], *, address: str, asset: Asset, amount: int) -> list[ChainDeposit]:
    """The one rule of what a deposit is: a confirmed payment of `amount` of the asset into `address`.
    `in_tx` are the transaction's transfers (a multicall makes several); the answer, those that are
    such a payment (none: a 400 saying why)."""
    into = [tx for tx in in_tx if tx.to_address == address]
    if not into:
        raise _invalid("tx_hash", "The transaction did not pay into your deposit address.", code="wrong_recipient")
    unconfirmed = next((tx for tx in into if tx.status != "confirmed"), None)
    if unconfirmed is not None:
        raise _invalid("tx_hash", f"The transaction is {unconfirmed.status}, not confirmed yet.", code="not_confirmed")
    in_token = [tx for tx in into if tx.token == asset.code]
    if not in_token:
        moved = into[0].token or "a token PayGo does not hold"
        raise _invalid("token", f"The transaction moved {moved}, not {asset.code}.", code="wrong_token")
    deposits = [deposit for deposit in deposits_in(in_token) if deposit.transfer.amount == amount]
    if not deposits:
        *others, last = [format_minor(each, asset.decimals) for each in sorted(tx.amount for tx in in_token)]
        paid = f"{', '.join(others)} and {last}" if others else last
        raise _invalid("amount", f"The transaction paid {paid} {asset.code}.", code="wrong_amount")
    return deposits


def deposit_credit(*, user, asset: Asset, deposit: ChainDeposit, source: str) -> DepositResult:
    """Credit one verified transfer into the user's address, once whoever asks (its reference)."""
    reference = deposit.reference
    account = ledger.account_for_user(user, asset)
    earlier = deposits_credited_by_hash(owner=user, deposits=[deposit]).get(reference)
    if earlier is not None:
        return DepositResult(LedgerTransaction.objects.get(pk=earlier), created=False)
    paid = deposit.transfer
    try:
        with transaction.atomic():
            tx = ledger.transfer(
                debit=ledger.system_account(SystemAccount.CUSTODY, asset),
                credit=account,
                amount=paid.amount,
                kind=TransactionKind.DEPOSIT,
                reference=reference,
                memo=f"Deposit {paid.tx_hash}",
                metadata={"txHash": paid.tx_hash, "source": source, "token": asset.code},
            )
            sweep = None
            if source in SWEPT:
                sweep = _sweep_queue(user=user, asset=asset, deposit=tx, amount=paid.amount, tx_hash=paid.tx_hash)
    except ledger.DuplicateReference:
        existing = LedgerTransaction.objects.get(reference=reference)
        if not existing.entries.filter(account=account).exists():
            raise Conflict({"message": "This transaction was already credited.", "code": "already_credited"}) from None
        return DepositResult(existing, created=False)
    transaction.on_commit(lambda: _notify_deposit(user, asset, paid.amount, tx.pk), robust=True)
    if sweep is not None:
        transaction.on_commit(lambda: _queue_sweep(sweep.pk), robust=True)
    return DepositResult(tx, created=True)


def deposit_credit_reported(*, user, asset: Asset, deposits: Sequence[ChainDeposit], source: str) -> DepositResult:
    """Credit a payment reported by its hash (the API, a webhook): one of `deposits`, the equal
    transfers deposit_verify found, the first not credited yet; when each is, the first's credit
    (created False). One report is one transfer: a transaction that paid the user twice is two
    reports (two webhooks), or polling's."""
    results = []
    for deposit in deposits:
        result = deposit_credit(user=user, asset=asset, deposit=deposit, source=source)
        if result.created:
            return result
        results.append(result)
    return results[0]


# Deposits paid on chain (the API, a webhook, polling, the demo's sandbox payments) are swept into
# the treasury; a fixture's ledger-only deposit ("test") has no money on chain to sweep.
SWEPT = ("api", "webhook", "poll", "demo")


def _notify_deposit(user, asset: Asset, amount: int, tx_id: int) -> None:
    from notifications import notify

    notify(
        user,
        "payment",
        "Deposit credited",
        f"{format_minor(amount, asset.decimals)} {asset.code} arrived in your wallet.",
        {"transactionId": tx_id, "token": asset.code},
    )


def webhook_deposit(*, to_address: str, token: str, amount: str, tx_hash: str) -> DepositResult | None:
    """A signed Chipi `payment.completed`: verified against Chipi's records like any deposit, then
    credited to the address's owner once per transfer (None: not PayGo's address, or a token PayGo
    has no asset for; one staff deactivated is credited, selectors.chain_payment_asset). The amount
    is in whole tokens, converted by the token's decimals."""
    from wallets.chipi.interface import raw_from_whole

    asset = chain_payment_asset(token)
    user = wallet_owner(to_address)
    if user is None or asset is None:
        logger.warning("Chipi webhook for an unknown address or token: %s %s", to_address, token)
        return None
    try:
        raw = raw_from_whole(amount, asset.decimals)
    except ValueError:
        raise _invalid("amount", f"Not an amount of {asset.code} ({asset.decimals} decimals).") from None
    # The bound every amount of the API has (MAX_WHOLE_UNITS), here in minor units of the asset.
    if raw >= max_minor_units(asset.decimals):
        raise _invalid("amount", f"Must be less than {MAX_WHOLE_UNITS:,} {asset.code}.")
    if raw <= 0:
        raise _invalid("amount", "Must be more than zero.")
    deposits = deposit_verify(user=user, asset=asset, amount=raw, tx_hash=tx_hash)
    return deposit_credit_reported(user=user, asset=asset, deposits=deposits, source="webhook")


# Chipi lists transactions per wallet only (its transaction list needs the wallet's address), so
# polling reads one wallet per request, within Chipi's rate limit. Those reads go first where a deposit
# is expected: a lost webhook is found within minutes there, not after a round of every wallet (days
# at 100,000 wallets). A deposit is expected for DEPOSIT_WATCH after its owner was given the address
# (an exchange's withdrawal, a second payment after a test one, can take that long), and looked for
# every third run meanwhile: 12 reads. Those take at most POLL_WANTED_PER_RUN of a run, so
# the round robin of every wallet (a deposit from an address book, nobody having asked) keeps a third
# of the budget however many users ask, and the rest of it when few do.
POLL_WALLETS_PER_RUN = 30  # one transaction-list read each: a third of Chipi's 100 requests a minute
POLL_WANTED_PER_RUN = 20
DEPOSIT_WATCH = timedelta(hours=3)
DEPOSIT_WATCH_EVERY = timedelta(minutes=14)  # every third run, 5 minutes apart, whatever a run's own length


def deposits_expect(*, user) -> None:
    """Expect a deposit into the user's wallet: deposits_poll looks at it in its next run and every
    DEPOSIT_WATCH_EVERY for DEPOSIT_WATCH from now. The address is asked for again and again (a
    frontend's reads): written only once that moves the watch's end by an interval."""
    until = timezone.now() + DEPOSIT_WATCH
    ChipiWallet.objects.filter(owner=user, role=ChipiWalletRole.DEPOSIT).filter(
        Q(poll_wanted_until__isnull=True) | Q(poll_wanted_until__lte=until - DEPOSIT_WATCH_EVERY)
    ).update(poll_wanted_until=until)


def deposits_poll() -> int:
    """Find deposits in Chipi's records that no webhook or client reported, so that a lost webhook
    loses nothing: first the wallets a deposit is expected in (deposits_expect; up to
    POLL_WANTED_PER_RUN, each at most every DEPOSIT_WATCH_EVERY), then, up to POLL_WALLETS_PER_RUN in
    all, the deposit wallets looked at longest ago. Each is credited for every confirmed transfer into
    it not credited yet (the same rule as any deposit, a token staff deactivated included:
    selectors.chain_payment_asset). Returns how many it credited."""
    from wallets.chipi import ChipiError, get_gateway

    gateway = get_gateway()
    credited = 0
    for wallet in _deposit_wallets_to_poll(now=timezone.now()):
        try:
            records = gateway.wallet_transactions(wallet.address)
        except ChipiError as exc:
            logger.warning("Deposit polling stopped at %s: %r", wallet.address, exc)
            break
        ChipiWallet.objects.filter(pk=wallet.pk).update(polled_at=timezone.now())
        deposits = [
            deposit
            for deposit in deposits_in(tx for tx in records if tx.to_address == wallet.address)
            if deposit.transfer.status == "confirmed"
        ]
        known = set(
            LedgerTransaction.objects.filter(reference__in=[d.reference for d in deposits]).values_list(
                "reference", flat=True
            )
        )
        known.update(deposits_credited_by_hash(owner=wallet.owner, deposits=deposits))
        for deposit in deposits:
            tx = deposit.transfer
            if deposit.reference in known:
                continue
            asset = chain_payment_asset(tx.token)
            if asset is None or not 0 < tx.amount < max_minor_units(asset.decimals):
                logger.warning("Deposit %s of %s %s not credited by polling", tx.tx_hash, tx.amount, tx.token)
                continue
            result = deposit_credit(user=wallet.owner, asset=asset, deposit=deposit, source="poll")
            credited += result.created
    return credited


def _deposit_wallets_to_poll(*, now: datetime) -> Iterable[ChipiWallet]:
    """A run's wallets: the expected first, then the round robin with the rest of the budget."""
    wanted = list(deposit_wallets_wanted(now=now, polled_before=now - DEPOSIT_WATCH_EVERY, limit=POLL_WANTED_PER_RUN))
    yield from wanted
    exclude = [wallet.pk for wallet in wanted]
    yield from deposit_wallets_round_robin(limit=POLL_WALLETS_PER_RUN - len(wanted), exclude=exclude)


# --- The default token ----------------------------------------------------------------------------


def assets_locked() -> dict[int, Asset]:
    """Every token, locked in id order: changes to the tokens (a new default, an edit) take turns,
    and each decides on what the one before it committed. Call inside transaction.atomic."""
    return {row.pk: row for row in Asset.objects.select_for_update().order_by("pk")}


def asset_make_default(*, asset: Asset) -> Asset:
    """Make `asset` (active) the token a request that names none uses, in place of the one that was:
    there is always exactly one default, and it is active."""
    with transaction.atomic():
        asset = assets_locked()[asset.pk]
        if not asset.is_active:
            raise _invalid("token", f"{asset.code} is not active: activate it first.", code="inactive_token")
        Asset.objects.filter(is_default=True).exclude(pk=asset.pk).update(is_default=False)
        Asset.objects.filter(pk=asset.pk).update(is_default=True)
    asset.is_default = True
    return asset


def asset_update(
    *, asset: Asset, name: str | None = None, is_active: bool | None = None, minimum_withdrawal: int | None = None
) -> Asset:
    """Rename a token, activate or deactivate it, or set its minimum withdrawal in minor units (0:
    none) (None: leave it as it is); the default token stays active. Decided on the token as it is
    once locked, not as the caller read it: the default may have moved to it since
    (asset_make_default), and an edit must neither deactivate it nor write its old is_default, nor
    what it did not change (another operator's deactivation meanwhile)."""
    changes = {}
    if name is not None:
        changes["name"] = name.strip()
        if not changes["name"]:
            raise _invalid("name", "Give the token a name.", code="required")
    if is_active is not None:
        changes["is_active"] = is_active
    if minimum_withdrawal is not None:
        if minimum_withdrawal < 0:
            raise _invalid("minimum_withdrawal", "The minimum withdrawal cannot be negative (0: none).")
        changes["minimum_withdrawal"] = minimum_withdrawal
    with transaction.atomic():
        locked = assets_locked()[asset.pk]
        if locked.is_default and is_active is False:
            raise _invalid(
                "is_active",
                f"{locked.code} is the default token and stays active: make another token the default first.",
                code="default_token",
            )
        for field, value in changes.items():
            setattr(locked, field, value)
        if changes:
            locked.save(update_fields=list(changes))
    asset.name, asset.is_active, asset.is_default = locked.name, locked.is_active, locked.is_default
    asset.minimum_withdrawal = locked.minimum_withdrawal
    return asset


# --- Transfers and swaps --------------------------------------------------------------------------


# Why a recipient named each way (TransferSerializer.RECIPIENT_FIELDS) is no one to pay.
_NO_RECIPIENT = {
    "recipient_id": "No active user with this id or email.",
    "recipient_email": "No active user with this id or email.",
    "recipient_address": "No PayGo user has this wallet address. To send to an address outside PayGo, "
    "withdraw to it (POST /api/v1/wallet/withdraw).",
}


class UnknownRecipient(exceptions.ValidationError):
    """A transfer named no active user: a 400 on the field that named them. Each one tells its sender
    that an email, id or address is no user's, so the API counts them against a budget of their own."""


def wallet_transfer(
    *, sender, recipient, asset: Asset, amount: int, memo: str = "", named_by: str = "recipient_id"
) -> LedgerTransaction:
    """Pay another PayGo user inside the ledger (never on chain). `named_by` is how the request named
    the recipient (recipient_id, recipient_email or recipient_address): a refusal names that field.

    A sender who cannot pay is refused for the amount before the recipient is looked at, so that the
    refusal is the same whoever they named: a transfer that could not move money told any signed-in
    user, for free, whether an email had an account."""
    _sender_can_pay(sender, asset, amount)
    if recipient is None or not recipient.is_active:
        detail = exceptions.ErrorDetail(_NO_RECIPIENT[named_by], code="unknown_recipient")
        raise UnknownRecipient({named_by: [detail]})
    if recipient.pk == sender.pk:
        raise _invalid(named_by, "You cannot transfer to yourself.", code="self_transfer")
    try:
        with transaction.atomic():  # a refusal leaves no account opened for it
            tx = ledger.transfer(
                debit=ledger.account_for_user(sender, asset),
                credit=ledger.account_for_user(recipient, asset),
                amount=amount,
                kind=TransactionKind.TRANSFER,
                memo=memo[:500],
                metadata={"senderId": sender.pk, "recipientId": recipient.pk, "token": asset.code},
            )
    except ledger.InsufficientFunds as exc:
        raise insufficient_funds_error(asset, exc.available) from None
    transaction.on_commit(lambda: _notify_transfer(sender, recipient, asset, amount, tx.pk), robust=True)
    return tx


def _sender_can_pay(sender, asset: Asset, amount: int) -> None:
    """Refuse as the ledger would when the sender's available funds fall short. Read without a lock:
    the ledger checks again, under it, and decides."""
    account = Account.objects.filter(kind=AccountKind.USER, owner=sender, asset=asset).only("balance", "held").first()
    available = max(0, account.available) if account else 0
    if available < amount:
        raise insufficient_funds_error(asset, available)


def _notify_transfer(sender, recipient, asset: Asset, amount: int, tx_id: int) -> None:
    from notifications import notify

    notify(
        recipient,
        "payment",
        "Transfer received",
        f"{sender.name} sent you {format_minor(amount, asset.decimals)} {asset.code}.",
        {"transactionId": tx_id, "senderId": sender.pk, "token": asset.code},
    )


def swap_quote(*, from_asset: Asset, to_asset: Asset, amount: int, rate: Decimal) -> int:
    """Minor units of to_asset for `amount` minor units of from_asset at `rate` (whole units), floored.

    Exact: as fractions, not Decimals, whose products the context rounds to 28 digits (half-even,
    before the floor: a quote could round up by a unit that the liquidity account then paid)."""
    return math.floor(Fraction(rate) * amount * Fraction(10) ** (to_asset.decimals - from_asset.decimals))


SWAP_LIQUIDITY_CONSTRAINT = "wallets_swap_liquidity_not_negative"


def wallet_swap(
    *, user, from_asset: Asset, to_asset: Asset, amount: int, min_received: int, rate: Decimal
) -> LedgerTransaction:
    """Exchange through the swap liquidity accounts in one ledger transaction. PayGo sells only
    what it holds of to_asset (its liquidity account, which the database keeps at zero or above):
    a swap past it is a 409 and moves nothing. (It sold what it did not hold: users' balances of
    the token came to exceed what custody held of it.) Staff put liquidity in with an adjustment.

    Proceeds past the bound every amount has (MAX_WHOLE_UNITS) mean the rate is not one to trust
    (no swap of what anyone holds, at a real price, comes near it): RateUnavailable, as when the price
    API gives no rate, and nothing moves. Posted, they overflowed the ledger's NUMERIC(38,0), a 500."""
    if from_asset.pk == to_asset.pk:
        raise _invalid("to_token", "Choose two different tokens.", code="same_token")
    received = swap_quote(from_asset=from_asset, to_asset=to_asset, amount=amount, rate=rate)
    if received >= max_minor_units(to_asset.decimals):
        raise RateUnavailable(
            f"the price API's rate of {rate} {to_asset.code} per {from_asset.code} would give "
            f"{MAX_WHOLE_UNITS:,} {to_asset.code} or more"
        )
    if received <= 0:
        raise _invalid("amount", "The amount is too small to receive anything.", code="too_small")
    if received < min_received:
        got = format_minor(received, to_asset.decimals)
        raise _invalid("min_received", f"The swap would give {got} {to_asset.code}, under your minimum.", "slippage")
    try:
        with transaction.atomic():  # a refusal leaves no account opened for it
            return ledger.post(
                kind=TransactionKind.SWAP,
                entries=[
                    (ledger.account_for_user(user, from_asset), -amount),
                    (ledger.system_account(SystemAccount.SWAP_LIQUIDITY, from_asset), amount),
                    (ledger.system_account(SystemAccount.SWAP_LIQUIDITY, to_asset), -received),
                    (ledger.account_for_user(user, to_asset), received),
                ],
                metadata={"fromToken": from_asset.code, "toToken": to_asset.code, "rate": str(rate)},
            )
    except ledger.InsufficientFunds as exc:
        raise insufficient_funds_error(from_asset, exc.available) from None
    except IntegrityError as exc:
        if constraint_of(exc) != SWAP_LIQUIDITY_CONSTRAINT:
            raise
        raise Conflict(
            {
                "message": f"PayGo cannot sell that much {to_asset.code} right now; nothing was swapped.",
                "code": "insufficient_liquidity",
            }
        ) from None


# --- Withdrawals and payouts: the outbox ----------------------------------------------------------


def refuse_paygo_address(field: str, address: str) -> None:
    """A 400 on `field` when `address` (0x + 64 lower-case hex) is a PayGo wallet's, its treasury's or
    a deposit address: nothing PayGo sends out may go there. Sent from the treasury to itself, the
    money stayed there while the ledger said it had left (the user lost it, and custody no longer
    matched the chain); sent to a deposit address, it went round the chain and came back a deposit."""
    if ChipiWallet.objects.filter(address=address).exists():
        raise _invalid(
            field,
            "This address is a PayGo wallet's: pay a PayGo user with a transfer (recipientAddress) instead.",
            code="paygo_address",
        )


def withdrawal_request(
    *, user, asset: Asset, amount: int, to_address: str, kind: str = WithdrawalKind.WITHDRAWAL
) -> Withdrawal:
    """Move the amount out of the wallet into 'withdrawals in flight' and queue it for Chipi.
    BelowMinimum under the token's minimum withdrawal, TreasuryKeyUnusable when nothing could be
    signed from the treasury: nothing written either way."""
    # Each one is signed and sent on chain, its gas paid by the platform: not for a few minor units.
    if amount < asset.minimum_withdrawal:
        raise BelowMinimum(asset)
    # Stored (and later compared with Chipi's records) in the one spelling: "0x" + 64 lower-case hex.
    normalized = address_normalize(to_address)
    if normalized is None:
        raise _invalid("to_address", f"Not a Starknet address ({STARKNET_ADDRESS_HELP}, above zero, below the prime).")
    to_address = normalized
    refuse_paygo_address("to_address", to_address)
    # Before any money moves: accepted, it would wait in flight for a signature that cannot be made.
    treasury_key_check()
    with transaction.atomic():
        # Its nonce chosen now, once: two workers sending it (a claim that ran out under a stalled
        # first one) sign the same nonce, which the treasury account accepts once.
        withdrawal = Withdrawal.objects.create(
            kind=kind,
            user=user,
            asset=asset,
            amount=amount,
            to_address=to_address,
            nonce=new_nonce(),
            next_attempt_at=timezone.now(),
        )
        try:
            ledger.transfer(
                debit=ledger.account_for_user(user, asset),
                credit=ledger.system_account(SystemAccount.WITHDRAWALS_IN_FLIGHT, asset),
                amount=amount,
                kind=TransactionKind.WITHDRAWAL,
                reference=f"withdrawal:{withdrawal.pk}",
                metadata={"withdrawalId": str(withdrawal.pk), "toAddress": to_address, "kind": kind},
            )
        except ledger.InsufficientFunds as exc:
            raise insufficient_funds_error(asset, exc.available) from None
    transaction.on_commit(lambda: _queue_send(withdrawal.pk), robust=True)
    return withdrawal


def _queue_send(withdrawal_id) -> None:
    from wallets.tasks import withdrawal_send_task

    withdrawal_send_task.delay(str(withdrawal_id))


CLAIM_SECONDS = 120


def _due(now) -> Q:
    """An outbox row (a withdrawal, a sweep) nobody holds a claim on, whose next attempt has come."""
    return (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )


def _withdrawal_sendable(now) -> Q:
    """A withdrawal due (_due) whose owner is active. A deactivated account (taken over, say) sends
    nothing more out: its withdrawals wait where they are, their money in flight, until it is
    active again; one in doubt then resumes its look-up and its one nonce."""
    return _due(now) & Q(user__is_active=True)


MAX_BACKOFF_SECONDS = 3600
# How often a row whose wallet's key does not open is tried again (the key comes back only when an
# operator configures its master key).
KEY_RETRY_SECONDS = 300
# How far Chipi's clock may be from ours: a row's look-up reads Chipi's records back to its making,
# less this.
CLOCK_SKEW = timedelta(minutes=10)


def withdrawal_send(*, withdrawal_id) -> str:
    """Send one outbox row from the treasury wallet, safely under retries, crashes and lost answers.

    Returns the resulting status. Chipi has no idempotency, so the row's nonce is recorded (and
    committed) before it is first signed; a row that may have reached Chipi is first looked up in
    the treasury's transactions, and when it is not found it is signed again with the same nonce,
    which the account accepts once: never two sends for one withdrawal. Only a refusal of a first
    attempt gives the money back; one in doubt that Chipi refuses for long enough waits for staff
    (NEEDS_REVIEW, withdrawal_settle).
    """
    now = timezone.now()
    claimed = Withdrawal.objects.filter(
        _withdrawal_sendable(now),
        pk=withdrawal_id,
        status__in=[WithdrawalStatus.PENDING, WithdrawalStatus.SENDING],
    ).update(status=WithdrawalStatus.SENDING, claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
    withdrawal = Withdrawal.objects.select_related("asset").get(pk=withdrawal_id)
    if not claimed:
        return withdrawal.status  # sent, failed, not due yet, or another worker has it
    outcome = _outbox_execute(
        withdrawal,
        source=treasury_wallet,
        to_address=withdrawal.to_address,
        token=withdrawal.asset.code,
        amount=withdrawal.amount,
        taken=lambda tx_hash: Withdrawal.objects.filter(tx_hash=tx_hash).exclude(pk=withdrawal.pk).exists(),
        # Every withdrawal leaves the treasury. One in review is still in doubt (staff have not said
        # whether it left), and so is a reverted one whose signed transfer can still be executed
        # again: an equal one waits for it as for one being sent.
        twins=Withdrawal.objects.filter(
            to_address=withdrawal.to_address,
            asset=withdrawal.asset,
            amount=withdrawal.amount,
            status__in=[
                WithdrawalStatus.PENDING,
                WithdrawalStatus.SENDING,
                WithdrawalStatus.NEEDS_REVIEW,
                WithdrawalStatus.REVERTED,
            ],
        ).exclude(pk=withdrawal.pk),
    )
    if outcome.tx_hash:
        return _withdrawal_sent(withdrawal, outcome.tx_hash)
    if outcome.superseded:
        return Withdrawal.objects.values_list("status", flat=True).get(pk=withdrawal.pk)
    if outcome.reverted_hash:
        return _withdrawal_in_doubt_reverted(withdrawal, outcome.reverted_hash)
    if outcome.refused:
        return _withdrawal_failed(withdrawal, outcome.error)
    if outcome.review:
        return _withdrawal_review(withdrawal, outcome.error)
    return _withdrawal_retry_later(withdrawal, outcome.error, outcome.retry_in)


@dataclass(frozen=True)
class OutboxOutcome:
    tx_hash: str = ""  # sent (or found sent)
    refused: bool = False  # refused for good before anything moved
    error: str = ""
    retry_in: float = 0.0
    # Another worker attempted the row since this one read it (this one's claim ran out while it
    # stalled), or it left the outbox (staff settled it): the row is not this one's to change.
    superseded: bool = False
    # In doubt for too long (in_doubt_too_long): not to be tried again; for staff.
    review: bool = False
    # Its one execution, whose answer was lost, failed on chain (this hash): nothing left, but the
    # transfer signed for it may still be executed again (withdrawal_refund_due_at).
    reverted_hash: str = ""


# The statuses of a row still in the outbox: a withdrawal's pending and sending, a sweep's pending.
OUTBOX_STATUSES = ("pending", "sending")
# How long a signed transfer can be executed: the SDK signs each outside execution for 2 hours
# (chipi_sdk.shhh.oe.MAX_OE_VALIDITY_WINDOW_SECONDS). A send in doubt signed longer ago than this
# (and the clock skew) can no longer go out: whether it did is on chain for good.
SIGNED_TRANSFER_LIFETIME = timedelta(hours=2)


def withdrawal_refund_due_at(withdrawal: Withdrawal) -> datetime:
    """The one rule of when a withdrawal's money may go back to its wallet after a send that may have
    reached the chain (one that reverted, one in doubt): once the latest transfer PayGo signed for it
    can no longer execute, SIGNED_TRANSFER_LIFETIME after its signing (send_attempted_at, marked just
    before it) and the clock skew. Before that, anyone holding it can execute it: PayGo signs with
    caller ANY_CALLER, a reverted transaction leaves the nonce unused and its calldata public, and
    a refund then paid the money out twice.

    send_attempted_at is the latest execution that may have acted: a re-signing Chipi refused, or one
    that never reached it, was submitted to no chain and puts back the one before (_outbox_unmark).
    For the same reason a first execution Chipi refused outright (a 4xx: not submitted, its signature
    seen by Chipi alone) is refunded at once (_withdrawal_failed) and does not wait. None signed:
    due at once."""
    if withdrawal.send_attempted_at is None:
        return withdrawal.created_at
    return withdrawal.send_attempted_at + SIGNED_TRANSFER_LIFETIME + CLOCK_SKEW


def in_doubt_too_long(*, refusals: int, attempted_at: datetime, now: datetime) -> bool:
    """Whether a row whose latest execution's outcome is unknown (at `attempted_at`), found in none
    of Chipi's records since and its re-signing refused `refusals` times, has been in doubt long
    enough to stop trying (settings.OUTBOX_REVIEW_AFTER_*). Chipi's records can lag a transfer that
    went out (a stale look-up), and a refusal of the re-signing can be the account refusing the
    nonce that transfer used: neither alone says nothing left, for a while. The records lag by
    minutes, not hours: past the bound, what is left is for staff to see on chain."""
    return refusals >= settings.OUTBOX_REVIEW_AFTER_REFUSALS and now - attempted_at >= timedelta(
        seconds=settings.OUTBOX_REVIEW_AFTER_SECONDS
    )


def _outbox_execute(row, *, source, to_address: str, token: str, amount: int, taken, twins) -> OutboxOutcome:
    """The one rule for sending an outbox row (a withdrawal, a payout, a sweep) on chain.

    `row` has nonce, attempts and send_attempted_at; `source()` is the wallet it leaves from;
    `taken(hash)` says whether a transaction already settles another row; `twins` are the other
    unsettled rows of its kind from the same wallet to the same address, of the same token and amount.

    Chipi's records carry no reference, so a transfer found for a row in doubt is told from another
    only by those four: of twins, one at a time may be in doubt (sent, its outcome not known yet).
    Two in doubt at once, the first looked up could take the other's transfer as its own, and the
    other, re-signing its used nonce, would be refused and stay in doubt for ever: one transfer on
    chain for two debits."""
    from wallets.chipi import ChipiError, ChipiRateLimited, ChipiRejected, ChipiTimeout, ChipiUnavailable, get_gateway

    gateway = get_gateway()
    attempted_before = row.send_attempted_at
    refusals_before = row.refusals
    marked = False
    try:
        wallet = source()
        if attempted_before:
            found = _find_sent(
                gateway,
                wallet.address,
                to_address=to_address,
                token=token,
                amount=amount,
                taken=taken,
                since=row.created_at - CLOCK_SKEW,
            )
            if found.tx_hash is not None:
                return OutboxOutcome(tx_hash=found.tx_hash)
            if found.failed_hash is not None and row.attempts == 1:
                # Its one execution (whose answer was lost) failed on chain: nothing left. Not signed
                # again (a new transfer is not what a reverted one calls for); a withdrawal waits for
                # its signed transfer to expire before its refund, a sweep is for staff.
                # The failed transfer is the row's: a twin's look-up does not take it for its own. A
                # withdrawal writes it again under its lock (_withdrawal_await_refund), but this is a
                # sweep's only record of it (sweep_send fails it without a hash): unwritten, an equal
                # sweep in doubt took it for its own and failed though it went out (test_confirm).
                type(row).objects.filter(pk=row.pk).update(tx_hash=found.failed_hash)
                return OutboxOutcome(
                    refused=True,
                    reverted_hash=found.failed_hash,
                    error=f"Its one execution failed on chain ({found.failed_hash}, Chipi's records).",
                )
        # Opened before the row is marked (the look-up above needs no key: a send in doubt is found
        # without it): a key that does not open signs nothing, and marked, the row would read as an
        # execution in doubt (its refund held for a signed transfer's lifetime) though none was made.
        encrypt_key = keys.unseal(wallet.encrypt_key_sealed)
        # Committed before signing: a crash from here on is an unknown outcome, looked up next time.
        with transaction.atomic():
            # The row as it is now, locked: a worker whose claim ran out while it stalled finds that
            # another has attempted it since, and leaves it to them (its own "first attempt" would
            # be refused the nonce the other used, and refund money that left).
            # Its status read under the lock too: a row that left the outbox meanwhile (staff
            # settled it in review, whose un-marked refusals leave its mark as this one read it) is
            # never sent again.
            mark, nonce, status, refusals_before = (
                type(row)
                .objects.select_for_update()
                .values_list("send_attempted_at", "nonce", "status", "refusals")
                .get(pk=row.pk)
            )
            if mark != attempted_before or status not in OUTBOX_STATUSES:
                return OutboxOutcome(superseded=True)
            row.nonce = nonce or new_nonce()  # a row made before nonces were chosen at its making
            if not attempted_before:
                _outbox_lock(f"outbox:{wallet.address}:{to_address}:{token}:{amount}")
                if twins.filter(send_attempted_at__isnull=False).exists():
                    return OutboxOutcome(
                        error="Waiting for an equal transfer from the same wallet whose outcome is not known yet.",
                        retry_in=_backoff(row.attempts + 1),
                    )
            row.attempts += 1
            row.send_attempted_at = timezone.now()
            row.refusals = 0  # a new execution: its doubt starts now (put back if it turns out none)
            type(row).objects.filter(pk=row.pk).update(
                nonce=row.nonce, attempts=row.attempts, send_attempted_at=row.send_attempted_at, refusals=0
            )
        marked = True
        tx_hash = gateway.execute_transfer(
            wallet=_as_chipi(wallet),
            encrypt_key=encrypt_key,
            token=token,
            amount=amount,
            to_address=to_address,
            nonce=int(row.nonce, 16),
        )
    except keys.KeyUnsealError as exc:
        # Its master key is lost (deleted, or rotated away without CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS):
        # only an operator brings it back (`check --deploy` names it), so no retry every few seconds.
        logger.error("Outbox row %s waits: its wallet's key does not open (%s)", row.pk, exc)
        return OutboxOutcome(error=f"The sending wallet's key does not open: {exc}", retry_in=KEY_RETRY_SECONDS)
    except (ChipiRateLimited, ChipiUnavailable) as exc:
        # Refused before acting (Chipi's 429, PayGo's own budget) or never reached (no connection):
        # nothing was sent, so this was no attempt whose outcome is unknown. Left marked, a later
        # refusal would count as one ("refused after an unknown outcome") and the money would
        # stay in flight for ever instead of going back.
        # Only this attempt's own mark: another worker's, made since, stands. Nor is it counted:
        # `attempts` counts executions, and the confirmation checker undoes a reverted send only when
        # it was executed once (counted, a 429 then one send that reverted was left to staff).
        retry_in = _backoff(row.attempts)
        if marked:
            _outbox_unmark(row, attempted_before, refusals=refusals_before)
        if isinstance(exc, ChipiRateLimited):
            return OutboxOutcome(error=f"Chipi rate limited: {exc}", retry_in=exc.retry_after)
        return OutboxOutcome(error=f"{type(exc).__name__}: {exc}", retry_in=retry_in)
    except ChipiRejected as exc:
        if not attempted_before:
            return OutboxOutcome(refused=True, error=f"Chipi refused: {exc}")
        if not marked:  # the wallet or the look-up refused: nothing was signed, nothing to count
            return OutboxOutcome(error=f"Chipi refused: {exc}", retry_in=_backoff(row.attempts + row.refusals))
        # A refusal after an unknown outcome may be the account refusing a nonce it already used:
        # the money may have left. Never refunded here; the next attempt looks it up. This execution
        # did nothing (Chipi refused it): not counted, as a 429 is not, but counted as a refusal.
        if not _outbox_unmark(row, attempted_before, refusals=refusals_before + 1):
            return OutboxOutcome(superseded=True)  # another worker attempted it since: theirs
        logger.error("Outbox row %s refused after an unknown outcome (%d in a row): %s", row.pk, row.refusals, exc)
        if in_doubt_too_long(refusals=row.refusals, attempted_at=attempted_before, now=timezone.now()):
            return OutboxOutcome(
                review=True,
                error=(
                    f"In doubt since {attempted_before:%Y-%m-%d %H:%M:%S} UTC: in none of Chipi's records, "
                    f"re-signing refused {row.refusals} times ({exc}); check the chain."
                ),
            )
        return OutboxOutcome(
            error=f"Chipi refused after an unknown outcome: {exc}", retry_in=_backoff(row.attempts + row.refusals)
        )
    except ChipiTimeout as exc:
        return OutboxOutcome(error=f"Chipi timed out: {exc}", retry_in=_backoff(row.attempts))
    except ChipiError as exc:  # down: nothing known to have happened
        return OutboxOutcome(error=f"{type(exc).__name__}: {exc}", retry_in=_backoff(row.attempts))
    return OutboxOutcome(tx_hash=tx_hash)


def _outbox_unmark(row, attempted_before, *, refusals: int) -> bool:
    """Undo this attempt's mark (an execution Chipi refused or never received is none): the row's
    latest execution is the one before again, and its refusals `refusals`. Only this attempt's own
    mark: another worker's, made since, stands (False)."""
    if (
        type(row)
        .objects.filter(pk=row.pk, send_attempted_at=row.send_attempted_at)
        .update(send_attempted_at=attempted_before, attempts=F("attempts") - 1, refusals=refusals)
    ):
        row.send_attempted_at = attempted_before
        row.attempts -= 1
        row.refusals = refusals
        return True
    return False


def _outbox_lock(name: str) -> None:
    """A PostgreSQL advisory lock on `name` until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])


@dataclass(frozen=True)
class SentLookup:
    """What Chipi's records say of a row's transfers: the hash of one that went out (or may yet), and
    of one that failed on chain."""

    tx_hash: str | None
    failed_hash: str | None
    confirmed: bool = False  # tx_hash's record says it succeeded on chain (not pending)


def _find_sent(
    gateway, source_address: str, *, to_address: str, token: str, amount: int, taken, since: datetime
) -> SentLookup:
    """The (oldest) transfer from `source_address` matching this row that no other row has claimed,
    and one such that failed. Chipi's records carry no reference: the match is sender,
    recipient, token and amount. Every record since `since` (the row's making) is read, however many
    the wallet made since: a busy treasury's last 500 could all be newer than the row's first send."""
    matching = [
        tx
        for tx in gateway.wallet_transactions(source_address, since=since)
        if tx.from_address == source_address
        and tx.to_address == to_address
        and tx.token == token
        and tx.amount == amount
        and (tx.created_at is None or tx.created_at >= since)  # not one from before the row was made
        and not taken(tx.tx_hash)
    ]
    sent = [tx for tx in matching if tx.status != "failed"]
    failed = [tx.tx_hash for tx in matching if tx.status == "failed"]
    return SentLookup(
        tx_hash=sent[-1].tx_hash if sent else None,
        failed_hash=failed[-1] if failed else None,
        confirmed=bool(sent) and sent[-1].status == "confirmed",
    )


def _backoff(attempts: int) -> float:
    return min(MAX_BACKOFF_SECONDS, 5 * 2 ** max(0, attempts - 1))


def _withdrawal_retry_later(withdrawal: Withdrawal, error: str, seconds: float) -> str:
    # Unless another worker attempted it since (its attempt, its claim).
    Withdrawal.objects.filter(
        pk=withdrawal.pk, status=WithdrawalStatus.SENDING, send_attempted_at=withdrawal.send_attempted_at
    ).update(
        status=WithdrawalStatus.SENDING if withdrawal.send_attempted_at else WithdrawalStatus.PENDING,
        claimed_until=None,
        next_attempt_at=timezone.now() + timedelta(seconds=max(1.0, seconds)),
        last_error=error[:500],
    )
    logger.warning("Withdrawal %s will be retried in %.0fs: %s", withdrawal.pk, seconds, error)
    return WithdrawalStatus.SENDING if withdrawal.send_attempted_at else WithdrawalStatus.PENDING


def _withdrawal_review(withdrawal: Withdrawal, error: str) -> str:
    """In doubt for too long (in_doubt_too_long): out of the outbox, its money left in flight, for
    staff to settle (withdrawal_settle). Only while this worker's attempt is still its latest."""
    if Withdrawal.objects.filter(
        pk=withdrawal.pk, status=WithdrawalStatus.SENDING, send_attempted_at=withdrawal.send_attempted_at
    ).update(
        status=WithdrawalStatus.NEEDS_REVIEW,
        claimed_until=None,
        next_attempt_at=None,
        last_error=error[:500],
        updated_at=timezone.now(),
    ):
        logger.error("Withdrawal %s needs review (its money stays in flight): %s", withdrawal.pk, error)
        return WithdrawalStatus.NEEDS_REVIEW
    return Withdrawal.objects.values_list("status", flat=True).get(pk=withdrawal.pk)


def _withdrawal_in_doubt_reverted(withdrawal: Withdrawal, tx_hash: str) -> str:
    """Its one execution, whose answer was lost, failed on chain: REVERTED, its money still in flight
    until its refund is due. Only while this worker's attempt is still its latest."""
    with transaction.atomic():
        locked = Withdrawal.objects.select_for_update(of=("self",)).get(pk=withdrawal.pk)
        if locked.status != WithdrawalStatus.SENDING or locked.send_attempted_at != withdrawal.send_attempted_at:
            return locked.status
        _withdrawal_await_refund(locked, tx_hash)
    return WithdrawalStatus.REVERTED


def _withdrawal_await_refund(locked: Withdrawal, tx_hash: str) -> None:
    """Make a locked row whose one execution reverted on chain (`tx_hash`) wait, REVERTED, until its
    refund is due (withdrawal_refund_due_at); its money in flight. Inside the caller's transaction."""
    locked.status = WithdrawalStatus.REVERTED
    locked.tx_hash = tx_hash
    locked.refund_due_at = withdrawal_refund_due_at(locked)
    locked.claimed_until = None
    locked.next_attempt_at = None
    locked.last_error = (
        f"Reverted on chain ({tx_hash}); the transfer signed for it can still be executed until "
        f"{locked.refund_due_at:%Y-%m-%d %H:%M:%S} UTC: refunded then unless it was."
    )
    changed = ["status", "tx_hash", "refund_due_at", "claimed_until", "next_attempt_at", "last_error", "updated_at"]
    locked.save(update_fields=changed)
    logger.warning("Withdrawal %s reverted on chain (%s); refund due at %s", locked.pk, tx_hash, locked.refund_due_at)


def withdrawals_refund_due(limit: int = 100) -> list[str]:
    """Reverted withdrawals whose refund has come due (withdrawal_refund_settle), oldest first."""
    return [
        str(pk)
        for pk in Withdrawal.objects.filter(status=WithdrawalStatus.REVERTED, refund_due_at__lte=timezone.now())
        .order_by("refund_due_at")
        .values_list("pk", flat=True)[:limit]
    ]


def withdrawal_refund_settle(*, withdrawal_id) -> str:
    """Settle a reverted withdrawal once its refund is due (withdrawal_refund_due_at): its signed
    transfer can no longer execute, so what the treasury's records show now is final. They are read
    again (sender, recipient, token and amount since the row's making, as the outbox's look-up
    does): a transfer that succeeded (its signed transfer executed again by someone) settles it as
    sent, confirmed; none, its money goes back to the wallet (the refund, once). One still pending on
    chain is looked at again next run. Slow I/O: call outside any transaction."""
    from wallets.chipi import ChipiError, get_gateway

    withdrawal = Withdrawal.objects.select_related("asset").get(pk=withdrawal_id)
    now = timezone.now()
    if withdrawal.status != WithdrawalStatus.REVERTED or now < withdrawal_refund_due_at(withdrawal):
        return withdrawal.status
    treasury = ChipiWallet.objects.filter(role=ChipiWalletRole.TREASURY).exclude(address="").first()
    if treasury is None:  # it was executed from the treasury: cannot happen
        logger.error("Reverted withdrawal %s to settle but no treasury wallet", withdrawal.pk)
        return withdrawal.status
    try:
        found = _find_sent(
            get_gateway(),
            treasury.address,
            to_address=withdrawal.to_address,
            token=withdrawal.asset.code,
            amount=withdrawal.amount,
            taken=lambda tx_hash: Withdrawal.objects.filter(tx_hash=tx_hash).exclude(pk=withdrawal.pk).exists(),
            since=withdrawal.created_at - CLOCK_SKEW,
        )
    except ChipiError as exc:
        logger.warning("Reverted withdrawal %s not settled, to be tried at the next run: %r", withdrawal.pk, exc)
        return withdrawal.status
    if found.tx_hash is None:
        status = _withdrawal_finish(
            withdrawal,
            from_statuses=(WithdrawalStatus.REVERTED,),
            status=WithdrawalStatus.FAILED,
            metadata={"txHash": withdrawal.tx_hash, "reason": "reverted on chain"},
            changes={
                "last_error": f"Reverted on chain ({withdrawal.tx_hash}); its signed transfer expired unexecuted: "
                "the money went back to the wallet."
            },
        )
        logger.warning("Reverted withdrawal %s refunded: its signed transfer expired unexecuted", withdrawal.pk)
        return status
    if not found.confirmed:
        return withdrawal.status  # executed again, not settled on chain yet
    status = _withdrawal_finish(
        withdrawal,
        from_statuses=(WithdrawalStatus.REVERTED,),
        status=WithdrawalStatus.SENT,
        # Not withdrawal-sent: a row sent once already (then reverted) posted that.
        reference=f"withdrawal-executed-again:{withdrawal.pk}",
        notify=withdrawal.sent_at is None,  # its owner was told it was sent when it first was
        metadata={"txHash": found.tx_hash, "reason": "its signed transfer was executed again"},
        changes={
            "tx_hash": found.tx_hash,
            "sent_at": now,
            "confirmed_at": now,  # its record says it succeeded: nothing left to confirm
            "last_error": f"Reverted on chain ({withdrawal.tx_hash}), then its signed transfer was executed "
            f"again ({found.tx_hash}): sent, not refunded.",
        },
    )
    logger.warning("Reverted withdrawal %s was executed again (%s): sent", withdrawal.pk, found.tx_hash)
    return status


def _withdrawal_sent(withdrawal: Withdrawal, tx_hash: str) -> str:
    """On chain: the money in flight moves to the custody mirror (it left PayGo's custody). A row in
    review is settled so too: its transfer is found, what staff were to look for."""
    status = _withdrawal_finish(
        withdrawal,
        from_statuses=(WithdrawalStatus.SENDING, WithdrawalStatus.NEEDS_REVIEW),
        status=WithdrawalStatus.SENT,
        metadata={"txHash": tx_hash},
        changes={"tx_hash": tx_hash, "sent_at": timezone.now(), "last_error": ""},
    )
    if status == WithdrawalStatus.FAILED:
        # Its money went back to the wallet, and a transfer of it went out too (an answer that came
        # back after the row was settled): paid twice.
        logger.critical("Withdrawal %s was refunded, yet Chipi answered its transfer %s", withdrawal.pk, tx_hash)
    return status


def _withdrawal_failed(withdrawal: Withdrawal, error: str) -> str:
    """Refused for good: the money in flight goes back to the wallet it came from. Only while the
    row's latest attempt is the one refused: another worker's since (this one's claim ran out) may
    have sent it, and the refusal be of the nonce that one used."""
    status = _withdrawal_finish(
        withdrawal,
        only_after=withdrawal.send_attempted_at,
        status=WithdrawalStatus.FAILED,
        metadata={"reason": error[:200]},
        changes={"last_error": error[:500]},
    )
    logger.warning("Withdrawal %s failed for good and was refunded: %s", withdrawal.pk, error)
    return status


def _withdrawal_finish(
    withdrawal: Withdrawal,
    *,
    status,
    metadata,
    changes,
    only_after=None,
    from_statuses=(WithdrawalStatus.SENDING,),
    created_by=None,
    reference: str | None = None,
    notify: bool = True,
) -> str:
    """Settle a row that is being sent (or, `from_statuses`, in review), once, as SENT (its money
    leaves 'in flight' for the custody mirror: it left PayGo's custody) or FAILED (back to the wallet
    it came from, a refund); the posting's reference, one per row and outcome, is unique (`reference`:
    another than the outcome's own, for a row that was sent once already). With `only_after`, only
    while that is still its latest attempt."""
    with transaction.atomic():
        locked = (
            Withdrawal.objects.select_related("asset", "user").select_for_update(of=("self",)).get(pk=withdrawal.pk)
        )
        if locked.status not in from_statuses:
            return locked.status
        if only_after is not None and locked.send_attempted_at != only_after:
            return locked.status
        sent = status == WithdrawalStatus.SENT
        ledger.transfer(
            debit=ledger.system_account(SystemAccount.WITHDRAWALS_IN_FLIGHT, locked.asset),
            credit=(
                ledger.system_account(SystemAccount.CUSTODY, locked.asset)
                if sent
                else ledger.account_for_user(locked.user, locked.asset)
            ),
            amount=locked.amount,
            kind=TransactionKind.WITHDRAWAL if sent else TransactionKind.REFUND,
            reference=reference or f"{'withdrawal-sent' if sent else 'withdrawal-refund'}:{locked.pk}",
            metadata={"withdrawalId": str(locked.pk), **metadata},
            created_by=created_by,
        )
        locked.status = status
        locked.claimed_until = None
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.save(update_fields=["status", "claimed_until", *changes, "updated_at"])
        if notify:
            transaction.on_commit(lambda: _notify_withdrawal(locked, sent=sent), robust=True)
    return status


class Settlement(models.TextChoices):
    """What staff found of a withdrawal in review (withdrawal_settle)."""

    REFUNDED = "refunded", "Refunded: it is not on chain; the money goes back to the wallet"
    SENT = "sent", "Sent: it is on chain (its transaction hash)"


def withdrawal_settle(*, withdrawal_id, outcome: str, staff, reason: str, tx_hash: str = "") -> Withdrawal:
    """Staff settle a withdrawal in review (NEEDS_REVIEW), after checking the chain: refunded (its
    money goes back from in flight to the wallet, the refund the outbox would have made, with its
    reference) or sent (to the custody mirror, with the transaction hash staff found, confirmed).
    Final either way: the row leaves the outbox for good, and is settled once. The row is locked as
    the outbox locks it before a send, and the outbox checks its status under that lock.

    A refund waits until the send in doubt can no longer execute (withdrawal_refund_due_at): before
    that it could still go out after the money came back."""
    if outcome not in Settlement.values:
        raise _invalid("outcome", f"One of: {', '.join(Settlement.values)}.")
    if not reason.strip():
        raise _invalid("reason", "Say what you checked.", code="required")
    canonical = tx_hash_canonical(tx_hash) if tx_hash.strip() else None
    if outcome == Settlement.SENT and canonical is None:
        raise _invalid("tx_hash", "The transfer's hash on chain: 0x followed by 1 to 64 hexadecimal digits.")
    if outcome == Settlement.REFUNDED and tx_hash.strip():
        raise _invalid("tx_hash", "A refunded withdrawal has no transaction on chain: leave it empty.")
    note = f"Settled by staff ({staff.email}) as {outcome}: {reason.strip()}"
    with transaction.atomic():
        locked = Withdrawal.objects.select_for_update(of=("self",)).get(pk=withdrawal_id)
        if locked.status != WithdrawalStatus.NEEDS_REVIEW:
            raise Conflict(
                {
                    "message": f"This withdrawal is {locked.get_status_display().lower()}, not in review: "
                    "only one in review is settled by staff.",
                    "code": "not_in_review",
                }
            )
        now = timezone.now()
        if outcome == Settlement.REFUNDED:
            executable_until = withdrawal_refund_due_at(locked)
            if now < executable_until:
                raise Conflict(
                    {
                        "message": "Its send in doubt can still execute on chain until "
                        f"{executable_until:%Y-%m-%d %H:%M:%S} UTC: refund it after that, once the chain shows "
                        "it did not.",
                        "code": "may_still_execute",
                    }
                )
            _withdrawal_finish(
                locked,
                from_statuses=(WithdrawalStatus.NEEDS_REVIEW,),
                status=WithdrawalStatus.FAILED,
                metadata={"reason": "settled by staff"},
                changes={"last_error": note[:500]},
                created_by=staff,
            )
        else:
            if Withdrawal.objects.filter(tx_hash=canonical).exclude(pk=locked.pk).exists():
                raise _invalid("tx_hash", "This transaction settles another withdrawal already.")
            _withdrawal_finish(
                locked,
                from_statuses=(WithdrawalStatus.NEEDS_REVIEW,),
                status=WithdrawalStatus.SENT,
                metadata={"txHash": canonical, "reason": "settled by staff"},
                # Confirmed: staff saw it on chain; nothing automatic undoes it (sends_confirm).
                changes={"tx_hash": canonical, "sent_at": now, "confirmed_at": now, "last_error": note[:500]},
                created_by=staff,
            )
    logger.warning("Withdrawal %s settled by staff %s as %s", withdrawal_id, staff.pk, outcome)
    return Withdrawal.objects.select_related("asset", "user").get(pk=withdrawal_id)


def _notify_withdrawal(withdrawal: Withdrawal, *, sent: bool) -> None:
    from notifications import notify

    amount = f"{format_minor(withdrawal.amount, withdrawal.asset.decimals)} {withdrawal.asset.code}"
    noun = "Payout" if withdrawal.kind == WithdrawalKind.PAYOUT else "Withdrawal"
    if sent:
        title, message = f"{noun} sent", f"{amount} was sent to {withdrawal.to_address}."
    else:
        title, message = f"{noun} failed", f"{amount} could not be sent and is back in your wallet."
    notify(
        withdrawal.user, "payment", title, message, {"withdrawalId": str(withdrawal.pk), "status": withdrawal.status}
    )


def withdrawals_due(limit: int = 100) -> list[str]:
    """Outbox rows ready for a (re)send attempt, oldest first."""
    now = timezone.now()
    return [
        str(pk)
        for pk in Withdrawal.objects.filter(
            _withdrawal_sendable(now),
            status__in=[WithdrawalStatus.PENDING, WithdrawalStatus.SENDING],
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    ]


# --- Staff ----------------------------------------------------------------------------------------


def adjustment_post(
    *, account: Account, amount: int, reason: str, staff, form_token: str | None = None
) -> LedgerTransaction:
    """A staff correction: a balanced transaction between the account and platform revenue.

    `form_token`, the one the admin's form was served with, posts it once: the same form sent
    twice (a double click, a reload that sends it again) gives the first adjustment back."""
    if not reason.strip():
        raise _invalid("reason", "Say why.", code="required")
    if amount == 0:
        raise _invalid("amount", "Must not be zero.")
    if account.kind == AccountKind.SYSTEM and account.system_code == SystemAccount.PLATFORM_REVENUE:
        raise _invalid("account", "Adjust a user's wallet or another system account.")
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, account.asset)
    reference = f"adjustment:{form_token}" if form_token else None
    try:
        with transaction.atomic():
            return ledger.post(
                kind=TransactionKind.ADJUSTMENT,
                entries=[(account, amount), (revenue, -amount)],
                reference=reference,
                memo=reason.strip()[:500],
                metadata={"reason": reason.strip()[:500], "staffId": staff.pk},
                created_by=staff,
            )
    except ledger.DuplicateReference:
        first = LedgerTransaction.objects.get(reference=reference)
        if not first.entries.filter(account=account, amount=amount).exists():
            # The form sent again for another account or amount (Back, changed, sent): not the
            # same adjustment, and it must not read as posted.
            raise _invalid(
                "form_token", f"This form already posted adjustment #{first.pk}; open a new one to post another."
            ) from None
        return first
    except ledger.InsufficientFunds as exc:
        raise insufficient_funds_error(account.asset, exc.available) from None
    except IntegrityError as exc:
        if constraint_of(exc) != SWAP_LIQUIDITY_CONSTRAINT:
            raise
        raise _invalid("amount", "This would take the swap liquidity below zero.") from None


# --- Reconciliation -------------------------------------------------------------------------------


def reconcile() -> list[Reconciliation]:
    """Compare what PayGo's wallets hold on chain (the treasury's balance, and every deposit wallet
    with a sweep not yet confirmed: its money is still there, or already in the treasury, never in
    both; a sweep sent and pending on chain, or reverted after its last attempt and left to staff,
    included) with what the ledger says custody holds, per asset.

    Every asset, a token staff deactivated included: PayGo still holds what users kept of it and
    what was paid in since (credited as any deposit), until it is withdrawn; left out, a difference
    in its custody went unseen.

    One token-balance request per wallet and asset, through the gateway's rate limiter."""
    from wallets.chipi import get_gateway

    gateway = get_gateway()
    reports = []
    treasury = treasury_wallet()
    for asset in Asset.objects.order_by("pk"):
        unswept = (
            ChipiWallet.objects.filter(
                Q(sweeps__status__in=[SweepStatus.PENDING, SweepStatus.FAILED])
                | Q(sweeps__status=SweepStatus.SENT, sweeps__confirmed_at__isnull=True),
                sweeps__asset=asset,
            )
            .distinct()
            .values_list("address", flat=True)
        )
        on_chain = sum(gateway.token_balance(address, asset.code) for address in [treasury.address, *unswept])
        # Minus the custody mirror: everything deposited and not yet sent back out.
        expected = -ledger.system_account(SystemAccount.CUSTODY, asset).balance
        in_flight = ledger.system_account(SystemAccount.WITHDRAWALS_IN_FLIGHT, asset).balance
        report = Reconciliation.objects.create(
            asset=asset, on_chain=on_chain, ledger=expected, difference=on_chain - expected, in_flight=in_flight
        )
        if report.difference:
            logger.error(
                "Custody mismatch for %s: chain %s, ledger %s, difference %s (in flight %s)",
                asset.code,
                on_chain,
                expected,
                report.difference,
                in_flight,
            )
        reports.append(report)
    return reports


# --- Sweeps: deposits into the treasury -----------------------------------------------------------


def _sweep_queue(*, user, asset: Asset, deposit: LedgerTransaction, amount: int, tx_hash: str) -> Sweep | None:
    """Queue a verified deposit's sweep (inside the credit's transaction), one per deposit (not per
    transaction hash: one transaction can pay several deposits); its nonce chosen now."""
    wallet = ChipiWallet.objects.filter(owner=user).exclude(address="").first()
    if wallet is None:
        return None
    return Sweep.objects.create(
        wallet=wallet,
        asset=asset,
        amount=amount,
        deposit=deposit,
        deposit_tx_hash=tx_hash_canonical(tx_hash) or tx_hash,
        nonce=new_nonce(),
        next_attempt_at=timezone.now(),
    )


def _queue_sweep(sweep_id) -> None:
    from wallets.tasks import sweep_send_task

    sweep_send_task.delay(str(sweep_id))


def sweep_send(*, sweep_id) -> str:
    """Move one swept deposit from its deposit wallet into the treasury (the outbox's rule)."""
    now = timezone.now()
    claimed = Sweep.objects.filter(
        _due(now),
        pk=sweep_id,
        status=SweepStatus.PENDING,
    ).update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
    sweep = Sweep.objects.select_related("asset", "wallet").get(pk=sweep_id)
    if not claimed:
        return sweep.status
    from wallets.chipi import ChipiError

    try:
        treasury = treasury_wallet()  # made at Chipi on first use: Chipi may be down then
    except (ChipiError, keys.KeyUnsealError) as exc:
        outcome = OutboxOutcome(error=f"The treasury wallet could not be opened: {exc}", retry_in=_backoff(1))
    else:
        outcome = _outbox_execute(
            sweep,
            source=lambda: sweep.wallet,
            to_address=treasury.address,
            token=sweep.asset.code,
            amount=sweep.amount,
            taken=lambda tx_hash: Sweep.objects.filter(tx_hash=tx_hash).exclude(pk=sweep.pk).exists(),
            twins=Sweep.objects.filter(
                wallet=sweep.wallet, asset=sweep.asset, amount=sweep.amount, status=SweepStatus.PENDING
            ).exclude(pk=sweep.pk),
        )
    # Another worker attempted it since (this one's claim ran out), or it was sent and has since
    # been made again (sweep_revert): the row is theirs, whatever this attempt's answer.
    ours = Sweep.objects.filter(pk=sweep.pk, status=SweepStatus.PENDING, send_attempted_at=sweep.send_attempted_at)
    if outcome.tx_hash:
        if ours.update(
            status=SweepStatus.SENT, tx_hash=outcome.tx_hash, sent_at=timezone.now(), claimed_until=None, last_error=""
        ):
            return SweepStatus.SENT
        return Sweep.objects.values_list("status", flat=True).get(pk=sweep.pk)
    if outcome.superseded:
        return Sweep.objects.values_list("status", flat=True).get(pk=sweep.pk)
    if outcome.refused or outcome.review:
        # The money stays in the deposit wallet (reconciliation keeps counting it); staff look. One
        # in doubt for too long may be in the treasury instead: custody either way, and the
        # reconciliation counts both wallets.
        if ours.update(status=SweepStatus.FAILED, claimed_until=None, last_error=outcome.error[:500]):
            logger.error("Sweep %s refused for good: %s", sweep.pk, outcome.error)
            return SweepStatus.FAILED
        return Sweep.objects.values_list("status", flat=True).get(pk=sweep.pk)
    ours.update(
        claimed_until=None,
        next_attempt_at=timezone.now() + timedelta(seconds=max(1.0, outcome.retry_in)),
        last_error=outcome.error[:500],
    )
    return SweepStatus.PENDING


def sweeps_due(limit: int = 100) -> list[str]:
    now = timezone.now()
    return [
        str(pk)
        for pk in Sweep.objects.filter(
            _due(now),
            status=SweepStatus.PENDING,
        ).values_list("pk", flat=True)[:limit]
    ]


# --- Confirmation: what became of a send on chain -------------------------------------------------

# Chipi answers an execution's hash before the chain has settled it: its record says PENDING (or
# PROCESSING) until the transaction succeeds (SUCCESS) or reverts (FAILED, CANCELLED). A sent row
# is confirmed, or undone, from those records (sends_confirm, every minute).
#
# One read per run: the treasury's records (every withdrawal and payout leaves it, every sweep lands
# in it; a wallet's transaction-list holds what it received too), back to the oldest send not
# confirmed yet, at most this many pages of 100 (a twentieth of Chipi's 100 requests a minute).
CONFIRM_PAGES = 5
# A send whose transfer Chipi does not show settled this long after it was sent is for staff: logged
# once and marked in its last_error, never refunded (it may have left). It is looked for until
# CONFIRM_LOOKBACK after its sending, then left to them.
CONFIRM_ALARM = timedelta(minutes=30)
CONFIRM_LOOKBACK = timedelta(hours=24)


@dataclass
class ConfirmReport:
    confirmed: int = 0
    reverted: int = 0
    pending: int = 0  # not settled on chain yet (or not in Chipi's records yet): the next run looks again


def sends_confirm() -> ConfirmReport:
    """Look up every sent withdrawal, payout and sweep not confirmed yet in Chipi's records, by its
    hash: SUCCESS confirms it; FAILED undoes it (a withdrawal or payout is refunded to its owner, a
    sweep is sent again); pending is left for the next run."""
    from wallets.chipi import ChipiError, get_gateway

    now = timezone.now()
    report = ConfirmReport()
    unconfirmed = Q(status="sent", confirmed_at__isnull=True, sent_at__gte=now - CONFIRM_LOOKBACK)
    withdrawals = list(Withdrawal.objects.filter(unconfirmed).order_by("sent_at"))
    sweeps = list(Sweep.objects.filter(unconfirmed).order_by("sent_at"))
    if not withdrawals and not sweeps:
        return report  # no read at all
    treasury = ChipiWallet.objects.filter(role=ChipiWalletRole.TREASURY).exclude(address="").first()
    if treasury is None:  # nothing can have been sent without it
        logger.error("Sends to confirm but no treasury wallet: %s", [str(row.pk) for row in [*withdrawals, *sweeps]])
        return report
    since = min(_executed_since(row) for row in [*withdrawals, *sweeps])
    try:
        records = {
            tx.tx_hash: tx
            for tx in get_gateway().wallet_transactions(treasury.address, since=since, max_pages=CONFIRM_PAGES)
        }
    except ChipiError as exc:
        logger.warning("Confirmation of sends stopped, to be tried at the next run: %r", exc)
        return report
    for withdrawal in withdrawals:
        record = records.get(withdrawal.tx_hash)
        if record is not None and record.from_address != treasury.address:
            record = None  # not this send's transfer (cannot happen: the hash is Chipi's answer to it)
        _settle(report, withdrawal, record, now, confirm=withdrawal_confirm, revert=withdrawal_revert)
    for sweep in sweeps:
        record = records.get(sweep.tx_hash)
        if record is not None and record.to_address != treasury.address:
            record = None
        _settle(report, sweep, record, now, confirm=sweep_confirm, revert=sweep_revert)
    return report


def _executed_since(row) -> datetime:
    """How far back the row's transfer can be in Chipi's records: its only attempt, or (after
    several, any of which may be the one that went out) its making; less the clock skew."""
    executed = row.send_attempted_at if row.attempts == 1 and row.send_attempted_at else row.created_at
    return executed - CLOCK_SKEW


def _settle(report: ConfirmReport, row, record, now: datetime, *, confirm, revert) -> None:
    from wallets.chipi.interface import CONFIRMED, FAILED

    status = record.status if record is not None else None
    if status == CONFIRMED:
        report.confirmed += confirm(row_id=row.pk, tx_hash=row.tx_hash)
    elif status == FAILED:
        report.reverted += revert(row_id=row.pk, tx_hash=row.tx_hash)
    else:
        report.pending += 1
        if row.sent_at < now - CONFIRM_ALARM:
            _confirm_overdue(row, "pending" if record is not None else "not in Chipi's records")


def _confirm_overdue(row, seen: str) -> None:
    """Mark (once) and log loudly a send not settled on chain long after it was sent."""
    error = (
        f"Not confirmed on chain {CONFIRM_ALARM.total_seconds() / 60:.0f} minutes after it was sent ({seen}): "
        "check it on chain; nothing was refunded."
    )
    _flag_for_staff(row, error, unless=~Q(last_error=""))


def _flag_for_staff(row, error: str, *, unless: Q) -> None:
    """Write `error` into a sent, unconfirmed row's last_error for staff and log it, unless `unless`
    holds of the row (so that each is written, and logged, once)."""
    if (
        type(row)
        .objects.filter(pk=row.pk, status="sent", confirmed_at__isnull=True)
        .exclude(unless)
        .update(last_error=error)
    ):
        logger.error("%s %s (%s): %s", type(row).__name__, row.pk, row.tx_hash, error)


def withdrawal_confirm(*, row_id, tx_hash: str) -> bool:
    """Chipi's records show a sent withdrawal's (or payout's) transfer succeeded: recorded once."""
    now = timezone.now()
    return bool(
        Withdrawal.objects.filter(
            pk=row_id, status=WithdrawalStatus.SENT, tx_hash=tx_hash, confirmed_at__isnull=True
        ).update(confirmed_at=now, updated_at=now)
    )


def withdrawal_revert(*, row_id, tx_hash: str) -> bool:
    """Chipi's records show a sent withdrawal's (or payout's) transfer failed on chain: executed once,
    its money never left the treasury, so it comes back from the custody mirror into 'in flight',
    once (the row locked and its status checked; the reference unique), and the row is REVERTED: its
    refund waits until the transfer signed for it can no longer be executed again
    (withdrawal_refund_due_at, withdrawal_refund_settle). Executed more than once, it is for staff
    (_revert_for_staff)."""
    with transaction.atomic():
        locked = Withdrawal.objects.select_related("asset", "user").select_for_update(of=("self",)).get(pk=row_id)
        if locked.status != WithdrawalStatus.SENT or locked.tx_hash != tx_hash:
            return False  # undone already (another checker), or not this transfer's row any more
        if locked.confirmed_at is not None:
            logger.error("Withdrawal %s: Chipi reports %s FAILED after it was confirmed; not refunded", row_id, tx_hash)
            return False
        if locked.attempts != 1:
            _revert_for_staff(locked, tx_hash)
            return False
        ledger.transfer(
            debit=ledger.system_account(SystemAccount.CUSTODY, locked.asset),
            credit=ledger.system_account(SystemAccount.WITHDRAWALS_IN_FLIGHT, locked.asset),
            amount=locked.amount,
            kind=TransactionKind.WITHDRAWAL,
            reference=f"withdrawal-reverted:{locked.pk}",
            metadata={"withdrawalId": str(locked.pk), "txHash": tx_hash, "reason": "reverted on chain"},
        )
        _withdrawal_await_refund(locked, tx_hash)
    return True


def _revert_for_staff(row, tx_hash: str) -> None:
    """A send executed more than once (an attempt whose answer was lost is signed again with the same
    nonce) whose recorded transfer reverted: another execution of it may have gone out and succeeded
    (the one that used the nonce, so that this one reverted), so its money is not known to have
    stayed. Never undone here (a refund or a new sweep could pay twice): marked once and logged for
    staff, who check the chain."""
    error = (
        f"Reverted on chain ({tx_hash}) after {row.attempts} attempts: another may have gone out; "
        "check the chain; nothing was refunded or sent again."
    )
    _flag_for_staff(row, error, unless=Q(last_error=error))


def sweep_confirm(*, row_id, tx_hash: str) -> bool:
    """Chipi's records show a sweep's transfer succeeded: recorded once."""
    return bool(
        Sweep.objects.filter(pk=row_id, status=SweepStatus.SENT, tx_hash=tx_hash, confirmed_at__isnull=True).update(
            confirmed_at=timezone.now()
        )
    )


def sweep_revert(*, row_id, tx_hash: str) -> bool:
    """Chipi's records show a sweep's transfer failed on chain: executed once, the money is still in
    the deposit wallet (the ledger never moved: both wallets are custody), so the sweep is made
    again, once (a conditional update on its status and hash), with a new nonce: the reverted
    execution is final, and whether its nonce counts as used is the account's business. Executed
    more than once, it is for staff (_revert_for_staff)."""
    sent = Sweep.objects.filter(pk=row_id, status=SweepStatus.SENT, tx_hash=tx_hash, confirmed_at__isnull=True)
    row = sent.first()
    if row is None:
        return False  # made again already (another checker), or not this transfer's row any more
    if row.attempts != 1:
        _revert_for_staff(row, tx_hash)
        return False
    remade = sent.filter(attempts=1).update(
        status=SweepStatus.PENDING,
        tx_hash="",
        nonce=new_nonce(),
        attempts=0,
        send_attempted_at=None,
        sent_at=None,
        claimed_until=None,
        next_attempt_at=timezone.now(),
        last_error=f"Reverted on chain ({tx_hash}); sent again.",
    )
    if remade:
        logger.warning("Sweep %s reverted on chain (%s); it is sent again", row_id, tx_hash)
        transaction.on_commit(lambda: _queue_sweep(row_id), robust=True)
    return bool(remade)
