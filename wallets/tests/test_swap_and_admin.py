"""Swaps through the liquidity accounts, the deposit address, and staff adjustments in the admin."""

from __future__ import annotations

import math
import uuid
from decimal import Decimal
from fractions import Fraction

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.exceptions import ValidationError

from accounts.tests.conftest import while_writing
from conftest import admin_form, client_for, money_db
from wallets import ledger, services
from wallets.models import Asset, LedgerTransaction, SystemAccount, TransactionKind
from wallets.tests.conftest import AVNU_PRICES, balance_of, provide_liquidity, system_balance

pytestmark = pytest.mark.django_db

USDC = 1_000_000
ETH = 10**18


def test_address_is_stable(api, alice, sandbox):
    first = api(alice).get("/api/v1/wallet/address").json()["address"]
    second = api(alice).get("/api/v1/wallet/address").json()["address"]

    assert first == second
    assert first.startswith("0x") and len(first) == 66


@pytest.mark.parametrize("fault", ["error", "timeout", "rate_limited"])
def test_address_during_a_chipi_outage_is_503_in_the_api_format(api, alice, sandbox, fault):
    sandbox.inject("create_wallet", fault)
    sandbox.inject("prepare_wallet", fault)

    response = api(alice).get("/api/v1/wallet/address")

    assert response.status_code == 503
    assert response.json()["code"] == "upstream_unavailable"
    alice.refresh_from_db()
    assert alice.wallet_address == ""


def test_swap_in_one_balanced_transaction(api, alice, fund, avnu):
    fund(alice, 10 * USDC)
    provide_liquidity("USDT", 10 * USDC)
    rate = Decimal("1") / Decimal("0.9998")  # AVNU's USD prices of USDC and USDT (the fake's)
    expected = services.swap_quote(
        from_asset=ledger.asset_get("USDC"), to_asset=ledger.asset_get("USDT"), amount=4 * USDC, rate=rate
    )

    response = api(alice).post(
        "/api/v1/wallet/swap",
        {"fromToken": "USDC", "toToken": "usdt", "amount": "4", "minReceived": "3.9"},
        format="json",
    )

    assert response.status_code == 201
    assert balance_of(alice, "USDC") == 6 * USDC
    assert balance_of(alice, "USDT") == expected
    assert response.json()["received"] == f"{expected / USDC:.6f}"
    assert system_balance(SystemAccount.SWAP_LIQUIDITY, "USDC") == 4 * USDC
    assert system_balance(SystemAccount.SWAP_LIQUIDITY, "USDT") == 10 * USDC - expected
    assert LedgerTransaction.objects.get(kind=TransactionKind.SWAP).entries.count() == 4


def test_a_swaps_two_history_lines_have_their_own_ids_and_share_its_transaction(api, alice, fund, liquidity):
    """Each line's `id` was the transaction's: a swap gave its owner two rows with one id."""
    fund(alice, 10 * USDC)

    swapped = (
        api(alice)
        .post("/api/v1/wallet/swap", {"fromToken": "USDC", "toToken": "USDT", "amount": "1"}, format="json")
        .json()
    )
    rows = api(alice).get("/api/v1/wallet/transactions?type=swap").json()["transactions"]

    tx = LedgerTransaction.objects.get(kind=TransactionKind.SWAP)
    alices = dict(tx.entries.filter(account__owner=alice).values_list("asset__code", "pk"))
    assert {row["token"]: row["id"] for row in rows} == alices  # USDC's debit, USDT's credit
    assert [row["transactionId"] for row in rows] == [tx.pk, tx.pk]
    assert (swapped["transaction"]["id"], swapped["transaction"]["transactionId"]) == (alices["USDC"], tx.pk)


