"""The wallet API: balances, transfers, history, tokens, idempotency and refusals (analytics: dashboards)."""

from __future__ import annotations

import pytest

from accounts.models import User
from wallets.models import Account, IdempotencyKey, LedgerTransaction, Withdrawal
from wallets.tests.conftest import balance_of

pytestmark = pytest.mark.django_db

USDC = 1_000_000


def test_balance_of_a_new_user_is_zero_in_every_token(api, alice):
    response = api(alice).get("/api/v1/wallet/balance")

    assert response.status_code == 200
    body = response.json()
    assert (body["balance"], body["available"], body["held"], body["token"]) == (
        "0.000000",
        "0.000000",
        "0.000000",
        "USDC",
    )
    assert [row["token"] for row in body["balances"]] == ["USDC", "USDT", "ETH", "STRK"]
    assert body["balances"][2] == {
        "token": "ETH",
        "active": True,
        "balance": "0.000000000000000000",
        "available": "0.000000000000000000",
        "held": "0.000000000000000000",
    }


def test_balance_shows_funds(api, alice, fund):
    fund(alice, 12_500_000)
    fund(alice, 10**18, "ETH")

    body = api(alice).get("/api/v1/wallet/balance").json()

    assert body["balance"] == "12.500000"
    assert body["balances"][2]["balance"] == "1.000000000000000000"


def test_balance_needs_a_token(anon):
    assert anon.get("/api/v1/wallet/balance").status_code == 401


