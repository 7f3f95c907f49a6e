"""Shapes of the wallet API. Amounts are decimal strings at the asset's precision."""

from __future__ import annotations

import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from paygo.api.amounts import AmountField, format_minor, minor_from_field
from paygo.api.filters import reversed_range
from paygo.api.instants import instant
from paygo.api.text import VisibleTextField, validate_storable_text
from paygo.api.validators import WholeNumberField, exactly_one_of
from wallets.models import Asset, Entry, LedgerTransaction, TransactionKind, Withdrawal
from wallets.services import tx_hash_canonical
from wallets.starknet import address_normalize

STARKNET_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{1,64}$")
TX_HASH = re.compile(r"^0x[0-9a-fA-F]{1,64}$")


class TxHashField(serializers.RegexField):
    """A Starknet transaction hash: "0x" and up to 64 hex digits naming a field element (not zero),
    read as the number it is: "0xabc" and "0x0...0abc" are the same transaction, kept as Chipi
    writes it ("0x" + 64 lower-case hex digits)."""

    default_error_messages = {
        "invalid": "A transaction hash is 0x followed by 1 to 64 hex digits.",
        "not_a_felt": "Not a Starknet transaction hash: it must be above zero and below the field's prime.",
    }

    def __init__(self, **kwargs):
        super().__init__(TX_HASH, max_length=66, **kwargs)

    def to_internal_value(self, data) -> str:
        canonical = tx_hash_canonical(super().to_internal_value(data))
        if canonical is None:
            self.fail("not_a_felt")
        return canonical


class StarknetAddressField(serializers.RegexField):
    """A Starknet address: "0x" and up to 64 hex digits."""

    def __init__(self, **kwargs):
        kwargs.setdefault("error_messages", {"invalid": "A Starknet address is 0x followed by hex digits."})
        super().__init__(STARKNET_ADDRESS, max_length=66, **kwargs)


class WalletAddressField(StarknetAddressField):
    """A Starknet address, validated and normalised as every comparison spells it
    (wallets.starknet.address_normalize: "0xBEEF" is "0x" + 60 zeros + "beef")."""

    default_error_messages = {
        "not_a_felt": "Not a Starknet address: it must be above zero and below the field's prime."
    }

    def to_internal_value(self, data) -> str:
        if isinstance(data, str):
            data = data.strip()
        normalized = address_normalize(super().to_internal_value(data))
        if normalized is None:
            self.fail("not_a_felt")
        return normalized


@extend_schema_field({"type": "string", "example": "USDC"})
class TokenField(serializers.Field):
    """An active asset by its code, case-insensitive. `include_inactive=True` (a withdrawal, a
    deposit, the history's filter) takes a token staff deactivated too: PayGo does no new business
    in it, but what a user holds in it is theirs to see and take out (it stayed in the wallet, unseen
    and frozen), and a payment in it that arrived on chain is theirs to be credited. Without it, a
    deactivated token is refused as no longer offered (code inactive_token), never as unknown."""

    default_error_messages = {
        "unknown_token": "Unknown token {token!r}; supported: {supported}.",
        # Not "unknown_token": the user may hold it (the balance lists it, inactive), and it can still be
        # withdrawn (WithdrawSerializer takes it).
        "inactive_token": "PayGo no longer offers {token} for this; what you hold of it can still be withdrawn "
        "(POST /api/v1/wallet/withdraw).",
    }

    def __init__(self, *, include_inactive: bool = False, **kwargs):
        self.include_inactive = include_inactive
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> Asset:
        validate_storable_text(data)  # such text would make the lookup below a database error
        code = str(data).strip().upper() if isinstance(data, str) else ""
        asset = Asset.objects.filter(code=code).first()
        if asset is None:
            supported = ", ".join(Asset.objects.filter(is_active=True).values_list("code", flat=True))
            self.fail("unknown_token", token=str(data)[:20], supported=supported)
        if not asset.is_active and not self.include_inactive:
            self.fail("inactive_token", token=asset.code)
        return asset

    def to_representation(self, value: Asset) -> str:
        return value.code


