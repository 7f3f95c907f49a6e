"""The wallet API. Money POSTs honour Idempotency-Key (wallets/idempotency.py)."""

from __future__ import annotations

import logging

from django.conf import settings
from djangorestframework_camel_case.settings import api_settings as camel_case_settings
from djangorestframework_camel_case.util import underscoreize
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, generics, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from paygo.api.amounts import AmountField, format_minor
from paygo.api.errors import Unavailable, UpstreamUnavailable
from paygo.api.filters import query_filters
from paygo.api.parsers import JSONRefused, json_loads
from paygo.api.ratelimits import MONEY, by_user, enforce
from paygo.api.schema import ErrorCode, error_codes, error_responses
from wallets import selectors, services
from wallets.idempotency import SCHEMA_PARAMETER as IDEMPOTENCY_PARAMETER
from wallets.idempotency import idempotent, replays_first
from wallets.models import Account, AccountKind, Asset, Entry, Withdrawal
from wallets.rates import RateUnavailable, get_rate_provider
from wallets.serializers import (
    AddressResponseSerializer,
    AssetSerializer,
    BalanceResponseSerializer,
    ChipiPaymentSerializer,
    DepositResponseSerializer,
    DepositSerializer,
    EntrySerializer,
    SupportedTokensResponseSerializer,
    SwapResponseSerializer,
    SwapSerializer,
    TransactionsQuerySerializer,
    TransferResponseSerializer,
    TransferSerializer,
    WebhookResponseSerializer,
    WithdrawalSerializer,
    WithdrawResponseSerializer,
    WithdrawSerializer,
)

logger = logging.getLogger("paygo.wallets")


def _entry_of(user, transaction_id: int, asset: Asset) -> dict:
    entry = Entry.objects.select_related("transaction", "asset", "session__service").get(
        transaction_id=transaction_id, account__owner=user, account__kind=AccountKind.USER, asset=asset
    )
    return EntrySerializer(entry).data


def _available(user, asset: Asset) -> str:
    account = Account.objects.filter(kind=AccountKind.USER, owner=user, asset=asset).first()
    return format_minor(account.available if account else 0, asset.decimals)


# The refusals of wallets' services a client acts on, as the schema tells them.
INSUFFICIENT_FUNDS = ErrorCode(
    400,
    "insufficient_funds",
    "the wallet's free balance is less than the amount (`errors.amount` says how much is free); nothing moved.",
)
BELOW_MINIMUM = ErrorCode(
    400,
    "below_minimum",
    "the amount is below the token's minimum withdrawal (`minimum`, in `token`; every token's is in "
    "GET /api/v1/wallet/supported-tokens); nothing was withdrawn.",
    fields={"minimum": AmountField(), "token": serializers.CharField()},
)
SELF_TRANSFER = ErrorCode(400, "self_transfer", "the recipient is the sender.")
SLIPPAGE = ErrorCode(400, "slippage", "the swap would give less than `minReceived`; nothing was swapped.")
INSUFFICIENT_LIQUIDITY = ErrorCode(
    409, "insufficient_liquidity", "PayGo cannot sell that much of the token asked for right now; nothing was swapped."
)
ALREADY_CREDITED = ErrorCode(409, "already_credited", "the transaction was credited already, to another wallet.")


class DepositView(APIView):
    rate_budget = MONEY  # paygo.api.ratelimits: a money write

    @extend_schema(
        request=DepositSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        summary="Credit an on-chain deposit",
        # 503: Chipi could not verify it
        responses={
            201: DepositResponseSerializer,
            200: DepositResponseSerializer,
            **error_responses(503),
            **error_codes(ALREADY_CREDITED),
        },
    )
    @replays_first
    def post(self, request):
        data = DepositSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        asset, amount = values["asset"], values["amount_minor"]

        def verify():
            return services.deposit_verify(user=request.user, asset=asset, amount=amount, tx_hash=values.get("tx_hash"))

        def credit(deposits) -> Response:
            result = services.deposit_credit_reported(user=request.user, asset=asset, deposits=deposits, source="api")
            return Response(
                {
                    "message": "Deposit credited." if result.created else "This deposit was already credited.",
                    "balance": _available(request.user, asset),
                    "token": asset.code,
                    "tx_hash": deposits[0].transfer.tx_hash,
                    "transaction": _entry_of(request.user, result.transaction.pk, asset),
                },
                status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
            )

        return idempotent(request, credit, prepare=verify)