def test_paygo_sells_in_a_swap_only_what_it_holds(api, alice, bob, fund, avnu):
    """Its liquidity account went below zero: a user swapped into ETH nobody had deposited, and
    users' balances of a token came to exceed what custody held of it."""
    fund(alice, 10 * USDC)
    rate = Decimal("1") / Decimal("0.9998")
    four = services.swap_quote(
        from_asset=ledger.asset_get("USDC"), to_asset=ledger.asset_get("USDT"), amount=4 * USDC, rate=rate
    )
    provide_liquidity("USDT", four)
    body = {"fromToken": "USDC", "toToken": "USDT", "amount": "4"}

    refused = api(alice).post("/api/v1/wallet/swap", {**body, "amount": "4.000001"}, format="json")
    unheld = api(alice).post("/api/v1/wallet/swap", {**body, "toToken": "ETH"}, format="json")
    exact = api(alice).post("/api/v1/wallet/swap", body, format="json")
    after = api(alice).post("/api/v1/wallet/swap", {**body, "amount": "1"}, format="json")

    assert (refused.status_code, unheld.status_code, exact.status_code, after.status_code) == (409, 409, 201, 409)
    assert refused.json()["code"] == "insufficient_liquidity"
    assert balance_of(alice, "USDC") == 6 * USDC and balance_of(alice, "USDT") == four
    assert system_balance(SystemAccount.SWAP_LIQUIDITY, "USDT") == 0
    assert balance_of(alice, "ETH") == 0 and system_balance(SystemAccount.SWAP_LIQUIDITY, "ETH") == 0


def test_swap_across_decimals_floors_to_the_minor_unit():
    usdc, eth = ledger.asset_get("USDC"), ledger.asset_get("ETH")

    assert services.swap_quote(from_asset=usdc, to_asset=eth, amount=3000 * USDC, rate=Decimal("0.0003333")) == (
        999_900_000_000_000_000
    )
    assert services.swap_quote(from_asset=eth, to_asset=usdc, amount=1, rate=Decimal("3000")) == 0


@pytest.mark.parametrize("amount", [1_500_000, 1_000_002, 5_000_001, 12_000_003])
def test_a_quote_is_the_exact_floor_never_rounded_up_first(amount):
    """amount x rate has more than the 28 digits a Decimal product keeps: rounded half-even first, 1.5
    USDC at 1/3000 came to 500000000000000 wei, a wei more than the floor, paid by the liquidity."""
    usdc, eth = ledger.asset_get("USDC"), ledger.asset_get("ETH")
    rate = Decimal(1) / Decimal(3000)  # 0.0003333333333333333333333333333, as the rates are divided

    quote = services.swap_quote(from_asset=usdc, to_asset=eth, amount=amount, rate=rate)

    exact = Fraction(amount) * Fraction(rate) * 10**12
    assert quote == math.floor(exact) < exact


def test_swap_under_min_received_is_refused_and_moves_nothing(api, alice, fund, sandbox):
    fund(alice, 10 * USDC)

    response = api(alice).post(
        "/api/v1/wallet/swap",
        {"fromToken": "USDC", "toToken": "USDT", "amount": "4", "minReceived": "4.5"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "slippage"
    assert "minReceived" in response.json()["errors"]
    assert balance_of(alice, "USDC") == 10 * USDC
    assert balance_of(alice, "USDT") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"fromToken": "USDC", "toToken": "USDC", "amount": "1"},
        {"fromToken": "USDC", "toToken": "DOGE", "amount": "1"},
        {"fromToken": "USDC", "toToken": "USDT", "amount": "-1"},
        {"fromToken": "USDC", "toToken": "USDT", "amount": "100"},
    ],
)
def test_bad_swaps_are_400(api, alice, fund, sandbox, body):
    fund(alice, 10 * USDC)

    response = api(alice).post("/api/v1/wallet/swap", body, format="json")

    assert response.status_code == 400
    assert balance_of(alice, "USDC") == 10 * USDC


def test_staff_adjustment_is_balanced_and_records_who_and_why(client, alice, olga, fund):
    account = fund(alice, USDC)
    client.force_login(olga)

    response = client.post(
        f"/admin/wallets/account/{account.pk}/adjust/",
        {"form_token": uuid.uuid4().hex, "amount": "2.5", "reason": "Goodwill for outage #12"},
    )

    assert response.status_code == 302
    tx = LedgerTransaction.objects.get(kind=TransactionKind.ADJUSTMENT)
    assert tx.created_by == olga
    assert tx.metadata["reason"] == "Goodwill for outage #12"
    assert balance_of(alice) == 3_500_000
    assert system_balance(SystemAccount.PLATFORM_REVENUE) == -2_500_000