def test_transfer_by_id(api, alice, bob, fund):
    fund(alice, 10 * USDC)

    response = api(alice).post("/api/v1/wallet/transfer", {"amount": "2.5", "recipientId": bob.pk}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["remainingBalance"] == "7.500000"
    assert body["transaction"]["amount"] == "-2.500000"
    assert body["transaction"]["type"] == "transfer"
    assert balance_of(alice) == 7_500_000
    assert balance_of(bob) == 2_500_000


def test_transfer_by_email_any_case(api, alice, bob, fund):
    fund(alice, 10 * USDC)

    response = api(alice).post(
        "/api/v1/wallet/transfer", {"amount": 1, "recipientEmail": "BOB@example.com"}, format="json"
    )

    assert response.status_code == 201
    assert balance_of(bob) == USDC


@pytest.mark.parametrize("spelling", ["bob@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "BOB@ex\u200bample.com"])
def test_transfer_by_email_pays_the_mailboxs_one_account_whatever_its_spelling(api, alice, bob, fund, spelling):
    """Mail to either spelling reaches bob@example.com: the transfer pays its one account."""
    fund(alice, 10 * USDC)

    response = api(alice).post("/api/v1/wallet/transfer", {"amount": 1, "recipientEmail": spelling}, format="json")

    assert response.status_code == 201, response.json()  # was a 400: nobody had that spelling
    assert balance_of(bob) == USDC


def test_a_senders_name_stored_before_the_name_rule_reaches_the_recipient_as_it_shows(
    api, alice, bob, fund, mailoutbox
):
    """Sign-up refuses a name that hides characters now (accounts' tests); one stored before that
    reaches the recipient without them: "\u202etroppuS oGyaP\u202c" read "PayGo Support" in the
    transfer's notification and its email."""
    User.objects.filter(pk=bob.pk).update(name="\u202etroppuS oGyaP\u202c")
    bob.refresh_from_db()
    fund(bob, 1 * USDC)

    response = api(bob).post(
        "/api/v1/wallet/transfer", {"amount": 1, "recipientEmail": "alice@example.com"}, format="json"
    )

    assert response.status_code == 201, response.json()
    note = alice.notifications.get(type="payment")
    assert note.message.startswith("troppuS oGyaP sent you 1.000000 USDC")
    assert [email.to for email in mailoutbox] == [["alice@example.com"]]
    assert not {"\u202e", "\u202c"} & set(mailoutbox[0].body + mailoutbox[0].subject)


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("-1", "Must not be negative."),
        ("0", "Must be greater than zero."),
        ("NaN", "Must be a finite number."),
        ("Infinity", "Must be a finite number."),
        ("ten", "Must be a number or a decimal string."),
        ("0.0000001", "Must have at most 6 decimal places."),
        ("1e40", "Must be less than 1,000,000,000,000."),
        (None, "This field may not be null."),
        ([1], "Must be a number or a decimal string."),
    ],
)
def test_transfer_bad_amounts_are_400_and_move_nothing(api, alice, bob, fund, amount, message):
    fund(alice, 10 * USDC)
    before = LedgerTransaction.objects.count()

    response = api(alice).post("/api/v1/wallet/transfer", {"amount": amount, "recipientId": bob.pk}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["amount"] == [message]
    assert LedgerTransaction.objects.count() == before
    assert balance_of(alice) == 10 * USDC


def test_transfer_unknown_token(api, alice, bob, fund):
    fund(alice, USDC)

    response = api(alice).post(
        "/api/v1/wallet/transfer", {"amount": 1, "token": "DOGE", "recipientId": bob.pk}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"]["token"] == ["Unknown token 'DOGE'; supported: USDC, USDT, ETH, STRK."]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/wallet/transfer", {"amount": "0.1", "token": "eth", "recipientId": "bob"}, "token"),
        ("/api/v1/wallet/swap", {"amount": "0.1", "fromToken": "ETH", "toToken": "USDC"}, "fromToken"),
        ("/api/v1/wallet/swap", {"amount": "1", "fromToken": "USDC", "toToken": "ETH"}, "toToken"),
    ],
    ids=["transfer", "swap-from", "swap-to"],
)
def test_a_token_staff_deactivated_is_no_longer_offered_not_unknown(api, alice, bob, fund, path, body, field):
    """Its holder, whose balance lists it (inactive), was told "Unknown token 'ETH'; supported: ..."."""
    from wallets.models import Asset
    from wallets.serializers import TransferSerializer

    fund(alice, 10 * USDC)
    fund(alice, 10**18, "ETH")
    Asset.objects.filter(code="ETH").update(is_active=False)
    body = {**body, "recipientId": bob.pk} if "recipientId" in body else body

    response = api(alice).post(path, body, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {
        field: [
            "PayGo no longer offers ETH for this; what you hold of it can still be withdrawn "
            "(POST /api/v1/wallet/withdraw)."
        ]
    }
    assert (balance_of(alice), balance_of(alice, "ETH"), balance_of(bob, "ETH")) == (10 * USDC, 10**18, 0)
    refused = TransferSerializer(data={"amount": "1", "token": "ETH", "recipient_id": bob.pk})
    assert not refused.is_valid()
    assert refused.errors["token"][0].code == "inactive_token"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/wallet/transfer", {"amount": 1, "token": "USDC\u0000", "recipientId": "bob"}, "token"),
        ("/api/v1/wallet/swap", {"amount": 1, "fromToken": "\u0000", "toToken": "USDT"}, "fromToken"),
        ("/api/v1/wallet/swap", {"amount": 1, "fromToken": "USDC", "toToken": "US\u0000DT"}, "toToken"),
        ("/api/v1/wallet/withdraw", {"amount": 1, "token": "\u0000", "toAddress": "0x" + "a" * 64}, "token"),
        ("/api/v1/wallet/deposit", {"amount": 1, "token": "\u0000"}, "token"),
    ],
)
def test_a_token_holding_nul_is_400_and_moves_nothing(api, alice, bob, fund, sandbox, path, body, field):
    fund(alice, 10 * USDC)
    if body.get("recipientId") == "bob":
        body = {**body, "recipientId": bob.pk}
    before = LedgerTransaction.objects.count()

    response = api(alice).post(path, body, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][field] == ["Must not contain the NUL character."]
    assert LedgerTransaction.objects.count() == before
    assert Withdrawal.objects.count() == 0
    assert (balance_of(alice), balance_of(alice, "USDT"), balance_of(bob)) == (10 * USDC, 0, 0)
    assert sandbox.custody_balance("USDC") == 0