class WithdrawView(APIView):
    rate_budget = MONEY  # paygo.api.ratelimits: a money write

    @extend_schema(
        request=WithdrawSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        summary="Withdraw on chain",
        # 503: nothing can be signed from the treasury (its key does not open); nothing was withdrawn.
        responses={
            202: WithdrawResponseSerializer,
            **error_responses(503),
            **error_codes(INSUFFICIENT_FUNDS, BELOW_MINIMUM),
        },
    )
    @replays_first
    def post(self, request):
        data = WithdrawSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data

        def execute(_) -> Response:
            try:
                withdrawal = services.withdrawal_request(
                    user=request.user,
                    asset=values["asset"],
                    amount=values["amount_minor"],
                    to_address=values["to_address"],
                )
            except services.TreasuryKeyUnusable as exc:
                logger.error("Withdrawal refused: %s", exc)  # the operator's to mend (check --deploy says so too)
                raise Unavailable(
                    "Withdrawals are unavailable for now: PayGo cannot sign from its treasury wallet. "
                    "Nothing was withdrawn; try again later.",
                    code="treasury_key_unavailable",
                ) from None
            return Response(
                {
                    "message": "Withdrawal accepted; it is being sent.",
                    "withdrawal": WithdrawalSerializer(withdrawal).data,
                    "remaining_balance": _available(request.user, values["asset"]),
                },
                status=status.HTTP_202_ACCEPTED,
            )

        return idempotent(request, execute)


class WithdrawalListView(generics.ListAPIView):
    serializer_class = WithdrawalSerializer
    results_key = "withdrawals"

    def get_queryset(self):
        # id breaks ties: rows of one instant otherwise come in any order, which may differ between
        # the queries of two pages (a row on both, another on neither).
        return Withdrawal.objects.filter(user=self.request.user).select_related("asset").order_by("-created_at", "-id")


