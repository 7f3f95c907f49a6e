"""The wallets' admin pages as an operator reads them: accounts named by their owner, every amount
in its asset's units on lists and detail pages, the ledger's amount first, references shortened,
errors as messages."""

from __future__ import annotations

import re
import uuid
from html import unescape

import pytest
from django.test import Client

from conftest import grant
from wallets import ledger
from wallets.models import Account, Hold, LedgerTransaction, Reconciliation
from wallets.services import withdrawal_request
from wallets.tests.conftest import balance_of

pytestmark = pytest.mark.django_db

USDC = 1_000_000


@pytest.fixture
def operator(olga) -> Client:
    client = Client()
    client.force_login(olga)
    return client


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def _text(html: str) -> str:
    """What the page shows: its text without tags (attributes such as title= are not shown)."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_accounts_are_named_by_owner_and_asset_with_amounts_in_units(operator, alice, fund):
    account = fund(alice, 12_500_000)

    listing = _text(_page(operator, "/admin/wallets/account/"))
    detail = _text(_page(operator, f"/admin/wallets/account/{account.pk}/change/"))

    assert "Alice <alice@example.com> · USDC" in listing
    assert "12.500000 USDC" in listing
    assert "Platform revenue · USDC" in listing
    assert "Alice <alice@example.com> · USDC" in detail
    assert "12.500000 USDC" in detail
    assert "12500000" not in listing + detail
    assert "user " + str(alice.pk) not in listing + detail


def test_the_ledger_list_shows_the_amount_first_and_short_references(operator, alice, fund):
    fund(alice, 12_500_000)
    tx = LedgerTransaction.objects.get()

    html = _page(operator, "/admin/wallets/ledgertransaction/")

    headers = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', html)
    assert headers[:3] == ["amount", "created_at", "kind"]
    assert "12.500000 USDC" in _text(html)
    assert tx.reference not in _text(html)  # deposit:0x<64 hex digits>, shortened...
    assert f'title="{tx.reference}"' in html  # ...and whole on hover


def test_a_ledger_transaction_shows_its_entries_in_units_and_accounts_by_owner(operator, alice, fund):
    fund(alice, 12_500_000)
    tx = LedgerTransaction.objects.get()

    detail = _text(_page(operator, f"/admin/wallets/ledgertransaction/{tx.pk}/change/"))

    assert "Alice <alice@example.com> · USDC" in detail
    assert "12.500000 USDC" in detail
    assert "-12.500000 USDC" in detail
    assert "12500000" not in detail
    assert "Save" not in detail


def test_holds_withdrawals_and_reconciliations_in_units(operator, alice, fund, sandbox):
    fund(alice, 12_500_000)
    withdrawal = withdrawal_request(
        user=alice, asset=ledger.asset_get("USDC"), amount=2_250_000, to_address="0x00" + "ab" * 31
    )
    hold = ledger.hold_open(account=ledger.account_for_user(alice, ledger.asset_get("USDC")), reference="test:hold")
    Reconciliation.objects.create(
        asset=ledger.asset_get("USDC"), on_chain=3_000_000, ledger=2_000_000, difference=1_000_000, in_flight=0
    )

    pages = [
        "/admin/wallets/withdrawal/",
        f"/admin/wallets/withdrawal/{withdrawal.pk}/change/",
        "/admin/wallets/hold/",
        f"/admin/wallets/hold/{hold.pk}/change/",
        "/admin/wallets/reconciliation/",
        f"/admin/wallets/reconciliation/{Reconciliation.objects.get().pk}/change/",
    ]
    text = {url: _text(_page(operator, url)) for url in pages}

    assert "2.250000 USDC" in text["/admin/wallets/withdrawal/"]
    assert "2.250000 USDC" in text[pages[1]]
    assert "0.000000 USDC" in text[pages[3]]
    assert "3.000000 USDC" in text["/admin/wallets/reconciliation/"]
    assert "1.000000 USDC" in text[pages[5]]
    raw = {url for url, page in text.items() if re.search(r"\b(2250000|3000000|1000000)\b", page)}
    assert not raw, {url: re.findall(r".{60}\b(?:2250000|3000000|1000000)\b.{20}", text[url]) for url in raw}
    assert isinstance(Hold.objects.get(pk=hold.pk).amount, int)


def test_an_adjustment_beyond_the_balance_shows_the_message_not_a_repr(operator, alice, fund):
    account = fund(alice, USDC)

    response = operator.post(
        f"/admin/wallets/account/{account.pk}/adjust/",
        {"form_token": uuid.uuid4().hex, "amount": "-2", "reason": "Clawback"},
    )

    page = _text(response.content.decode())
    assert response.status_code == 200
    assert "Insufficient funds" in page
    assert "ErrorDetail" not in page
    assert "{'" not in page
    assert balance_of(alice) == USDC


def test_adjusting_an_account_that_does_not_exist_is_a_404(operator):
    assert not Account.objects.filter(pk=999999).exists()

    assert operator.get("/admin/wallets/account/999999/adjust/").status_code == 404
    assert (
        operator.post(
            "/admin/wallets/account/999999/adjust/", {"form_token": uuid.uuid4().hex, "amount": "1", "reason": "x"}
        ).status_code
        == 404
    )


def test_staff_see_what_the_chain_said_of_each_withdrawal_read_only(operator, alice, sandbox):
    from django.utils import timezone

    from wallets.models import Withdrawal, WithdrawalStatus
    from wallets.tests.conftest import chain_deposit

    chain_deposit(alice, 10 * USDC)
    usdc, address = ledger.asset_get("USDC"), "0x00" + "ab" * 31
    confirmed, reverted, awaiting = (
        withdrawal_request(user=alice, asset=usdc, amount=amount * USDC, to_address=address) for amount in (1, 2, 3)
    )
    now = timezone.now()
    Withdrawal.objects.filter(pk=confirmed.pk).update(status=WithdrawalStatus.SENT, sent_at=now, confirmed_at=now)
    Withdrawal.objects.filter(pk=reverted.pk).update(status=WithdrawalStatus.FAILED, sent_at=now)
    Withdrawal.objects.filter(pk=awaiting.pk).update(status=WithdrawalStatus.SENT, sent_at=now)

    listing = _text(_page(operator, "/admin/wallets/withdrawal/"))
    assert "on chain" in listing
    assert "awaiting confirmation" in listing and "reverted (refunded)" in listing
    for withdrawal, shown in ((confirmed, "confirmed"), (reverted, "reverted (refunded)"), (awaiting, "awaiting")):
        page = _page(operator, f"/admin/wallets/withdrawal/{withdrawal.pk}/change/")
        assert shown in _text(page)
        assert 'name="confirmed_at"' not in page  # read-only
    awaiting_only = _text(_page(operator, "/admin/wallets/withdrawal/?confirmation=awaiting"))
    assert "3.000000 USDC" in awaiting_only and "1.000000 USDC" not in awaiting_only


def test_adjusting_asks_to_see_the_account_too(alice, stan, fund):
    """With only wallets.add_ledgertransaction, the adjustment page showed any wallet's balance and
    posted to it while the account's own page was refused: both permissions are asked, as the
    other actions ask to see what they change, and only then is the page's link shown."""
    account = fund(alice, 10 * USDC)
    adjust, change = f"/admin/wallets/account/{account.pk}/adjust/", f"/admin/wallets/account/{account.pk}/change/"
    form = {"form_token": uuid.uuid4().hex, "amount": "-2", "reason": "Clawback"}

    posting_only = Client()
    posting_only.force_login(grant(stan, "wallets.add_ledgertransaction"))
    assert posting_only.get(change).status_code == 403
    assert (posting_only.get(adjust).status_code, posting_only.post(adjust, form).status_code) == (403, 403)
    assert balance_of(alice) == 10 * USDC

    viewing_only = Client()
    stan.user_permissions.clear()
    viewing_only.force_login(grant(stan, "wallets.view_account"))
    assert "Post an adjustment" not in _page(viewing_only, change)
    assert (viewing_only.get(adjust).status_code, viewing_only.post(adjust, form).status_code) == (403, 403)
    assert balance_of(alice) == 10 * USDC

    both = Client()
    both.force_login(grant(stan, "wallets.add_ledgertransaction"))
    assert f'href="{adjust}"' in _page(both, change)
    assert "10.000000 USDC" in _text(_page(both, adjust))
    assert both.post(adjust, form).status_code == 302
    assert balance_of(alice) == 8 * USDC
    assert LedgerTransaction.objects.get(reference=f"adjustment:{form['form_token']}").created_by == stan


