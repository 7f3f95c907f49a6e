"""The ledger's scheduled health check: its work follows the new entries, not the whole ledger, and
no request runs it."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import F

from conftest import run_task
from dashboards import health, rollup
from dashboards.tasks import ledger_health_check_task
from dashboards.tests.conftest import NOW, USDC, make_service, run_session
from wallets import ledger
from wallets.models import Account, Entry, SystemAccount

pytestmark = pytest.mark.django_db

OVERVIEW = "/api/v1/dashboard/admin/overview"


def entries_read() -> int:
    """Rows of wallets_entry this database transaction has read so far, from the table (sequential
    scans) and from its indexes (PostgreSQL's per-transaction statistics: exact, whatever the plans)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_returned(%s::regclass) + (SELECT COALESCE(SUM("
            "pg_stat_get_xact_tuples_returned(indexrelid)), 0) FROM pg_index WHERE indrelid = %s::regclass)",
            ["wallets_entry", "wallets_entry"],
        )
        return int(cursor.fetchone()[0])


def read_by(action) -> int:
    before = entries_read()
    action()
    return entries_read() - before


def planned_as_at_volume() -> None:
    """On a test's few hundred rows a sequential scan is the cheapest plan for any statement, tail
    or not; at volume the planner reads a tail through the indexes. Turned off for the rest of the
    test's transaction, so that what is counted is what the statements need, not a small table's plan."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")


def transfers(debit, credit, count: int) -> None:
    for _ in range(count):
        ledger.transfer(debit=debit, credit=credit, amount=1)


def test_a_scheduled_run_reads_the_new_entries_not_the_whole_ledger(alice, bob, fund):
    planned_as_at_volume()
    payer, payee = fund(alice, 10_000), fund(bob, 1)
    transfers(payer, payee, 100)  # old entries: 200
    run_task(ledger_health_check_task)
    transfers(payer, payee, 5)  # the tail
    with_old = read_by(lambda: run_task(ledger_health_check_task))

    transfers(payer, payee, 100)  # as many old entries again
    run_task(ledger_health_check_task)
    transfers(payer, payee, 5)
    with_twice_as_many = read_by(lambda: run_task(ledger_health_check_task))

    assert with_twice_as_many == with_old, (with_old, with_twice_as_many)
    assert with_old < 100  # a few times the tail's 10 entries
    assert health.latest()["healthy"] is True


@pytest.mark.parametrize("query", [{}, {"refresh": "true"}], ids=["cold-cache", "refresh"])
def test_an_overview_request_never_runs_the_check(api, olga, alice, bob, fund, query):
    payer, payee = fund(alice, 10_000), fund(bob, 1)
    transfers(payer, payee, 50)
    rollup.rollup_advance()  # the figures' own tail is then empty: what the request reads is the check's
    client = api(olga)

    read = read_by(lambda: client.get(OVERVIEW, query))

    assert read == 0
    health = client.get(OVERVIEW, query).json()["ledgerHealth"]
    assert health["healthy"] is None and health["checkedAt"] is None  # not yet run


def past_the_guards(cursor) -> None:
    """Entries written past the database's own checks, as a bad script would (rolled back with the test)."""
    cursor.execute("ALTER TABLE wallets_entry DISABLE TRIGGER wallets_entry_balanced")
    cursor.execute("ALTER TABLE wallets_entry DISABLE TRIGGER streaming_charges_refer")