def test_an_adjustment_shows_its_owner_paygo_and_the_amount_never_who_or_why(
    api, client, alice, olga, fund, django_assert_num_queries
):
    """The owner's history showed the staff member's id and their reason, meant for staff ("Internal:
    chargeback fraud case #77"), as the memo and in the metadata. The admin keeps both."""
    account = fund(alice, USDC)
    client.force_login(olga)
    reason = "Internal: chargeback fraud case #77, flagged by risk"
    client.post(
        f"/admin/wallets/account/{account.pk}/adjust/",
        {"form_token": uuid.uuid4().hex, "amount": "-0.5", "reason": reason},
    )
    history = api(alice)

    with django_assert_num_queries(3):  # the user, the count, the page
        rows = history.get("/api/v1/wallet/transactions").json()["transactions"]

    adjustment = rows[0]
    assert (adjustment["type"], adjustment["amount"], adjustment["direction"]) == ("adjustment", "-0.500000", "debit")
    assert (adjustment["memo"], adjustment["metadata"]) == ("Balance adjustment by PayGo", {})
    assert rows[1]["metadata"] == {"txHash": rows[1]["metadata"]["txHash"], "token": "USDC"}  # a deposit's
    tx = LedgerTransaction.objects.get(kind=TransactionKind.ADJUSTMENT)
    assert (tx.memo, tx.metadata, tx.created_by) == (reason, {"reason": reason, "staffId": olga.pk}, olga)


def test_the_same_adjustment_form_sent_twice_posts_once(client, alice, olga, fund):
    """A double click, or a reload that sends the form again, posted the adjustment twice: the
    form is served with a token of its own, and a second post of it gives the first back."""
    account = fund(alice, USDC)
    client.force_login(olga)
    served = client.get(f"/admin/wallets/account/{account.pk}/adjust/").context["form"]
    data = {"form_token": served["form_token"].initial, "amount": "2.5", "reason": "Goodwill"}

    first = client.post(f"/admin/wallets/account/{account.pk}/adjust/", data)
    again = client.post(f"/admin/wallets/account/{account.pk}/adjust/", data)
    another = client.get(f"/admin/wallets/account/{account.pk}/adjust/").context["form"]["form_token"].initial

    assert (first.status_code, again.status_code) == (302, 302)
    assert LedgerTransaction.objects.filter(kind=TransactionKind.ADJUSTMENT).count() == 1
    assert balance_of(alice) == 3_500_000
    assert another != data["form_token"]


def test_a_used_form_sent_for_another_account_or_amount_posts_nothing_and_says_so(client, alice, bob, olga, fund):
    """Back, change the account or the amount, send: the first adjustment was given back as if
    this one had posted ("Adjustment #N posted."), and nothing moved."""
    a, b = fund(alice, USDC), fund(bob, USDC)
    client.force_login(olga)
    token = uuid.uuid4().hex
    client.post(f"/admin/wallets/account/{a.pk}/adjust/", {"form_token": token, "amount": "2", "reason": "A"})

    other_account = client.post(
        f"/admin/wallets/account/{b.pk}/adjust/", {"form_token": token, "amount": "2", "reason": "B"}
    )
    other_amount = client.post(
        f"/admin/wallets/account/{a.pk}/adjust/", {"form_token": token, "amount": "3", "reason": "A"}
    )

    for page in (other_account, other_amount):
        assert page.status_code == 200  # the form again, with why
        assert "This form already posted adjustment" in page.content.decode()
    assert LedgerTransaction.objects.filter(kind=TransactionKind.ADJUSTMENT).count() == 1
    assert (balance_of(alice), balance_of(bob)) == (3 * USDC, USDC)


def test_an_adjustment_cannot_take_the_swap_liquidity_below_zero(client, olga):
    account = ledger.system_account(SystemAccount.SWAP_LIQUIDITY, ledger.asset_get("USDC"))
    client.force_login(olga)

    response = client.post(
        f"/admin/wallets/account/{account.pk}/adjust/",
        {"form_token": uuid.uuid4().hex, "amount": "-1", "reason": "Back"},
    )

    assert response.status_code == 200  # the form again, with why (was a 500)
    assert "below zero" in response.content.decode()
    assert system_balance(SystemAccount.SWAP_LIQUIDITY, "USDC") == 0