# --- A sweep's transaction has an entry per session charged: pages that do not draw them all ------------


def _batch_like(alice, bob, *, pairs: dict[str, tuple[int, int]]) -> LedgerTransaction:
    """A transaction of many entries, as a sweep batch is: for each token, `count` (even) pairs of
    entries moving `amount` between alice and bob, one way then back: balanced per asset, and no
    balance changes."""
    from django.db import connection

    from wallets.models import Asset

    tx = LedgerTransaction.objects.create(kind="transfer", reference="batch-like", memo="batch-like")
    for code, (count, amount) in pairs.items():
        asset = Asset.objects.get(code=code)
        payer, payee = ledger.account_for_user(alice, asset), ledger.account_for_user(bob, asset)
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO wallets_entry (amount, account_id, asset_id, transaction_id, created_at) "
                "SELECT CASE WHEN s THEN -%s ELSE %s END, CASE WHEN s = (g %% 2 = 0) THEN %s ELSE %s END, %s, %s, %s "
                "FROM generate_series(1, %s) g, (VALUES (true), (false)) v(s)",
                [amount, amount, payer.pk, payee.pk, asset.pk, tx.pk, tx.created_at, count],
            )
    return tx


def test_the_ledger_list_sums_each_transactions_credits_per_asset_without_loading_its_entries(
    operator, alice, bob, fund
):
    """The amount column prefetched every entry of the page's transactions: 100 sweep batches of
    5,000 entries were 500,000 Entry objects and 17 s a page."""
    from django.db.models.signals import post_init

    from wallets.models import Entry

    fund(alice, 12_500_000)
    _batch_like(alice, bob, pairs={"USDC": (1000, 1), "USDT": (2, 1_500_000)})
    loaded = []

    def count(sender, instance, **kwargs):
        loaded.append(instance)

    post_init.connect(count, sender=Entry)
    try:
        text = _text(_page(operator, "/admin/wallets/ledgertransaction/"))
    finally:
        post_init.disconnect(count, sender=Entry)

    assert "0.001000 USDC, 3.000000 USDT" in text  # the batch: its credits, per asset
    assert "12.500000 USDC" in text  # the deposit
    assert loaded == []


def test_a_transactions_page_shows_its_first_entries_and_links_to_all_of_them(operator, alice, bob):
    tx = _batch_like(alice, bob, pairs={"USDC": (30, 1)})

    html = _page(operator, f"/admin/wallets/ledgertransaction/{tx.pk}/change/")
    link = f"/admin/wallets/entry/?transaction={tx.pk}"
    everything = operator.get(link)

    assert len(re.findall(r'id="entries-\d+"', html)) == 20
    assert f'href="{link}"' in html and "20 of 60 entries" in _text(html)
    assert everything.context["cl"].result_count == 60
    assert {entry.transaction_id for entry in everything.context["cl"].result_list} == {tx.pk}