def test_bad_entries_past_the_watermark_are_found_and_stay_found(alice, bob, victor, fund):
    fund(alice, 10 * USDC)
    session = run_session(alice, make_service(victor), NOW - timedelta(hours=1), 150, sweeps=(60,))
    charge = Entry.objects.filter(session=session).first()
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, charge.asset_id)
    payer = Account.objects.filter(pk=charge.account_id)
    assert run_task(ledger_health_check_task) is True  # every entry so far checked, and summed

    with transaction.atomic():
        with connection.cursor() as cursor:
            past_the_guards(cursor)
            cursor.execute(
                "INSERT INTO wallets_entry (transaction_id, account_id, asset_id, amount, session_id, billed_from, "
                "billed_until, fee, created_at) VALUES "
                "(%s, %s, %s, 5, NULL, NULL, NULL, NULL, %s), "  # into a checked transaction
                "(%s, %s, %s, -1, %s, now(), now(), 0, %s), "  # a charge of the session off its payer
                "(%s, %s, %s, -1, %s, now(), now(), 0, %s)",  # a charge of no session
                [
                    *(charge.transaction_id, revenue.pk, charge.asset_id, charge.created_at),
                    *(charge.transaction_id, session.payee_account_id, charge.asset_id, session.pk, charge.created_at),
                    *(charge.transaction_id, charge.account_id, charge.asset_id, 10**12, charge.created_at),
                ],
            )
        payer.update(held=F("held") + 1)
        assert run_task(ledger_health_check_task) is False
        found = health.latest()

        payer.update(held=F("held") - 1)
        fund(bob, USDC)  # and the check moves on past them
        assert run_task(ledger_health_check_task) is False
        still = health.latest()
        transaction.set_rollback(True)

    checked_through = found.pop("checked_through_entry")
    assert found == {
        "healthy": False,
        "unbalanced_transactions": 1,  # the charge's own, checked before: an entry was added to it
        "dangling_entries": 0,
        "balance_mismatches": 3,  # revenue's, the payee's and the payer's: their balances never moved
        "held_mismatches": 1,
        "negative_user_accounts": 0,
        "assets_not_summing_to_zero": 0,
        "dangling_charges": 1,
        "charges_off_payer": 1,
        "sessions_whose_total_is_not_their_charges": 1,
        "checked_at": "2026-11-20T12:00:00Z",
        "age_seconds": 0,
        "stale": False,
        "full_check": None,
    }
    # What the entries were found to be stays found; the state checks read the state as it is now.
    assert (still["unbalanced_transactions"], still["dangling_charges"], still["charges_off_payer"]) == (1, 1, 1)
    assert still["held_mismatches"] == 0
    assert still["checked_through_entry"] > checked_through


def test_a_bad_entry_before_the_watermark_is_found_by_the_full_check(api, olga, alice, fund):
    account = fund(alice, 10 * USDC)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, account.asset_id)
    assert run_task(ledger_health_check_task) is True
    checked_through = health.latest()["checked_through_entry"]

    with transaction.atomic():
        with connection.cursor() as cursor:
            past_the_guards(cursor)
            cursor.execute(  # an id the watermark has passed: a row the scheduled check never reads
                "INSERT INTO wallets_entry (id, transaction_id, account_id, asset_id, amount, created_at) "
                "SELECT e.id - 1, e.transaction_id, %s, %s, 5, e.created_at FROM wallets_entry AS e "
                "ORDER BY e.id LIMIT 1",
                [revenue.pk, account.asset_id],
            )
        assert Entry.objects.order_by("id").first().pk < checked_through
        scheduled = run_task(ledger_health_check_task)
        printed = io.StringIO()
        with pytest.raises(CommandError, match="does not add up"):
            call_command("ledger_check", "--full", stdout=printed)
        shown = api(olga).get(OVERVIEW).json()["ledgerHealth"]
        transaction.set_rollback(True)

    assert scheduled is True  # its sums and its watermark say nothing of that row
    assert shown["healthy"] is False
    assert shown["fullCheck"] == {"healthy": False, "checkedAt": "2026-11-20T12:00:00Z"}
    full = json.loads(printed.getvalue())
    assert (full["unbalanced_transactions"], full["balance_mismatches"]) == (1, 1)
    assert not any(
        value
        for name, value in full.items()
        if name not in ("unbalanced_transactions", "balance_mismatches", "healthy")
    )