def test_adjustment_cannot_take_a_wallet_below_zero(client, alice, olga, fund):
    account = fund(alice, USDC)
    client.force_login(olga)

    response = client.post(
        f"/admin/wallets/account/{account.pk}/adjust/",
        {"form_token": uuid.uuid4().hex, "amount": "-2", "reason": "Clawback"},
    )

    assert response.status_code == 200  # the form again, with the error
    assert b"Insufficient funds" in response.content
    assert balance_of(alice) == USDC


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("1e-1000079", "Must have at most 6 decimal places."),  # underflowed to 0 (refused only by luck)
        ("1e-7", "Must have at most 6 decimal places."),
        ("0", "Must not be zero."),
        ("-0.000", "Must not be zero."),
        ("1e40", "Must be less than 1,000,000,000,000."),  # past the column: a database error
        ("123456789012345678901234567890.5", "Must be less than 1,000,000,000,000."),  # rounded to 28 digits
    ],
)
def test_an_adjustment_is_read_exactly_or_refused(client, alice, olga, fund, amount, message):
    account = fund(alice, USDC)
    client.force_login(olga)

    response = client.post(
        f"/admin/wallets/account/{account.pk}/adjust/",
        {"form_token": uuid.uuid4().hex, "amount": amount, "reason": "Check"},
    )

    assert response.status_code == 200  # the form again, with the error
    assert message in response.content.decode()
    assert balance_of(alice) == USDC
    assert not LedgerTransaction.objects.filter(kind=TransactionKind.ADJUSTMENT).exists()


def test_admin_pages_render(client, olga, alice, fund):
    fund(alice, USDC)
    client.force_login(olga)

    for url in [
        "/admin/wallets/account/",
        "/admin/wallets/ledgertransaction/",
        "/admin/wallets/withdrawal/",
        "/admin/wallets/hold/",
        "/admin/wallets/reconciliation/",
        f"/admin/wallets/ledgertransaction/{LedgerTransaction.objects.get().pk}/change/",
    ]:
        assert client.get(url).status_code == 200, url


def test_non_staff_cannot_adjust(client, alice, fund):
    account = fund(alice, USDC)
    client.force_login(alice)

    response = client.post(
        f"/admin/wallets/account/{account.pk}/adjust/",
        {"form_token": uuid.uuid4().hex, "amount": "100", "reason": "me"},
    )

    assert response.status_code == 302  # to the admin login
    assert balance_of(alice) == USDC


def test_swap_without_a_rate_is_503_and_moves_nothing(api, alice, fund, avnu):
    fund(alice, 10 * USDC)
    avnu.fail.append(502)

    response = api(alice).post(
        "/api/v1/wallet/swap", {"fromToken": "USDC", "toToken": "USDT", "amount": "1"}, format="json"
    )

    assert response.status_code == 503
    assert response.json()["code"] == "upstream_unavailable"
    assert balance_of(alice, "USDC") == 10 * USDC


@pytest.mark.parametrize("eth_price", ["1e-30", "1e-13"])
def test_a_rate_giving_past_any_amount_is_no_rate_and_moves_nothing(
    api, alice, fund, liquidity, monkeypatch, eth_price
):
    """The price API priced ETH at 1e-30 USD: a swap of 1 USDC came to 10^48 wei, past the ledger's
    NUMERIC(38,0) (a 500, numeric field overflow); at 1e-13, to 10^13 ETH, refused only because PayGo
    held less. Proceeds past the bound every amount has (a trillion whole units) are an untrustworthy
    rate: the 503 of a swap without a rate."""
    monkeypatch.setitem(AVNU_PRICES, "ETH", eth_price)
    fund(alice, 10 * USDC)

    response = api(alice).post(
        "/api/v1/wallet/swap", {"fromToken": "USDC", "toToken": "ETH", "amount": "1"}, format="json"
    )

    assert response.status_code == 503
    assert response.json()["code"] == "upstream_unavailable"
    assert "would give 1,000,000,000,000 ETH or more" in response.json()["message"]
    assert (balance_of(alice, "USDC"), balance_of(alice, "ETH")) == (10 * USDC, 0)
    assert system_balance(SystemAccount.SWAP_LIQUIDITY, "ETH") == 10**6 * ETH
    assert not LedgerTransaction.objects.filter(kind=TransactionKind.SWAP).exists()


# --- The default token ------------------------------------------------------------------------------


def test_tokens_are_not_added_in_the_admin(client, olga):
    """A token comes with its chain contract (the migrations): the add form had neither code nor
    decimals (read-only fields), and saving it failed in the database (a 500)."""
    client.force_login(olga)

    page = client.get("/admin/wallets/asset/add/")
    saved = client.post("/admin/wallets/asset/add/", {"name": "Fake", "is_active": "on"})

    assert (page.status_code, saved.status_code) == (403, 403)
    assert not Asset.objects.filter(name="Fake").exists()