def test_a_token_holding_a_lone_surrogate_is_400_and_moves_nothing(api, alice, bob, fund):
    fund(alice, 10 * USDC)
    raw = f'{{"amount": 1, "token": "USDC\\ud800", "recipientId": {bob.pk}}}'

    response = api(alice).post("/api/v1/wallet/transfer", data=raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "lone_surrogate"  # the body's (paygo/tests/test_lone_surrogates.py)
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 0)


@pytest.mark.parametrize(
    "recipient",
    [
        {"recipientId": "bob", "recipientEmail": "wanda@example.com"},  # two people: the id was paid
        {"recipientId": "bob", "recipientEmail": "bob@example.com"},  # the same person, two ways
    ],
)
def test_a_transfer_naming_the_recipient_two_ways_is_refused(api, alice, bob, wanda, fund, recipient):
    fund(alice, 10 * USDC)
    body = {"amount": 1, **recipient, "recipientId": bob.pk}

    response = api(alice).post("/api/v1/wallet/transfer", body, format="json")

    assert response.status_code == 400
    message = "Name the recipient one way only: recipientId, recipientEmail or recipientAddress."
    assert response.json()["errors"] == {"recipientId": [message], "recipientEmail": [message]}
    assert balance_of(alice) == 10 * USDC
    assert balance_of(bob) == balance_of(wanda) == 0


def test_a_transfer_naming_no_recipient_is_refused(api, alice, fund):
    fund(alice, 10 * USDC)

    response = api(alice).post("/api/v1/wallet/transfer", {"amount": 1}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["recipientId"] == [
        "Name the recipient: recipientId, recipientEmail or recipientAddress."
    ]
    assert balance_of(alice) == 10 * USDC


@pytest.mark.parametrize(
    "memo",
    ["Refund from \u202eTROPPUS oGyaP\u202c", "Pay\u200bGo", "ding\x07", "\u2066isolated\u2069", "\x1b[31mred"],
    ids=["direction-override", "zero-width", "bell", "direction-isolate", "escape"],
)
def test_a_memo_with_invisible_or_control_characters_is_400_and_moves_nothing(api, alice, bob, fund, memo):
    """The recipient was shown it as written: a direction override or a zero-width space makes a
    memo read as other words ("Refund from PayGo Support")."""
    fund(alice, 10 * USDC)

    response = api(alice).post(
        "/api/v1/wallet/transfer", {"amount": 1, "recipientId": bob.pk, "memo": memo}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "memo": ["Use visible characters only (no control, zero-width or text-direction characters)."]
    }
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 0)


def test_a_memo_keeps_its_lines_punctuation_and_emoji_in_one_form(api, alice, bob, fund):
    fund(alice, 10 * USDC)
    memo = (
        "  Rent, March\r\n\tflat 2 \u2014 thanks!  \U0001f468\u200d\U0001f469\n\nCaf\u0065\u0301 \uff26\uff4f\uff4f  "
    )

    response = api(alice).post(
        "/api/v1/wallet/transfer", {"amount": 1, "recipientId": bob.pk, "memo": memo}, format="json"
    )

    assert response.status_code == 201, response.json()
    seen = api(bob).get("/api/v1/wallet/transactions").json()["transactions"][0]["memo"]
    assert seen == "Rent, March\nflat 2 \u2014 thanks! \U0001f468\u200d\U0001f469\n\nCaf\u00e9 Foo"


