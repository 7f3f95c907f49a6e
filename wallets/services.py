"""The write paths of wallets: deposits, transfers, swaps, withdrawals and payouts (the outbox),
staff adjustments and reconciliation. Every balance change goes through wallets/ledger.py."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework import exceptions

from paygo.api.amounts import MAX_WHOLE_UNITS, format_minor
from paygo.api.errors import Conflict, UpstreamUnavailable
from wallets import ledger
from wallets.models import (
    Account,
    AccountKind,
    Asset,
    LedgerTransaction,
    Reconciliation,
    SystemAccount,
    TransactionKind,
    Withdrawal,
    WithdrawalKind,
    WithdrawalStatus,
)
from wallets.selectors import wallet_owner
from wallets.starknet import address_normalize, felt_canonical

logger = logging.getLogger("paygo.wallets")

STARKNET_ADDRESS_HELP = "a Starknet address: 0x followed by 1 to 64 hexadecimal digits"


def _invalid(field: str, message: str, code: str = "invalid") -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [exceptions.ErrorDetail(message, code=code)]})


def insufficient_funds_error(asset: Asset, error: ledger.InsufficientFunds) -> exceptions.ValidationError:
    available = format_minor(error.available, asset.decimals)
    return exceptions.ValidationError(
        {
            "amount": [
                exceptions.ErrorDetail(
                    f"Insufficient funds: {available} {asset.code} available.", code="insufficient_funds"
                )
            ]
        }
    )


# --- Wallet address -------------------------------------------------------------------------------


def wallet_open(*, user) -> str:
    """Give the user a deposit address through the Chipi gateway (once)."""
    from wallets.chipi import ChipiUnavailable, get_gateway

    if user.wallet_address:
        return user.wallet_address
    opened = get_gateway().create_wallet(external_user_id=str(user.pk))
    # Kept in the one spelling every comparison uses (the database refuses any other).
    address = address_normalize(opened)
    if address is None:
        raise ChipiUnavailable(f"Chipi answered a malformed address: {opened!r}")
    # Conditional: a concurrent opener that won keeps its address.
    type(user).objects.filter(pk=user.pk, wallet_address="").update(wallet_address=address)
    user.refresh_from_db(fields=["wallet_address"])
    return user.wallet_address


# --- Deposits -------------------------------------------------------------------------------------


def tx_hash_canonical(tx_hash: str) -> str | None:
    """A transaction hash as Chipi and the chain write it, "0x" + 64 lower-case hex digits, or None
    when `tx_hash` is not one. It is a number: "0xABC" and "0x" + 61 zeros + "abc" are the same
    transaction; zero and numbers past the field are none."""
    return felt_canonical(tx_hash)


@dataclass(frozen=True)
class DepositResult:
    transaction: LedgerTransaction
    created: bool


def deposit_reference(tx_hash: str) -> str:
    """One reference per on-chain transaction however its hash is written: a Starknet hash is a
    number, and "0x0ABC", "0xabc" and "0x" + 61 zeros + "abc" name the same one (a deposit credited
    under one spelling must not be credited again under another)."""
    return f"deposit:{tx_hash_canonical(tx_hash) or tx_hash.strip().lower()}"


def deposit_verify(*, user, asset: Asset, amount: int, tx_hash: str | None):
    """Check an on-chain payment with Chipi before it is credited (slow I/O: call outside any
    transaction). Without a hash, the sandbox simulates the payment into the user's address."""
    from wallets.chipi import ChipiError, ChipiRejected, ChipiSandbox, get_gateway

    gateway = get_gateway()
    address = wallet_open(user=user)
    try:
        if not tx_hash:
            if not isinstance(gateway, ChipiSandbox):
                raise _invalid("tx_hash", "This field is required.", code="required")
            return gateway.receive_payment(to_address=address, token=asset.code, amount=amount)
        chain_tx = gateway.get_transaction(tx_hash)
    except ChipiRejected as exc:
        if exc.status not in (400, 422):
            raise UpstreamUnavailable(
                f"Chipi refused PayGo's request to verify the deposit ({exc.code}); nothing was credited."
            ) from None
        # Chipi takes the hash itself for invalid: the client's input, not an outage.
        raise _invalid("tx_hash", "Chipi refused this transaction hash.", code="rejected") from None
    except ChipiError as exc:
        raise UpstreamUnavailable(
            f"Chipi could not be reached to verify the deposit ({exc.code}); nothing was credited."
        ) from None
    if chain_tx is None:
        raise _invalid("tx_hash", "No such transaction on chain.", code="unknown_transaction")
    if chain_tx.status != "confirmed":
        raise _invalid("tx_hash", f"The transaction is {chain_tx.status}, not confirmed yet.", code="not_confirmed")
    if chain_tx.to_address.lower() != address.lower():
        raise _invalid("tx_hash", "The transaction did not pay into your deposit address.", code="wrong_recipient")
    if chain_tx.token != asset.code:
        raise _invalid("token", f"The transaction moved {chain_tx.token}, not {asset.code}.", code="wrong_token")
    if chain_tx.amount != amount:
        paid = format_minor(chain_tx.amount, asset.decimals)
        raise _invalid("amount", f"The transaction paid {paid} {asset.code}.", code="wrong_amount")
    return chain_tx