def test_the_default_token_cannot_be_deactivated_nor_unset_in_its_form(client, olga, api, alice, bob, fund):
    """Both left the API without a default: the balance and a transfer naming no token answered 500."""
    fund(alice, 10 * USDC)
    client.force_login(olga)
    usdc = Asset.objects.get(code="USDC")

    url = f"/admin/wallets/asset/{usdc.pk}/change/"
    seen = admin_form(client, url)
    unticked = {name: value for name, value in seen.items() if name != "is_active"}

    response = client.post(url, unticked)

    assert response.status_code == 200  # the form again
    assert "The default token stays active" in response.content.decode()
    client.post(url, {**seen, "is_default": ""})
    usdc.refresh_from_db()
    assert (usdc.is_default, usdc.is_active) == (True, True)  # is_default is not a field of the form
    assert api(alice).get("/api/v1/wallet/balance").status_code == 200
    response = api(alice).post("/api/v1/wallet/transfer", {"amount": "1", "recipientId": bob.pk}, format="json")
    assert response.status_code == 201


def test_the_default_moves_to_another_token_through_the_action(client, olga, api, alice, bob, fund):
    fund(alice, 2 * ETH, "ETH")
    client.force_login(olga)
    eth = Asset.objects.get(code="ETH")

    response = client.post("/admin/wallets/asset/", {"action": "make_default", "_selected_action": [eth.pk]})

    assert response.status_code == 302
    assert list(Asset.objects.filter(is_default=True).values_list("code", flat=True)) == ["ETH"]
    response = api(alice).post("/api/v1/wallet/transfer", {"amount": "0.5", "recipientId": bob.pk}, format="json")
    assert response.status_code == 201
    assert balance_of(bob, "ETH") == ETH // 2


def test_an_inactive_token_is_not_made_the_default(client, olga):
    client.force_login(olga)
    Asset.objects.filter(code="ETH").update(is_active=False)
    eth = Asset.objects.get(code="ETH")

    response = client.post(
        "/admin/wallets/asset/", {"action": "make_default", "_selected_action": [eth.pk]}, follow=True
    )

    assert "ETH is not active: activate it first." in response.content.decode()
    assert list(Asset.objects.filter(is_default=True).values_list("code", flat=True)) == ["USDC"]


@money_db
@pytest.mark.parametrize(
    "edit",
    [{"name": "Tether USD"}, {"name": "Tether", "is_active": "on"}],
    ids=["deactivating", "renaming"],
)
def test_editing_a_token_while_another_operator_makes_it_the_default_keeps_a_default(olga, alice, edit):
    """The form saved every column as it had read them: an edit waiting on the new default's lock
    then wrote is_default back to false, no token was the default, and the balance answered 500.
    The edit now decides on the token once it holds it (the admin locks the tokens before its form
    reads it): a deactivation is refused (the token is the default by then), a rename keeps it the
    default."""
    usdt = Asset.objects.get(code="USDT")
    admin = Client(raise_request_exception=False)
    admin.force_login(olga)
    page = f"/admin/wallets/asset/{usdt.pk}/change/"
    seen = {name: value for name, value in admin_form(admin, page).items() if name != "is_active"}

    answer = while_writing(
        lambda: services.asset_make_default(asset=Asset.objects.get(code="USDT")),
        lambda: admin.post(page, {**seen, **edit}),
    )

    usdt.refresh_from_db()
    assert list(Asset.objects.filter(is_default=True).values_list("code", "is_active")) == [("USDT", True)]
    assert client_for(alice).get("/api/v1/wallet/balance").json()["token"] == "USDT"
    if "is_active" in edit:
        assert answer.status_code == 302
        assert answer.url == reverse("admin:wallets_asset_changelist")
        assert usdt.name == "Tether"
    else:
        assert answer.status_code == 200  # the form again, nothing saved, and why
        assert "The default token stays active" in answer.content.decode()
        assert usdt.name == "Tether USD"


def test_a_token_is_renamed_and_deactivated_through_its_service():
    eth = Asset.objects.get(code="ETH")

    services.asset_update(asset=eth, name=" Ether (mainnet) ", is_active=False)

    eth.refresh_from_db()
    assert (eth.name, eth.is_active, eth.is_default) == ("Ether (mainnet)", False, False)
    with pytest.raises(ValidationError) as refused:
        services.asset_update(asset=Asset.objects.get(code="USDC"), name="USD Coin", is_active=False)
    assert refused.value.get_codes() == {"is_active": ["default_token"]}
    assert Asset.objects.get(code="USDC").is_active