def default_asset() -> Asset:
    return Asset.objects.get(is_default=True)


class _AmountInToken(serializers.Serializer):
    """`amount` + `token`: validated into `asset` and integer `amount_minor`."""

    amount = AmountField()
    token = TokenField(required=False)

    def validate(self, attrs):
        attrs["asset"] = attrs.pop("token", None) or default_asset()
        attrs["amount_minor"] = minor_from_field("amount", attrs["amount"], attrs["asset"].decimals)
        return attrs


class DepositSerializer(_AmountInToken):
    # A deactivated token too: a payment in it that arrived on chain is the payer's, credited as the
    # webhook and the poller credit it (selectors.chain_payment_asset), and verified all the same.
    token = TokenField(required=False, include_inactive=True)
    tx_hash = TxHashField(required=False)


class WithdrawSerializer(_AmountInToken):
    token = TokenField(required=False, include_inactive=True)
    # Normalised and checked as a field element, as every stored address (wallets.starknet).
    to_address = WalletAddressField(
        help_text="A Starknet address: 0x and 1 to 64 hex digits, any case; kept as 0x + 64 lower-case digits."
    )


class ChipiPaymentSerializer(serializers.Serializer):
    """A Chipi `payment.completed` event, as Chipi's documentation shows it (snake_case here): flat,
    {event, txHash, amount, token, sender, recipient, timestamp, status}, the amount in whole tokens
    ("10.00"). The Python SDK has no webhook code to follow, so the documentation is the reading.

    The signature proves Chipi sent the event, not that its fields are sane: they are checked as
    strictly as a client's deposit, and the payment itself is then verified against Chipi's records
    (services.webhook_deposit) before anything is credited.
    """

    tx_hash = TxHashField()
    recipient = WalletAddressField()
    sender = WalletAddressField(required=False)
    # Not an asset lookup: an event for a token PayGo does not hold is acknowledged and ignored.
    token = serializers.CharField(max_length=64)
    # Whole tokens, as a string: converted by the token's decimals (not 2e6, not a negative).
    amount = serializers.RegexField(
        r"^[0-9]{1,40}(\.[0-9]{1,18})?\Z", error_messages={"invalid": "An amount of whole tokens, e.g. 10.00."}
    )
    status = serializers.CharField(max_length=20, required=False)


class TransferSerializer(_AmountInToken):
    # The ways to name the recipient: exactly one of them per transfer.
    RECIPIENT_FIELDS = ("recipient_id", "recipient_email", "recipient_address")

    recipient_id = WholeNumberField(required=False, min_value=1, max_value=2**63 - 1)
    recipient_email = serializers.EmailField(required=False)
    recipient_address = WalletAddressField(
        required=False,
        help_text="The recipient's PayGo wallet address (their walletAddress), in any case, with or without "
        "leading zeros. An address that is no PayGo user's is refused: paying outside PayGo is a withdrawal.",
    )
    # Shown to the recipient as written: visible text, its lines kept (a direction override or a
    # zero-width space made "Refund from PayGo Support" of other words).
    memo = VisibleTextField(multiline=True, required=False, allow_blank=True, max_length=500)

    def validate(self, attrs):
        attrs["recipient_named_by"] = exactly_one_of(attrs, *self.RECIPIENT_FIELDS, what="the recipient")
        return super().validate(attrs)


class SwapSerializer(serializers.Serializer):
    from_token = TokenField()
    to_token = TokenField()
    amount = AmountField()
    min_received = AmountField(allow_zero=True, required=False)

    def validate(self, attrs):
        attrs["amount_minor"] = minor_from_field("amount", attrs["amount"], attrs["from_token"].decimals)
        minimum = attrs.get("min_received")
        attrs["min_received_minor"] = (
            minor_from_field("min_received", minimum, attrs["to_token"].decimals, allow_zero=True) if minimum else 0
        )
        return attrs