def deposit_credit(*, user, asset: Asset, amount: int, tx_hash: str, source: str) -> DepositResult:
    """Credit a verified on-chain payment, once per transaction hash whoever asks."""
    reference = deposit_reference(tx_hash)
    account = ledger.account_for_user(user, asset)
    try:
        with transaction.atomic():
            tx = ledger.transfer(
                debit=ledger.system_account(SystemAccount.CUSTODY, asset),
                credit=account,
                amount=amount,
                kind=TransactionKind.DEPOSIT,
                reference=reference,
                memo=f"Deposit {tx_hash}",
                metadata={"txHash": tx_hash, "source": source, "token": asset.code},
            )
    except ledger.DuplicateReference:
        existing = LedgerTransaction.objects.get(reference=reference)
        if not existing.entries.filter(account=account).exists():
            raise Conflict({"message": "This transaction was already credited.", "code": "already_credited"}) from None
        return DepositResult(existing, created=False)
    transaction.on_commit(lambda: _notify_deposit(user, asset, amount, tx.pk))
    return DepositResult(tx, created=True)


def _notify_deposit(user, asset: Asset, amount: int, tx_id: int) -> None:
    from notifications import notify

    notify(
        user,
        "payment",
        "Deposit credited",
        f"{format_minor(amount, asset.decimals)} {asset.code} arrived in your wallet.",
        {"transactionId": tx_id, "token": asset.code},
    )


def webhook_deposit(*, to_address: str, token: str, amount: int, tx_hash: str) -> DepositResult | None:
    """A signed Chipi `payment.completed`: credit the address's owner once per hash (None: not ours)."""
    asset = Asset.objects.filter(code=token.upper()).first()
    # The bound every amount of the API has (MAX_WHOLE_UNITS), here in minor units of the asset.
    if asset is not None and amount >= MAX_WHOLE_UNITS * 10**asset.decimals:
        raise _invalid("amount", f"Must be less than {MAX_WHOLE_UNITS:,} {asset.code}.")
    user = wallet_owner(to_address)
    if user is None or asset is None or amount <= 0:
        logger.warning("Chipi webhook for an unknown address or token: %s %s", to_address, token)
        return None
    return deposit_credit(user=user, asset=asset, amount=amount, tx_hash=tx_hash, source="webhook")


# --- Transfers and swaps --------------------------------------------------------------------------


# Why a recipient named each way (TransferSerializer.RECIPIENT_FIELDS) is no one to pay.
_NO_RECIPIENT = {
    "recipient_id": "No active user with this id or email.",
    "recipient_email": "No active user with this id or email.",
    "recipient_address": "No PayGo user has this wallet address. To send to an address outside PayGo, "
    "withdraw to it (POST /api/v1/wallet/withdraw).",
}


def wallet_transfer(
    *, sender, recipient, asset: Asset, amount: int, memo: str = "", named_by: str = "recipient_id"
) -> LedgerTransaction:
    """Pay another PayGo user inside the ledger (never on chain). `named_by` is how the request named
    the recipient (recipient_id, recipient_email or recipient_address): a refusal names that field."""
    if recipient is None or not recipient.is_active:
        raise _invalid(named_by, _NO_RECIPIENT[named_by], code="unknown_recipient")
    if recipient.pk == sender.pk:
        raise _invalid(named_by, "You cannot transfer to yourself.", code="self_transfer")
    try:
        tx = ledger.transfer(
            debit=ledger.account_for_user(sender, asset),
            credit=ledger.account_for_user(recipient, asset),
            amount=amount,
            kind=TransactionKind.TRANSFER,
            memo=memo[:500],
            metadata={"senderId": sender.pk, "recipientId": recipient.pk, "token": asset.code},
        )
    except ledger.InsufficientFunds as exc:
        raise insufficient_funds_error(asset, exc) from None
    transaction.on_commit(lambda: _notify_transfer(sender, recipient, asset, amount, tx.pk))
    return tx


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
    """Minor units of to_asset for `amount` minor units of from_asset at `rate` (whole units), floored."""
    scaled = Decimal(amount) * rate * (Decimal(10) ** (to_asset.decimals - from_asset.decimals))
    return int(scaled.to_integral_value(rounding=ROUND_FLOOR))


