"""The platform's figures for staff: volume, revenue, deposits, withdrawals, outbox, ledger health."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db.models import Sum

from conftest import grant, run_task
from dashboards import rollup
from dashboards.tests.conftest import make_service
from streaming import services as streaming
from wallets import ledger
from wallets.models import (
    Account,
    AccountKind,
    Entry,
    SystemAccount,
    TransactionKind,
    Withdrawal,
    WithdrawalKind,
    WithdrawalStatus,
)
from wallets.services import sends_confirm, withdrawal_refund_settle, withdrawal_request
from wallets.tests.conftest import balance_of, chain_deposit

pytestmark = pytest.mark.django_db

OVERVIEW = "/api/v1/dashboard/admin/overview"


def test_figures_equal_the_ledger(api, olga, history):
    from dashboards.tasks import ledger_health_check_task

    assert run_task(ledger_health_check_task) is True
    body = api(olga).get(OVERVIEW, {"period": "year"}).json()

    revenue_account = Account.objects.get(
        kind=AccountKind.SYSTEM, system_code=SystemAccount.PLATFORM_REVENUE, asset__code="USDC"
    )
    revenue = Entry.objects.filter(account=revenue_account, transaction__kind=TransactionKind.CHARGE).aggregate(
        total=Sum("amount")
    )["total"]
    gross = Entry.objects.filter(transaction__kind=TransactionKind.CHARGE, amount__lt=0).aggregate(total=Sum("amount"))[
        "total"
    ]
    assert (-gross, revenue) == (16_735_234, 1_673_523)
    assert body["totals"] == {
        "grossVolume": "16.735234",  # 10 + 2.5 + 1.235234 + 3
        "platformRevenue": "1.673523",  # 1 + 0.25 + 0.123523 + 0.3
        "vendorEarnings": "15.061711",  # 13.95 (victor) + 1.111711 (wanda)
        "charges": 5,  # s1 twice, s2, s3, s5
        "deposits": "2000.000000",
        "withdrawals": "0.000000",
        "sessions": 5,
    }
    assert body["activeSessions"] == 1
    assert body["usersByRole"] == {"user": 2, "vendor": 2, "admin": 1}
    assert body["ledgerHealth"]["healthy"] is True
    # Sessions are counted by the time they started, as in the totals (which they add up to): Minutes
    # has s1, s5 and s4 (running since five minutes ago, nothing charged yet).
    assert [(v["name"], v["grossVolume"], v["earnings"], v["sessions"]) for v in body["topVendors"]] == [
        ("Victor", "15.500000", "13.950000", 4),
        ("Wanda", "1.235234", "1.111711", 1),
    ]
    assert [(s["name"], s["grossVolume"], s["sessions"]) for s in body["topServices"]] == [
        ("Minutes", "13.000000", 3),
        ("Pass", "2.500000", 1),
        ("Seconds", "1.235234", 1),
    ]


def test_active_sessions_are_the_default_tokens_as_the_figures_beside_them(api, olga, bob, wanda, history, fund):
    """The overview speaks one token (`token`): a session running in another one is neither in the
    money nor in the sessions started, and not among the active ones either (it was counted there)."""
    fund(bob, 100 * 1_000_000, "USDT")
    in_usdt = make_service(wanda, name="Tether minutes", unit="per_minute", rate=1_000_000, token="USDT")
    streaming.session_start(user=bob, service=in_usdt)

    body = api(olga).get(OVERVIEW, {"period": "year"}).json()

    assert body["token"] == "USDC"
    assert body["activeSessions"] == 1  # s4 only
    assert body["totals"]["sessions"] == 5


def test_default_window_is_the_last_30_days_per_day(api, olga, history):
    body = api(olga).get(OVERVIEW).json()

    assert (body["period"], body["from"], body["to"], len(body["series"])) == ("day", "2026-10-22", "2026-11-20", 30)
    assert body["totals"]["grossVolume"] == "6.735234"  # s1 (October 5th) is outside
    by_day = {row["period"]: row for row in body["series"]}
    assert by_day["2026-11-01"]["grossVolume"] == "2.500000"
    assert by_day["2026-11-01"]["platformRevenue"] == "0.250000"
    assert by_day["2026-11-20"]["deposits"] == "2000.000000"


def test_withdrawals_waiting_in_the_outbox_are_its_backlog_not_money_out(api, olga, alice, history):
    usdc = ledger.asset_get("USDC")
    # Queued with on_commit: inside the test's transaction they stay in the outbox, unsent.
    withdrawal_request(user=alice, asset=usdc, amount=5_000_000, to_address="0xabc")
    withdrawal_request(user=alice, asset=usdc, amount=1_500_000, to_address="0xabc")

    body = api(olga).get(OVERVIEW).json()

    assert body["totals"]["withdrawals"] == "0.000000"  # nothing has left yet
    assert body["outbox"] == {
        "pending": 2,
        "sending": 0,
        "failed": 0,
        "needsReview": 0,
        "backlog": 2,
        "backlogAmount": "6.500000",
        "oldestPendingAt": "2026-11-20T12:00:00Z",
    }


def test_figures_are_shared_for_a_minute_and_recomputed_on_demand(api, olga, alice, fund, django_assert_num_queries):
    client = api(olga)
    first = client.get(OVERVIEW).json()
    fund(alice, 7 * 1_000_000)

    with django_assert_num_queries(1):  # the JWT's user: figures and health come from the cache
        cached = client.get(OVERVIEW).json()
    # The figures (no charge in the window: no top service to name); never the ledger health check,
    # whose latest result comes from the cache (dashboards.health).
    with django_assert_num_queries(9):
        fresh = client.get(OVERVIEW, {"refresh": "1"}).json()

    assert cached == first
    assert fresh["totals"]["deposits"] == "7.000000"
    assert fresh["computedAt"] == "2026-11-20T12:00:00Z"
    assert fresh["ledgerHealth"]["checkedAt"] is None  # not yet run: the schedule runs it


def test_only_staff_with_the_permission_the_admin_page_asks(api, alice, victor, stan, anon):
    assert api(alice).get(OVERVIEW).status_code == 403
    assert api(victor).get(OVERVIEW).status_code == 403
    assert anon.get(OVERVIEW).status_code == 401
    assert api(stan).get(OVERVIEW).status_code == 403
    assert api(grant(stan, "dashboards.view_platform_overview")).get(OVERVIEW).status_code == 200


def test_the_scheduled_check_keeps_its_result_for_the_dashboards(api, olga, django_assert_num_queries):
    from dashboards.tasks import ledger_health_check_task

    assert run_task(ledger_health_check_task) is True
    # The figures (nothing to name: see test_queries for the count with charges); no ledger_health queries:
    # the scheduled result is used.
    client = api(olga)  # signing in records a sign-in: not the dashboard's query
    with django_assert_num_queries(9):
        body = client.get(OVERVIEW).json()
    assert body["ledgerHealth"]["healthy"] is True
    assert (body["ledgerHealth"]["checkedAt"], body["ledgerHealth"]["ageSeconds"]) == ("2026-11-20T12:00:00Z", 0)
    assert body["ledgerHealth"]["stale"] is False

    with time_machine.travel(timedelta(minutes=10)):  # the schedule stopped finishing: the result is shown old
        later = client.get(OVERVIEW).json()["ledgerHealth"]
    assert (later["healthy"], later["ageSeconds"], later["stale"]) == (True, 600, True)


# --- Money in and out: deposits credited, withdrawals and payouts that left custody ---------------

USDC = 1_000_000
ADDRESS = "0x00" + "ab" * 31


def withdraw(api, user, amount: str) -> Withdrawal:
    response = api(user).post("/api/v1/wallet/withdraw", {"amount": amount, "toAddress": ADDRESS}, format="json")
    assert response.status_code == 202, response.json()
    return Withdrawal.objects.get(pk=response.json()["withdrawal"]["id"])


def money_in_and_out(api, olga) -> tuple[dict, dict]:
    body = api(olga).get(OVERVIEW, {"period": "day", "refresh": "true"}).json()
    totals = {name: body["totals"][name] for name in ("deposits", "withdrawals")}
    today = {name: body["series"][-1][name] for name in ("deposits", "withdrawals")}
    return totals, today


def test_a_withdrawal_refused_and_refunded_is_not_money_out(api, alice, olga, sandbox):
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "reject")  # refused for good: refunded, nothing leaves

    withdrawal = withdraw(api, alice, "4")

    assert Withdrawal.objects.get(pk=withdrawal.pk).status == WithdrawalStatus.FAILED
    assert balance_of(alice) == 10 * USDC
    totals = api(olga).get(OVERVIEW, {"period": "day", "refresh": "true"}).json()["totals"]
    assert (totals["deposits"], totals["withdrawals"]) == ("10.000000", "0.000000")


def test_withdrawals_are_the_money_that_left_custody(
    api, alice, victor, olga, sandbox, django_capture_on_commit_callbacks
):
    """Sent withdrawals and payouts count when they are sent; a refused one never, one reverted on
    chain no more once it is seen reverted; one waiting in the outbox not yet. The same read from the
    rollup as from its tail."""
    chain_deposit(alice, 100 * USDC)
    chain_deposit(victor, 50 * USDC)
    withdraw(api, alice, "30")  # sent
    sandbox.inject("send_transfer", "reject")
    withdraw(api, alice, "4")  # refused: refunded from in flight
    sandbox.inject("execute", "pending")
    reverted = withdraw(api, alice, "7")  # sent, then reverted on chain
    with django_capture_on_commit_callbacks(execute=True):  # its send is queued on commit
        withdrawal_request(
            user=victor,
            asset=ledger.asset_get("USDC"),
            amount=12 * USDC,
            to_address=ADDRESS,
            kind=WithdrawalKind.PAYOUT,
        )
    waiting = withdrawal_request(user=alice, asset=ledger.asset_get("USDC"), amount=5 * USDC, to_address=ADDRESS)
    assert Withdrawal.objects.get(pk=waiting.pk).status == WithdrawalStatus.PENDING  # its send not run (on commit)

    sent = {"deposits": "150.000000", "withdrawals": "49.000000"}  # 30 + 7 + 12 sent
    assert money_in_and_out(api, olga) == (sent, sent)
    rollup.rollup_advance()
    assert money_in_and_out(api, olga) == (sent, sent)

    sandbox.revert(Withdrawal.objects.get(pk=reverted.pk).tx_hash)
    assert sends_confirm().reverted == 1
    left = {"deposits": "150.000000", "withdrawals": "42.000000"}  # the 7 came back into custody
    assert money_in_and_out(api, olga) == (left, left)
    # Its refund waits until the transfer signed for it can no longer execute (wallets' test_refund_due).
    assert balance_of(alice) == 100 * USDC - 30 * USDC - 7 * USDC - 5 * USDC
    due = Withdrawal.objects.get(pk=reverted.pk).refund_due_at
    with time_machine.travel(due + timedelta(seconds=1)):
        assert withdrawal_refund_settle(withdrawal_id=reverted.pk) == WithdrawalStatus.FAILED
    assert balance_of(alice) == 100 * USDC - 30 * USDC - 5 * USDC
    assert money_in_and_out(api, olga) == (left, left)  # refunded from in flight: not money out

    rollup.rollup_advance()
    assert money_in_and_out(api, olga) == (left, left)


# --- Which Chipi the money goes through: the sandbox (simulated money) must be seen ---------------


def test_the_overview_says_the_sandbox_is_in_use(api, olga):
    body = api(olga).get(OVERVIEW).json()

    assert body["chipi"] == {"mode": "sandbox"}


def test_the_overview_says_chipi_is_live_with_a_key(api, olga, settings):
    settings.CHIPI_API_KEY, settings.CHIPI_SECRET_KEY, settings.CHIPI_SANDBOX = "pk_live_1", "sk_live_1", False

    body = api(olga).get(OVERVIEW).json()

    assert body["chipi"] == {"mode": "live"}