class TransactionsQuerySerializer(serializers.Serializer):
    """?type=&token=&from=&to= (`from` included, `to` excluded; a reversed range is a 400)."""

    type = serializers.ChoiceField(choices=LedgerTransaction._meta.get_field("kind").choices, required=False)
    token = TokenField(required=False, include_inactive=True)

    def get_fields(self):
        # `from` is a Python keyword: the fields are declared here rather than as attributes.
        return {
            **super().get_fields(),
            "from": serializers.DateTimeField(required=False),
            "to": serializers.DateTimeField(required=False),
        }

    def validate(self, attrs):
        if refusal := reversed_range(attrs.get("from"), attrs.get("to")):
            raise serializers.ValidationError({"from": [refusal]})
        return attrs


# What a user sees of a transaction's metadata, by its kind: what tells them what it was. The rest
# is for staff, whom the admin shows it whole: who adjusted a balance and why, Chipi's error text
# behind a refund, how a deposit was learnt of.
USER_METADATA: dict[str, tuple[str, ...]] = {
    TransactionKind.DEPOSIT: ("txHash", "token"),
    TransactionKind.WITHDRAWAL: ("withdrawalId", "toAddress", "kind"),
    TransactionKind.TRANSFER: ("senderId", "recipientId", "token"),
    TransactionKind.CHARGE: ("sessionId", "sessionFee"),
    TransactionKind.REFUND: ("withdrawalId", "txHash"),
    TransactionKind.SWAP: ("fromToken", "toToken", "rate"),
    TransactionKind.ADJUSTMENT: (),
}
# The memo a user sees of a transaction whose memo staff wrote for staff (an adjustment's is its
# reason, which may be internal: "chargeback fraud case #77").
USER_MEMO: dict[str, str] = {TransactionKind.ADJUSTMENT: "Balance adjustment by PayGo"}


class EntrySerializer(serializers.ModelSerializer):
    """One line of a user's history: their side of a ledger transaction, as its owner may see it
    (USER_METADATA, USER_MEMO). A transaction may give the user several lines (a swap: the debit of
    one token and the credit of the other), so a line's `id` is its entry's, and `transactionId`
    the transaction's they share (the one notifications name)."""

    id = serializers.IntegerField(read_only=True, help_text="This line's own id (its ledger entry's).")
    transaction_id = serializers.IntegerField(
        help_text="The ledger transaction's id, shared by its lines (a swap's two); notifications name it."
    )
    type = serializers.CharField(source="transaction.kind")
    token = serializers.CharField(source="asset.code")
    amount = serializers.SerializerMethodField()
    direction = serializers.SerializerMethodField()
    memo = serializers.SerializerMethodField()
    metadata = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(source="transaction.created_at")

    class Meta:
        model = Entry
        fields = ["id", "transaction_id", "type", "token", "amount", "direction", "memo", "metadata", "created_at"]

    # A metering transaction is shared by a batch of sessions: a charge is described by its own
    # entry (the session and interval it bills), never by the batch.
    def get_memo(self, entry: Entry) -> str:
        if entry.session_id:
            return entry.session.service.name
        return USER_MEMO.get(entry.transaction.kind, entry.transaction.memo)

    @extend_schema_field(
        {
            "type": "object",
            "description": "What the transaction was, by type: deposit {txHash, token}; withdrawal {withdrawalId, "
            "toAddress, kind}; transfer {senderId, recipientId, token}; swap {fromToken, toToken, rate}; refund "
            "{withdrawalId, txHash}; a charge {sessionId, serviceId, serviceName, billedFrom, billedUntil}; "
            "adjustment (by PayGo) {}.",
        }
    )
    def get_metadata(self, entry: Entry) -> dict:
        if not entry.session_id:
            metadata = entry.transaction.metadata
            return {key: metadata[key] for key in USER_METADATA.get(entry.transaction.kind, ()) if key in metadata}
        session = entry.session
        return {
            "sessionId": str(session.session_id),
            "serviceId": session.service_id,
            "serviceName": session.service.name,
            "billedFrom": instant(entry.billed_from),
            "billedUntil": instant(entry.billed_until),
        }

    def get_amount(self, entry: Entry) -> str:
        return format_minor(entry.amount, entry.asset.decimals)

    def get_direction(self, entry: Entry) -> str:
        return "credit" if entry.amount > 0 else "debit"