def wallet_swap(
    *, user, from_asset: Asset, to_asset: Asset, amount: int, min_received: int, rate: Decimal
) -> LedgerTransaction:
    """Exchange through the swap liquidity accounts in one ledger transaction."""
    if from_asset.pk == to_asset.pk:
        raise _invalid("to_token", "Choose two different tokens.", code="same_token")
    received = swap_quote(from_asset=from_asset, to_asset=to_asset, amount=amount, rate=rate)
    if received <= 0:
        raise _invalid("amount", "The amount is too small to receive anything.", code="too_small")
    if received < min_received:
        got = format_minor(received, to_asset.decimals)
        raise _invalid("min_received", f"The swap would give {got} {to_asset.code}, under your minimum.", "slippage")
    try:
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
        raise insufficient_funds_error(from_asset, exc) from None


# --- Withdrawals and payouts: the outbox ----------------------------------------------------------


def withdrawal_request(
    *, user, asset: Asset, amount: int, to_address: str, kind: str = WithdrawalKind.WITHDRAWAL
) -> Withdrawal:
    """Move the amount out of the wallet into 'withdrawals in flight' and queue it for Chipi."""
    with transaction.atomic():
        withdrawal = Withdrawal.objects.create(
            kind=kind, user=user, asset=asset, amount=amount, to_address=to_address, next_attempt_at=timezone.now()
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
            raise insufficient_funds_error(asset, exc) from None
    transaction.on_commit(lambda: _queue_send(withdrawal.pk))
    return withdrawal


def _queue_send(withdrawal_id) -> None:
    from wallets.tasks import withdrawal_send_task

    withdrawal_send_task.delay(str(withdrawal_id))


CLAIM_SECONDS = 120
MAX_BACKOFF_SECONDS = 3600


def withdrawal_send(*, withdrawal_id) -> str:
    """Hand one outbox row to Chipi, safely under retries, crashes and lost responses.

    Returns the resulting status. A row whose send may have reached Chipi is looked up by its
    reference before any resend, so a timeout never becomes a double send; only a definitive
    refusal gives the money back.
    """
    from wallets.chipi import ChipiRateLimited, ChipiRejected, ChipiTimeout, get_gateway
    from wallets.chipi.ratelimit import acquire

    now = timezone.now()
    claimed = Withdrawal.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        pk=withdrawal_id,
        status__in=[WithdrawalStatus.PENDING, WithdrawalStatus.SENDING],
    ).update(status=WithdrawalStatus.SENDING, claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
    withdrawal = Withdrawal.objects.select_related("asset").get(pk=withdrawal_id)
    if not claimed:
        return withdrawal.status  # sent, failed, not due yet, or another worker has it

    gateway = get_gateway()
    reference = str(withdrawal.pk)
    try:
        if withdrawal.send_attempted_at is not None:
            found = gateway.find_transfer(reference)
            if found is not None and found.status != "failed":
                return _withdrawal_sent(withdrawal, found.tx_hash)
        wait = acquire()
        if wait > 0:
            return _withdrawal_retry_later(withdrawal, "Chipi rate limit reached here", wait, count_attempt=False)
        Withdrawal.objects.filter(pk=withdrawal.pk).update(
            send_attempted_at=timezone.now(), attempts=withdrawal.attempts + 1
        )
        withdrawal.attempts += 1
        withdrawal.send_attempted_at = timezone.now()
        sent = gateway.send_transfer(
            reference=reference, token=withdrawal.asset.code, amount=withdrawal.amount, to_address=withdrawal.to_address
        )
    except ChipiRejected as exc:
        return _withdrawal_failed(withdrawal, f"Chipi refused: {exc}")
    except ChipiRateLimited as exc:
        return _withdrawal_retry_later(withdrawal, f"Chipi rate limited: {exc}", exc.retry_after, count_attempt=False)
    except ChipiTimeout as exc:
        # Unknown outcome: keep 'sending'; the next attempt looks the transfer up first.
        return _withdrawal_retry_later(withdrawal, f"Chipi timed out: {exc}", _backoff(withdrawal.attempts))
    except Exception as exc:  # ChipiUnavailable and anything unexpected: nothing known, try again later
        return _withdrawal_retry_later(withdrawal, f"{type(exc).__name__}: {exc}", _backoff(withdrawal.attempts))
    return _withdrawal_sent(withdrawal, sent.tx_hash)


def _backoff(attempts: int) -> float:
    return min(MAX_BACKOFF_SECONDS, 5 * 2 ** max(0, attempts - 1))


def _withdrawal_retry_later(withdrawal: Withdrawal, error: str, seconds: float, *, count_attempt: bool = True) -> str:
    Withdrawal.objects.filter(pk=withdrawal.pk, status=WithdrawalStatus.SENDING).update(
        status=WithdrawalStatus.SENDING if withdrawal.send_attempted_at else WithdrawalStatus.PENDING,
        claimed_until=None,
        next_attempt_at=timezone.now() + timedelta(seconds=max(1.0, seconds)),
        last_error=error[:500],
    )
    logger.warning("Withdrawal %s will be retried in %.0fs: %s", withdrawal.pk, seconds, error)
    return WithdrawalStatus.SENDING if withdrawal.send_attempted_at else WithdrawalStatus.PENDING


def _withdrawal_sent(withdrawal: Withdrawal, tx_hash: str) -> str:
    """On chain: the money in flight moves to the custody mirror (it left PayGo's custody)."""
    return _withdrawal_finish(
        withdrawal,
        status=WithdrawalStatus.SENT,
        credit=lambda w: ledger.system_account(SystemAccount.CUSTODY, w.asset),
        kind=TransactionKind.WITHDRAWAL,
        reference="withdrawal-sent",
        metadata={"txHash": tx_hash},
        changes={"tx_hash": tx_hash, "sent_at": timezone.now(), "last_error": ""},
    )


def _withdrawal_failed(withdrawal: Withdrawal, error: str) -> str:
    """Refused for good: the money in flight goes back to the wallet it came from."""
    status = _withdrawal_finish(
        withdrawal,
        status=WithdrawalStatus.FAILED,
        credit=lambda w: ledger.account_for_user(w.user, w.asset),
        kind=TransactionKind.REFUND,
        reference="withdrawal-refund",
        metadata={"reason": error[:200]},
        changes={"last_error": error[:500]},
    )
    logger.warning("Withdrawal %s failed for good and was refunded: %s", withdrawal.pk, error)
    return status


def _withdrawal_finish(withdrawal: Withdrawal, *, status, credit, kind, reference, metadata, changes) -> str:
    """Settle a row that is being sent, once: its money leaves 'in flight' for `credit`."""
    with transaction.atomic():
        locked = (
            Withdrawal.objects.select_related("asset", "user").select_for_update(of=("self",)).get(pk=withdrawal.pk)
        )
        if locked.status != WithdrawalStatus.SENDING:
            return locked.status
        ledger.transfer(
            debit=ledger.system_account(SystemAccount.WITHDRAWALS_IN_FLIGHT, locked.asset),
            credit=credit(locked),
            amount=locked.amount,
            kind=kind,
            reference=f"{reference}:{locked.pk}",
            metadata={"withdrawalId": str(locked.pk), **metadata},
        )
        locked.status = status
        locked.claimed_until = None
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.save(update_fields=["status", "claimed_until", *changes, "updated_at"])
        transaction.on_commit(lambda: _notify_withdrawal(locked, sent=status == WithdrawalStatus.SENT))
    return status


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
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
            status__in=[WithdrawalStatus.PENDING, WithdrawalStatus.SENDING],
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    ]