def test_transfer_to_yourself_refused(api, alice, fund):
    fund(alice, USDC)

    response = api(alice).post("/api/v1/wallet/transfer", {"amount": 1, "recipientId": alice.pk}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["recipientId"] == ["You cannot transfer to yourself."]
    assert balance_of(alice) == USDC


def test_transfer_to_unknown_or_inactive_user_refused(api, alice, bob, fund):
    fund(alice, USDC)
    bob.is_active = False
    bob.save(update_fields=["is_active"])

    unknown = api(alice).post("/api/v1/wallet/transfer", {"amount": 1, "recipientId": 999_999}, format="json")
    huge = api(alice).post("/api/v1/wallet/transfer", {"amount": 1, "recipientId": 10**20}, format="json")
    assert huge.status_code == 400
    inactive = api(alice).post("/api/v1/wallet/transfer", {"amount": 1, "recipientId": bob.pk}, format="json")
    no_one = api(alice).post("/api/v1/wallet/transfer", {"amount": 1}, format="json")

    assert unknown.status_code == inactive.status_code == no_one.status_code == 400
    assert unknown.json()["errors"]["recipientId"] == ["No active user with this id or email."]
    assert balance_of(alice) == USDC


def test_transfer_more_than_available_says_how_much(api, alice, bob, fund):
    fund(alice, 3 * USDC)

    response = api(alice).post("/api/v1/wallet/transfer", {"amount": "3.000001", "recipientId": bob.pk}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["amount"] == ["Insufficient funds: 3.000000 USDC available."]
    assert balance_of(alice) == 3 * USDC
    assert balance_of(bob) == 0


def test_transactions_history_with_filters(api, alice, bob, fund):
    fund(alice, 10 * USDC)
    fund(alice, 5 * USDC, "USDT")
    api(alice).post("/api/v1/wallet/transfer", {"amount": 1, "recipientId": bob.pk}, format="json")

    everything = api(alice).get("/api/v1/wallet/transactions").json()
    transfers = api(alice).get("/api/v1/wallet/transactions?type=transfer").json()
    tether = api(alice).get("/api/v1/wallet/transactions?token=usdt").json()
    future = api(alice).get("/api/v1/wallet/transactions?from=2999-01-01").json()

    assert everything["count"] == 3
    assert [row["type"] for row in everything["transactions"]] == ["transfer", "deposit", "deposit"]
    assert transfers["count"] == 1 and transfers["transactions"][0]["direction"] == "debit"
    assert tether["count"] == 1 and tether["transactions"][0]["amount"] == "5.000000"
    assert future["count"] == 0


def test_transactions_show_only_mine(api, alice, bob, fund):
    fund(alice, 10 * USDC)

    assert api(bob).get("/api/v1/wallet/transactions").json()["count"] == 0


@pytest.mark.parametrize("query", ["type=bribe", "token=DOGE", "from=yesterday"])
def test_transactions_bad_filters_are_400(api, alice, query):
    response = api(alice).get(f"/api/v1/wallet/transactions?{query}")

    assert response.status_code == 400
    assert response.json()["statusCode"] == 400


def test_transactions_from_after_to_is_400_as_on_the_dashboards(api, alice, fund):
    """A range that ends before it starts is a mistake, not an empty history: the rule the dashboards
    apply to their windows, with their words."""
    fund(alice, 10 * USDC)

    reversed_range = api(alice).get("/api/v1/wallet/transactions?from=2030-01-01&to=2020-01-01")
    reversed_instants = api(alice).get(
        "/api/v1/wallet/transactions", {"from": "2030-01-01T10:00:01Z", "to": "2030-01-01T10:00:00Z"}
    )
    dashboard = api(alice).get("/api/v1/dashboard/user/overview?from=2030-01-01&to=2020-01-01")

    assert reversed_range.status_code == reversed_instants.status_code == 400
    assert reversed_range.json()["errors"] == {"from": ["'from' must not be after 'to'."]}
    assert reversed_range.json()["errors"] == dashboard.json()["errors"]
    assert reversed_instants.json()["errors"] == {"from": ["'from' must not be after 'to'."]}


def test_transactions_from_equal_to_is_an_empty_range_not_an_error(api, alice, fund):
    fund(alice, 10 * USDC)

    response = api(alice).get("/api/v1/wallet/transactions?from=2030-01-01&to=2030-01-01")

    assert response.status_code == 200
    assert response.json()["count"] == 0  # `to` is exclusive


def test_transactions_token_filter_holding_nul_is_400(api, alice):
    response = api(alice).get("/api/v1/wallet/transactions?token=%00")

    assert response.status_code == 400
    assert response.json()["errors"] == {"token": ["Must not contain the NUL character."]}


def test_transactions_query_count_is_constant(api, alice, bob, fund, django_assert_num_queries):
    client = api(alice)
    fund(alice, 100 * USDC)
    for _ in range(3):
        client.post("/api/v1/wallet/transfer", {"amount": 1, "recipientId": bob.pk}, format="json")
    with django_assert_num_queries(3):  # the user, the count, the page
        client.get("/api/v1/wallet/transactions")
    for _ in range(20):
        client.post("/api/v1/wallet/transfer", {"amount": 1, "recipientId": bob.pk}, format="json")
    with django_assert_num_queries(3):
        assert client.get("/api/v1/wallet/transactions").json()["count"] == 24


def test_supported_tokens_is_public(anon):
    body = anon.get("/api/v1/wallet/supported-tokens").json()

    assert body["tokens"][0] == {
        "token": "USDC",
        "name": "USD Coin",
        "decimals": 6,
        "isDefault": True,
        "minimumWithdrawal": "1.000000",
    }
    assert [t["token"] for t in body["tokens"]] == ["USDC", "USDT", "ETH", "STRK"]


# --- Idempotency ----------------------------------------------------------------------------------


def test_same_key_same_body_replays_and_moves_once(api, alice, bob, fund):
    fund(alice, 10 * USDC)
    client = api(alice)
    body = {"amount": "1.5", "recipientId": bob.pk}

    first = client.post("/api/v1/wallet/transfer", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = client.post("/api/v1/wallet/transfer", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert balance_of(bob) == 1_500_000
    assert balance_of(alice) == 8_500_000


def test_a_retry_of_a_transfer_that_went_through_replays_it_though_its_token_was_deactivated(api, alice, bob, fund):
    """Validated before its key was looked up, the retry of a transfer that had moved the money was
    a 400 once its token was deactivated: the client was told it failed."""
    from wallets.models import Asset

    fund(alice, 2 * 10**18, "ETH")
    client = api(alice)
    body = {"amount": "0.5", "token": "ETH", "recipientId": bob.pk}
    first = client.post("/api/v1/wallet/transfer", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201
    Asset.objects.filter(code="ETH").update(is_active=False)

    second = client.post("/api/v1/wallet/transfer", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (second.status_code, second.json()) == (201, first.json())
    assert second["Idempotent-Replayed"] == "true"
    assert balance_of(bob, "ETH") == 10**18 // 2


def test_same_key_other_body_is_409(api, alice, bob, fund):
    fund(alice, 10 * USDC)
    client = api(alice)
    client.post(
        "/api/v1/wallet/transfer", {"amount": 1, "recipientId": bob.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    response = client.post(
        "/api/v1/wallet/transfer", {"amount": 2, "recipientId": bob.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert balance_of(bob) == USDC


def test_keys_belong_to_their_user(api, alice, bob, fund):
    fund(alice, 10 * USDC)
    fund(bob, 10 * USDC)

    api(alice).post(
        "/api/v1/wallet/transfer", {"amount": 1, "recipientId": bob.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    response = api(bob).post(
        "/api/v1/wallet/transfer", {"amount": 1, "recipientId": alice.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert response.status_code == 201
    assert balance_of(alice) == balance_of(bob) == 10 * USDC


def test_a_refused_request_does_not_burn_its_key(api, alice, bob, fund):
    client = api(alice)
    body = {"amount": 1, "recipientId": bob.pk}

    refused = client.post("/api/v1/wallet/transfer", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    fund(alice, 10 * USDC)
    retried = client.post("/api/v1/wallet/transfer", body, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert refused.status_code == 400
    assert retried.status_code == 201
    assert balance_of(bob) == USDC
    assert IdempotencyKey.objects.filter(user=alice, key="k").count() == 1


# A header sent twice reaches Django as its values joined by a comma (by every server: WSGI's and
# ASGI's), which was one key "a,b", neither the client's first nor its second: a retry sending one of
# them was no retry.
@pytest.mark.parametrize("key", ["has space", "a,b", "x" * 256, ""], ids=["space", "sent twice", "too long", "empty"])
def test_malformed_key_is_400(api, alice, bob, fund, key):
    fund(alice, USDC)

    response = api(alice).post(
        "/api/v1/wallet/transfer", {"amount": 1, "recipientId": bob.pk}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "idempotencyKey": [
            "Idempotency-Key must be one value of 1 to 255 printable characters, without spaces or commas."
        ]
    }
    assert balance_of(alice) == USDC
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/wallet/transfer", {"amount": "1", "token": "STRK", "recipientId": "BOB"}),
        ("/api/v1/wallet/swap", {"fromToken": "STRK", "toToken": "USDC", "amount": "1"}),
    ],
)
def test_a_refusal_for_want_of_funds_opens_no_account(api, alice, bob, avnu, path, body):
    """Nobody held STRK: the accounts a posting would have used are not left behind by its refusal."""
    before = Account.objects.count()

    response = api(alice).post(path, {**body, "recipientId": bob.pk} if "recipientId" in body else body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["errors"]["amount"] == ["Insufficient funds: 0.000000000000000000 STRK available."]
    assert Account.objects.count() == before


def test_insufficient_funds_has_one_code_whatever_the_operation(api, alice, bob, fund):
    """A frontend branches on `code`: a transfer, a withdrawal or a swap beyond the wallet says
    `insufficient_funds` at the top, as a session's start does (its 402), beside the field it blames."""
    fund(alice, 3 * USDC)
    address = "0x00" + "ab" * 31

    refusals = [
        api(alice).post("/api/v1/wallet/transfer", {"amount": "3.000001", "recipientId": bob.pk}, format="json"),
        api(alice).post("/api/v1/wallet/withdraw", {"amount": "3.5", "toAddress": address}, format="json"),
        api(alice).post("/api/v1/wallet/swap", {"amount": "4", "fromToken": "USDC", "toToken": "USDT"}, format="json"),
    ]

    for response in refusals:
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "insufficient_funds", body
        assert body["errors"] == {"amount": ["Insufficient funds: 3.000000 USDC available."]}
        assert body["message"] == "amount: Insufficient funds: 3.000000 USDC available."
    assert balance_of(alice) == 3 * USDC
    assert balance_of(bob) == 0
    assert not Withdrawal.objects.exists()


def test_a_refused_field_names_its_reason_in_code(api, alice, fund):
    fund(alice, 3 * USDC)

    to_self = api(alice).post("/api/v1/wallet/transfer", {"amount": "1", "recipientId": alice.pk}, format="json")
    malformed = api(alice).post("/api/v1/wallet/transfer", {"amount": "abc", "recipientId": alice.pk}, format="json")

    assert (to_self.status_code, to_self.json()["code"]) == (400, "self_transfer")
    assert to_self.json()["errors"] == {"recipientId": ["You cannot transfer to yourself."]}
    # An ill-formed value is no refusal of a rule: its code stays the general one.
    assert (malformed.status_code, malformed.json()["code"]) == (400, "invalid")
    assert balance_of(alice) == 3 * USDC