class WithdrawalDetailView(generics.RetrieveAPIView):
    serializer_class = WithdrawalSerializer

    def get_queryset(self):
        return Withdrawal.objects.filter(user=self.request.user).select_related("asset")

    @extend_schema(
        summary="One of the caller's withdrawals",
        responses={200: inline_serializer("WithdrawalBody", {"withdrawal": WithdrawalSerializer()})},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        return Response({"withdrawal": self.get_serializer(self.get_object()).data})


class BalanceView(APIView):
    @extend_schema(summary="Balances in every token", responses=BalanceResponseSerializer)
    def get(self, request):
        balances = selectors.balances_for(request.user)
        rows = [
            {
                "token": b.asset.code,
                "active": b.asset.is_active,
                "balance": format_minor(b.balance, b.asset.decimals),
                "available": format_minor(b.available, b.asset.decimals),
                "held": format_minor(b.held, b.asset.decimals),
            }
            for b in balances
        ]
        default = next(row for row, b in zip(rows, balances, strict=True) if b.asset.is_default)
        return Response({**default, "balances": rows})


class TransferView(APIView):
    rate_budget = MONEY  # paygo.api.ratelimits: a money write

    @extend_schema(
        request=TransferSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        summary="Pay another PayGo user",
        responses={201: TransferResponseSerializer, **error_codes(INSUFFICIENT_FUNDS, SELF_TRANSFER)},
    )
    @replays_first
    def post(self, request):
        data = TransferSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        named_by = values["recipient_named_by"]
        recipient = selectors.transfer_recipient(**{named_by: values[named_by]})
        asset = values["asset"]

        def execute(_) -> Response:
            try:
                tx = services.wallet_transfer(
                    sender=request.user,
                    recipient=recipient,
                    asset=asset,
                    amount=values["amount_minor"],
                    memo=values.get("memo", ""),
                    named_by=named_by,
                )
            except services.UnknownRecipient:
                # Each such answer tells whether an email, id or address is a user's: past this
                # budget, a 429 instead (transfers to known recipients go on).
                limit = ("unknown-recipient-user", by_user, settings.RATELIMIT_UNKNOWN_RECIPIENT_PER_USER)
                enforce(request, limits=[limit])
                raise
            return Response(
                {
                    "message": f"Sent {format_minor(values['amount_minor'], asset.decimals)} {asset.code} "
                    f"to {recipient.name}.",
                    "remaining_balance": _available(request.user, asset),
                    "token": asset.code,
                    "transaction": _entry_of(request.user, tx.pk, asset),
                },
                status=status.HTTP_201_CREATED,
            )

        return idempotent(request, execute)


class TransactionsView(generics.ListAPIView):
    serializer_class = EntrySerializer
    results_key = "transactions"

    @extend_schema(
        parameters=[
            OpenApiParameter("type", str),
            OpenApiParameter("token", str),
            OpenApiParameter("from", str, description="ISO 8601 date or time (inclusive)"),
            OpenApiParameter("to", str, description="ISO 8601 date or time (exclusive)"),
        ],
        summary="The caller's ledger history",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = TransactionsQuerySerializer(data=query_filters(self.request))
        query.is_valid(raise_exception=True)
        values = query.validated_data
        return selectors.entries_for(
            self.request.user,
            kind=values.get("type"),
            token=values["token"].code if values.get("token") else None,
            since=values.get("from"),
            until=values.get("to"),
        )


class AddressView(APIView):
    @extend_schema(
        summary="The caller's deposit address",
        responses={200: AddressResponseSerializer, **error_responses(503)},  # 503: Chipi could not open it
    )
    def get(self, request):
        from wallets.chipi import ChipiError

        try:
            address = services.wallet_open(user=request.user)
        except ChipiError as exc:
            raise UpstreamUnavailable(
                f"Chipi could not open your deposit wallet right now ({exc.code}); try again shortly."
            ) from None
        return Response({"address": address})


class SupportedTokensView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(summary="Tokens PayGo wallets hold", responses=SupportedTokensResponseSerializer)
    def get(self, request):
        assets = Asset.objects.filter(is_active=True).order_by("-is_default", "id")
        return Response({"tokens": AssetSerializer(assets, many=True).data})


def _no_rate(exc: RateUnavailable) -> UpstreamUnavailable:
    return UpstreamUnavailable(f"No rate available right now ({exc}); nothing was swapped.")


class SwapView(APIView):
    rate_budget = MONEY  # paygo.api.ratelimits: a money write

    @extend_schema(
        request=SwapSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        summary="Swap one token for another",
        # 503: no rate from the price API.
        responses={
            201: SwapResponseSerializer,
            **error_responses(503),
            **error_codes(INSUFFICIENT_FUNDS, SLIPPAGE, INSUFFICIENT_LIQUIDITY),
        },
    )
    @replays_first
    def post(self, request):
        data = SwapSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        source, target = values["from_token"], values["to_token"]

        def rate():
            if source.pk == target.pk:
                return None
            try:
                return get_rate_provider().rate(source.code, target.code)
            except RateUnavailable as exc:
                raise _no_rate(exc) from None

        def execute(quoted_rate) -> Response:
            try:
                tx = services.wallet_swap(
                    user=request.user,
                    from_asset=source,
                    to_asset=target,
                    amount=values["amount_minor"],
                    min_received=values["min_received_minor"],
                    rate=quoted_rate,
                )
            except RateUnavailable as exc:  # a rate the swap found untrustworthy (its proceeds)
                raise _no_rate(exc) from None
            received = _entry_of(request.user, tx.pk, target)
            return Response(
                {
                    "message": f"Swapped {source.code} for {target.code}.",
                    "rate": str(quoted_rate),
                    "received": received["amount"],
                    "from_token": source.code,
                    "to_token": target.code,
                    "transaction": _entry_of(request.user, tx.pk, source),
                },
                status=status.HTTP_201_CREATED,
            )

        return idempotent(request, execute, prepare=rate)


class ChipiWebhookView(APIView):
    """Chipi's signed event callback. A bad signature is 401 and changes nothing."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []

    @extend_schema(
        request={
            "application/json": {
                "type": "object",
                "description": "A Chipi event ({event, txHash, amount, token, sender, recipient, timestamp, status}), "
                "signed with chipi-signature (HMAC-SHA256 keyed with CHIPI_WEBHOOK_SECRET).",
            }
        },
        summary="Chipi Pay webhook (signed with chipi-signature)",
        responses={200: WebhookResponseSerializer, **error_responses(401, 503)},  # 401: a bad signature
    )
    def post(self, request):
        from wallets.chipi import verify_webhook_signature

        raw = request.body
        if not verify_webhook_signature(raw, request.headers.get("chipi-signature")):
            raise exceptions.AuthenticationFailed("Invalid webhook signature.", code="bad_signature")
        try:
            event = json_loads(raw)
            kind = event["event"]
        except JSONRefused as exc:
            raise exc.parse_error() from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise exceptions.ParseError("The webhook body is not a Chipi event.") from None
        if kind != "payment.completed" or event.get("status", "COMPLETED") != "COMPLETED":
            return Response({"received": True, "handled": False})
        # This view reads its body itself (to check the signature over the raw bytes), so it
        # turns the camelCase keys to snake_case as the API's parser does for every other view.
        payload = {name: value for name, value in event.items() if name != "event"}
        data = ChipiPaymentSerializer(data=underscoreize(payload, **camel_case_settings.JSON_UNDERSCOREIZE))
        data.is_valid(raise_exception=True)
        values = data.validated_data
        result = services.webhook_deposit(
            to_address=values["recipient"], token=values["token"], amount=values["amount"], tx_hash=values["tx_hash"]
        )
        return Response({"received": True, "handled": result is not None, "credited": bool(result and result.created)})