class WithdrawalSerializer(serializers.ModelSerializer):
    token = serializers.CharField(source="asset.code")
    amount = serializers.SerializerMethodField()

    class Meta:
        model = Withdrawal
        fields = [
            "id",
            "kind",
            "status",
            "amount",
            "token",
            "to_address",
            "tx_hash",
            "attempts",
            "created_at",
            "sent_at",
            "confirmed_at",
            "refund_due_at",
        ]
        extra_kwargs = {
            "status": {
                "help_text": "pending or sending: in the outbox. sent: executed on chain (confirmedAt once the "
                "chain accepted it). reverted: its transfer reverted on chain, but the transfer PayGo signed "
                "for it can still be executed until refundDueAt; then it ends failed (refunded) or, if it was "
                "executed, sent. failed: refused by Chipi, or reverted and not executed again before its "
                "refund was due; either way the money is back in the wallet. needs_review: whether its send "
                "went out is not known and staff are checking the chain; it is not sent again, and ends sent "
                "or failed (refunded)."
            },
            "refund_due_at": {
                "help_text": "A reverted withdrawal's: when the transfer signed for it can no longer execute and "
                "its money goes back to the wallet unless it was executed; null otherwise."
            },
            "confirmed_at": {
                "help_text": "When Chipi's records showed the sent transfer succeeded on chain; null until then."
            },
        }

    def get_amount(self, withdrawal: Withdrawal) -> str:
        return format_minor(withdrawal.amount, withdrawal.asset.decimals)


class AssetSerializer(serializers.ModelSerializer):
    token = serializers.CharField(source="code")
    minimum_withdrawal = serializers.SerializerMethodField(
        help_text="The smallest amount of it a withdrawal may be (0: any); below it, a 400 `below_minimum`."
    )

    class Meta:
        model = Asset
        fields = ["token", "name", "decimals", "is_default", "minimum_withdrawal"]

    @extend_schema_field(AmountField)
    def get_minimum_withdrawal(self, asset: Asset) -> str:
        return format_minor(asset.minimum_withdrawal, asset.decimals)


# --- What the wallet API answers (for the schema; the views build these bodies) -----------------


class DepositResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    balance = AmountField(help_text="The available balance after the deposit.")
    token = serializers.CharField()
    tx_hash = serializers.CharField()
    transaction = EntrySerializer()


class WithdrawResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    withdrawal = WithdrawalSerializer()
    remaining_balance = AmountField()


class TokenBalanceSerializer(serializers.Serializer):
    token = serializers.CharField()
    active = serializers.BooleanField(
        help_text="False for a token staff deactivated (listed while you hold some): no sessions, transfers or "
        "swaps in it; it can be withdrawn, and a payment in it that arrives at your deposit address is credited."
    )
    balance = AmountField()
    available = AmountField(help_text="The balance less what running sessions hold.")
    held = AmountField()


class BalanceResponseSerializer(TokenBalanceSerializer):
    """The default token's balance at the top level, every token's in `balances`."""

    balances = TokenBalanceSerializer(many=True)


class TransferResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    remaining_balance = AmountField()
    token = serializers.CharField()
    transaction = EntrySerializer(help_text="The sender's side of the transfer.")


class AddressResponseSerializer(serializers.Serializer):
    address = serializers.CharField(help_text="The caller's deposit address on Starknet.")


class SupportedTokensResponseSerializer(serializers.Serializer):
    tokens = AssetSerializer(many=True)


class SwapResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    rate = serializers.CharField(help_text="Units of to_token per unit of from_token.")
    received = AmountField()
    from_token = serializers.CharField()
    to_token = serializers.CharField()
    transaction = EntrySerializer(help_text="The debit of from_token.")


class WebhookResponseSerializer(serializers.Serializer):
    received = serializers.BooleanField()
    handled = serializers.BooleanField(help_text="False for events PayGo does not act on.")
    credited = serializers.BooleanField(required=False, help_text="For a payment: whether it was credited now.")
