"""What POST /wallet/transfer tells a sender about whom it names (review r13): whether an email, id or
wallet address is an active user's was free to learn, at the money budget (60 a minute), from any
account. A sender who cannot pay is refused for the amount, whoever the recipient; a refusal for
naming no active user spends a small budget of its own."""

from __future__ import annotations

import uuid

import pytest

from accounts.models import User
from paygo.tests.test_rate_limits import policies
from wallets.models import Account, LedgerTransaction
from wallets.tests.conftest import balance_of

pytestmark = pytest.mark.django_db

USDC = 1_000_000
TRANSFER = "/api/v1/wallet/transfer"
ALICES = "0x" + "0" * 58 + "00a11c"
NOBODYS = "0x0" + "1" * 63


@pytest.fixture
def counted(settings, still_clock):
    """This test's own counters, two refusals an hour, and a clock that stands still."""
    settings.RATELIMIT_CACHE_PREFIX = f"rl-test-{uuid.uuid4().hex}:"
    settings.RATELIMIT_UNKNOWN_RECIPIENT_PER_USER = "2/h"
    return still_clock


@pytest.mark.parametrize(
    ("field", "known", "unknown"),
    [
        ("recipientEmail", "ALICE@example.com", "nobody@example.com"),
        ("recipientId", "alice", 999_999),
        ("recipientAddress", ALICES, NOBODYS),
    ],
)
@pytest.mark.parametrize(("funds", "available"), [(0, "0.000000"), (USDC // 2, "0.500000")])
def test_a_sender_who_cannot_pay_learns_nothing_of_the_recipient(
    api, fund, counted, alice, bob, field, known, unknown, funds, available
):
    User.objects.filter(pk=alice.pk).update(wallet_address=ALICES)
    if funds:
        fund(bob, funds)
    accounts = Account.objects.count()
    transactions = LedgerTransaction.objects.count()

    def pay(recipient):
        recipient = alice.pk if recipient == "alice" else recipient
        return api(bob).post(TRANSFER, {"amount": 1, field: recipient}, format="json")

    to_known, to_unknown = pay(known), pay(unknown)

    assert to_known.status_code == to_unknown.status_code == 400
    assert to_known.json() == to_unknown.json()  # was: 400 on amount for a user, on the recipient for none
    assert to_known.json()["errors"] == {"amount": [f"Insufficient funds: {available} USDC available."]}
    assert "unknown-recipient-user" not in to_unknown.get("RateLimit-Policy", "")  # nothing learned, nothing counted
    assert (balance_of(bob), balance_of(alice)) == (funds, 0)
    assert (Account.objects.count(), LedgerTransaction.objects.count()) == (accounts, transactions)


def test_transfers_to_unknown_recipients_spend_a_budget_of_their_own(api, fund, counted, alice, bob, wanda):
    fund(alice, 10 * USDC)
    User.objects.filter(pk=wanda.pk).update(is_active=False)  # no active user: unknown as well
    client = api(alice)

    def pay(**recipient):
        return client.post(TRANSFER, {"amount": 1, **recipient}, format="json")

    assert pay(recipientId=bob.pk).status_code == 201  # a transfer that is made is not counted
    first, second = pay(recipientEmail="nobody@example.com"), pay(recipientId=wanda.pk)
    third = pay(recipientAddress=NOBODYS)

    assert (first.status_code, second.status_code, third.status_code) == (400, 400, 429)
    assert first.json()["errors"] == {"recipientEmail": ["No active user with this id or email."]}
    assert second.json()["errors"] == {"recipientId": ["No active user with this id or email."]}
    assert {name: (p["q"], p["w"], p["r"]) for name, p in policies(second).items() if name.startswith("unknown")} == {
        "unknown-recipient-user": (2, 3600, 0)
    }
    reset = policies(third)["unknown-recipient-user"]["t"]
    assert third["Retry-After"] == str(reset)
    assert third.json() == {
        "message": "Too many transfers to unknown recipients from this account: at most 2 every 3600 seconds. "
        f"Try again in {reset} seconds.",
        "statusCode": 429,
        "code": "rate_limited",
    }
    # Known recipients are still paid, and the budget is alice's alone.
    assert pay(recipientEmail="BOB@example.com").status_code == 201
    assert (balance_of(alice), balance_of(bob)) == (8 * USDC, 2 * USDC)
    assert api(bob).post(TRANSFER, {"amount": 1, "recipientId": 999_999}, format="json").status_code == 400

    counted.shift(3601)  # the next window
    assert pay(recipientEmail="nobody@example.com").status_code == 400
    assert (balance_of(alice), balance_of(bob)) == (8 * USDC, 2 * USDC)