@money_db
def test_the_database_refuses_a_transaction_that_leaves_no_default_token():
    """At commit (the trigger is deferred: a change of the default unsets the old one first)."""
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError, match="no default token"), transaction.atomic():
        Asset.objects.filter(code="USDC").update(is_default=False)

    with transaction.atomic():  # the default moved in one transaction: committed
        services.asset_make_default(asset=Asset.objects.get(code="ETH"))
    assert list(Asset.objects.filter(is_default=True).values_list("code", flat=True)) == ["ETH"]


def test_the_database_keeps_the_default_token_active():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Asset.objects.filter(is_default=True).update(is_active=False)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("left", ["deactivated", "unset"])
def test_the_migration_puts_right_a_default_token_the_old_admin_left(left):
    """Migration 0015 adds the check that the default token is active: on a database where the old
    admin had deactivated it, or unset it, it puts that right first rather than fail."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("wallets", "0014_system_accounts_locked_last")], [("wallets", "0015_default_asset_active")]
    MigrationExecutor(connection).migrate(before)
    try:
        with connection.cursor() as cursor:
            if left == "deactivated":
                cursor.execute("UPDATE wallets_asset SET is_active = false WHERE is_default")
            else:
                cursor.execute("UPDATE wallets_asset SET is_default = false")
        MigrationExecutor(connection).migrate(after)

        assert list(Asset.objects.filter(is_default=True).values_list("code", "is_active")) == [("USDC", True)]
    finally:
        # Every migration again: the later ones' constraints were undone on the way back, and the
        # tests this worker runs next rely on them (wallets 0016's kept swaps from going below zero).
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_puts_right_a_database_left_without_a_default_token():
    """Migration 0019 adds the trigger that refuses a transaction leaving no default token: on a
    database the admin's race left without one, it makes USDC the default again first."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    MigrationExecutor(connection).migrate([("wallets", "0018_posting_locks_before_drawing_ids")])
    try:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE wallets_asset SET is_default = false")
        MigrationExecutor(connection).migrate([("wallets", "0019_default_asset_exists")])

        assert list(Asset.objects.filter(is_default=True).values_list("code", "is_active")) == [("USDC", True)]
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_covers_what_swaps_sold_short_out_of_platform_revenue():
    """Before wallets 0016's check, swaps could sell what PayGo did not hold: a deficit found then
    is covered out of platform revenue (which may go below zero) in a balanced adjustment, so that
    the check holds and a swap back into that token is not refused for the old deficit."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    eth = ledger.asset_get("ETH")
    MigrationExecutor(connection).migrate([("wallets", "0015_default_asset_active")])
    try:
        ledger.transfer(
            debit=ledger.system_account(SystemAccount.SWAP_LIQUIDITY, eth),
            credit=ledger.system_account(SystemAccount.PLATFORM_REVENUE, eth),
            amount=7,
        )
        assert system_balance(SystemAccount.SWAP_LIQUIDITY, "ETH") == -7
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert system_balance(SystemAccount.SWAP_LIQUIDITY, "ETH") == 0
    assert system_balance(SystemAccount.PLATFORM_REVENUE, "ETH") == 0
    covered = LedgerTransaction.objects.get(reference__startswith="adjustment:swap-liquidity-deficit:")
    assert sorted(covered.entries.values_list("amount", flat=True)) == [-7, 7]


def test_renaming_a_token_keeps_a_deactivation_made_since_its_page_was_opened(client, olga):
    """Olga opens ETH's page to fix its name; meanwhile another operator deactivates ETH: Olga's save
    posted the "active" box she had seen ticked, and ETH took payments again."""
    client.force_login(olga)
    eth = Asset.objects.get(code="ETH")
    assert eth.is_active
    url = f"/admin/wallets/asset/{eth.pk}/change/"
    seen = admin_form(client, url)
    services.asset_update(asset=Asset.objects.get(code="ETH"), name=eth.name, is_active=False)

    response = client.post(url, {**seen, "name": "Ether"})

    assert response.status_code == 302, response.content[:3000]
    eth.refresh_from_db()
    assert (eth.name, eth.is_active) == ("Ether", False)