# --- Staff ----------------------------------------------------------------------------------------


def adjustment_post(*, account: Account, amount: int, reason: str, staff) -> LedgerTransaction:
    """A staff correction: a balanced transaction between the account and platform revenue."""
    if not reason.strip():
        raise _invalid("reason", "Say why.", code="required")
    if amount == 0:
        raise _invalid("amount", "Must not be zero.")
    if account.kind == AccountKind.SYSTEM and account.system_code == SystemAccount.PLATFORM_REVENUE:
        raise _invalid("account", "Adjust a user's wallet or another system account.")
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, account.asset)
    try:
        return ledger.post(
            kind=TransactionKind.ADJUSTMENT,
            entries=[(account, amount), (revenue, -amount)],
            memo=reason.strip()[:500],
            metadata={"reason": reason.strip()[:500], "staffId": staff.pk},
            created_by=staff,
        )
    except ledger.InsufficientFunds as exc:
        raise insufficient_funds_error(account.asset, exc) from None


# --- Reconciliation -------------------------------------------------------------------------------


def reconcile() -> list[Reconciliation]:
    """Compare what Chipi custody holds with what the ledger says it should, per asset."""
    from wallets.chipi import get_gateway

    gateway = get_gateway()
    reports = []
    for asset in Asset.objects.filter(is_active=True):
        on_chain = gateway.custody_balance(asset.code)
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
