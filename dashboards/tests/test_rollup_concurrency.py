"""The rollup's watermark under real concurrency on PostgreSQL: threads, each with its own connection."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django.db import connection, transaction
from django.db.models import Max

from conftest import backend_pid, in_thread, money_db, wait_until_blocked_on_a_lock
from dashboards import rollup
from dashboards.tests.conftest import ledger_by_kind, rollup_by_kind
from wallets import ledger
from wallets.models import Entry
from wallets.tests.conftest import fund_wallet

USDC = 1_000_000


@money_db
def test_the_watermark_waits_for_an_entry_committed_after_a_higher_one(alice, bob, wanda, settings):
    settings.DASHBOARDS_ROLLUP_WAIT_SECONDS = 0.2
    fund_wallet(alice, 10 * USDC)
    usdc = ledger.asset_get("USDC")
    inserted, release = threading.Event(), threading.Event()
    in_flight: dict = {}

    @in_thread
    def slow_transfer():
        with transaction.atomic():
            sent = ledger.transfer(
                debit=ledger.account_for_user(alice, usdc), credit=ledger.account_for_user(bob, usdc), amount=USDC
            )
            in_flight["ids"] = list(Entry.objects.filter(transaction_id=sent.pk).values_list("id", flat=True))
            inserted.set()
            release.wait(10)

    thread = threading.Thread(target=slow_transfer)
    thread.start()
    try:
        assert inserted.wait(10)
        fund_wallet(wanda, 2 * USDC)  # commits first, with higher ids
        visible = Entry.objects.aggregate(last=Max("id"))["last"]
        assert max(in_flight["ids"]) < visible
        assert not Entry.objects.filter(id__in=in_flight["ids"]).exists()  # "max(id) I see" would skip them

        assert rollup._committed_through(Entry) is None  # it waited for the transfer, then gave up
        assert rollup.rollup_advance().entry_id == 0
    finally:
        release.set()
        thread.join()

    mark = rollup.rollup_advance()
    assert mark.entry_id == Entry.objects.aggregate(last=Max("id"))["last"]
    assert rollup_by_kind() == ledger_by_kind()
    assert rollup_by_kind()[usdc.pk, "transfer", "user"] == (0, 2)


@money_db
def test_a_posting_holds_the_transactions_table_before_it_draws_an_id(alice, bob):
    """The watermark knows who may still commit a lower id by who holds the table's ROW EXCLUSIVE
    lock: a posting must hold it before it draws its transaction's id. wallets_post draws its ids
    with nextval before its INSERT: a run reading max(id) and the lock's holders between the two
    took the posting for ended, and the tail hid its entries until the next run."""
    fund_wallet(alice, 10 * USDC)
    usdc = ledger.asset_get("USDC")
    locked, release = threading.Event(), threading.Event()
    poster: list[int] = []

    def last_id_drawn() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT last_value FROM wallets_ledgertransaction_id_seq")
            return cursor.fetchone()[0]

    @in_thread
    def hold_the_table():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("LOCK TABLE wallets_ledgertransaction IN SHARE MODE")  # conflicts with ROW EXCLUSIVE
            locked.set()
            release.wait(30)

    @in_thread
    def transfer():
        poster.append(backend_pid())
        ledger.transfer(debit=ledger.account_for_user(alice, usdc), credit=ledger.account_for_user(bob, usdc), amount=1)

    before = last_id_drawn()
    with ThreadPoolExecutor(max_workers=2) as pool:
        holding = pool.submit(hold_the_table)
        assert locked.wait(30)
        posting = pool.submit(transfer)
        try:
            wait_until_blocked_on_a_lock(poster)
            drawn_while_waiting = last_id_drawn()
        finally:
            release.set()
        holding.result()
        posting.result()

    assert drawn_while_waiting == before  # it waited for the table before drawing an id
    assert last_id_drawn() == before + 1


@money_db
def test_two_runs_at_once_sum_each_entry_once(alice, bob):
    for _ in range(5):
        fund_wallet(alice, USDC)
        fund_wallet(bob, 2 * USDC)
    start = threading.Barrier(2)

    @in_thread
    def run(_):
        start.wait()
        return rollup.rollup_advance().entry_id

    with ThreadPoolExecutor(max_workers=2) as pool:
        marks = list(pool.map(run, range(2)))

    # The run that found the other one summing returned at once; between them, everything is summed.
    assert max(marks) == Entry.objects.aggregate(last=Max("id"))["last"]
    assert rollup_by_kind() == ledger_by_kind()
    assert rollup_by_kind()[ledger.asset_get("USDC").pk, "deposit", "user"] == (15 * USDC, 10)


@money_db
def test_runs_during_a_storm_of_postings_sum_every_entry_once(alice, bob, victor, wanda):
    people = [alice, bob, victor, wanda]
    posting = threading.Barrier(len(people) + 1)
    done = threading.Event()

    @in_thread
    def post(person):
        posting.wait()
        for amount in range(1, 21):
            fund_wallet(person, amount)

    @in_thread
    def roll():
        posting.wait()
        runs = 0
        while not done.is_set() or runs < 3:
            rollup.rollup_advance()
            runs += 1
        return runs

    with ThreadPoolExecutor(max_workers=len(people) + 1) as pool:
        rolling = pool.submit(roll)
        list(pool.map(post, people))
        done.set()
        assert rolling.result() >= 3

    rollup.rollup_advance()
    assert rollup_by_kind() == ledger_by_kind()
    assert rollup_by_kind()[ledger.asset_get("USDC").pk, "deposit", "user"] == (4 * sum(range(1, 21)), 80)


@money_db
def test_the_watermark_makes_no_writer_wait(alice, bob, wanda, settings):
    """While a run waits for a posting in flight, other postings go through: it takes no lock."""
    settings.DASHBOARDS_ROLLUP_WAIT_SECONDS = 30
    fund_wallet(alice, 10 * USDC)
    usdc = ledger.asset_get("USDC")
    inserted, release = threading.Event(), threading.Event()
    order = []

    @in_thread
    def slow_transfer():
        with transaction.atomic():
            ledger.transfer(
                debit=ledger.account_for_user(alice, usdc), credit=ledger.account_for_user(bob, usdc), amount=USDC
            )
            inserted.set()
            release.wait(30)
            order.append("slow transfer commits")

    @in_thread
    def watermark():
        inserted.wait(30)
        through = rollup._committed_through(Entry)
        order.append("watermark read")
        return through

    @in_thread
    def other_posting():
        inserted.wait(30)
        fund_wallet(wanda, USDC)
        order.append("other posting commits")
        release.set()  # only now may the slow transfer end

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(slow_transfer), pool.submit(watermark), pool.submit(other_posting)]
        through = futures[1].result()
        for future in futures:
            future.result()

    assert order == ["other posting commits", "slow transfer commits", "watermark read"]
    assert through is not None  # it waited for the transfer rather than give up
    rollup.rollup_advance()
    assert rollup_by_kind() == ledger_by_kind()


@money_db
def test_a_backlog_is_summed_chunk_by_chunk(alice, bob, settings):
    settings.DASHBOARDS_ROLLUP_CHUNK = 3
    for amount in range(1, 8):
        fund_wallet(alice, amount * USDC)
        fund_wallet(bob, USDC)

    mark = rollup.rollup_advance()

    assert mark.entry_id == Entry.objects.aggregate(last=Max("id"))["last"]
    assert rollup_by_kind() == ledger_by_kind()


@money_db
def test_a_chunk_counts_rows_not_ids(alice, settings, monkeypatch):
    """Entries whose ids start far past the watermark (ids run high after months of traffic, or
    after rolled-back writers) are summed in as many chunks as they have rows: no transaction is
    spent on a range of ids that holds none."""
    settings.DASHBOARDS_ROLLUP_CHUNK = 3
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('wallets_entry', 'id'), 3000 + last_value) FROM wallets_entry_id_seq"
        )
    for amount in range(1, 4):
        fund_wallet(alice, amount * USDC)  # 3 deposits, 6 entries
    chunks = []
    add_entries = rollup._add_entries
    monkeypatch.setattr(rollup, "_add_entries", lambda new: chunks.append(new) or add_entries(new))

    mark = rollup.rollup_advance()

    assert len(chunks) == 2
    assert mark.entry_id == Entry.objects.aggregate(last=Max("id"))["last"]
    assert rollup_by_kind() == ledger_by_kind()


@pytest.fixture
def copied_databases():
    """(writer, reader): connections to two databases on the test's server, the second a copy of the
    first (CREATE DATABASE ... TEMPLATE, as a staging copy is made), each with a wallets_entry table
    under the same OID."""
    params = connection.get_connection_params()
    conninfo = {key: params[key] for key in ("user", "host", "port", "password") if params.get(key)}
    names = [f"paygo_copy_{os.getpid()}_{suffix}" for suffix in ("a", "b")]
    with psycopg.connect(**conninfo, dbname="postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {names[0]} TEMPLATE template0")
        with psycopg.connect(**conninfo, dbname=names[0], autocommit=True) as first:
            first.execute("CREATE TABLE wallets_entry (id bigint PRIMARY KEY)")
            first.execute("INSERT INTO wallets_entry VALUES (1), (2)")
        admin.execute(f"CREATE DATABASE {names[1]} TEMPLATE {names[0]}")
        try:
            with (
                psycopg.connect(**conninfo, dbname=names[0]) as writer,
                psycopg.connect(**conninfo, dbname=names[1], autocommit=True) as reader,
            ):
                yield writer, reader
        finally:
            for name in names:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.django_db
def test_the_watermark_does_not_wait_for_writers_of_a_copy_of_its_database(copied_databases, settings):
    """pg_locks lists the whole server's locks, and a copy of a database has its tables under the
    same OIDs: a writer in flight in the copy was taken for one of this database's, and the rollup
    waited for it (and gave up while the copy was busy, its watermark kept)."""
    settings.DASHBOARDS_ROLLUP_WAIT_SECONDS = 0.2
    writer, reader = copied_databases
    oid = "SELECT 'wallets_entry'::regclass::oid"
    assert writer.execute(oid).fetchone() == reader.execute(oid).fetchone()
    writer.execute("INSERT INTO wallets_entry VALUES (3)")  # in flight: holds ROW EXCLUSIVE until it ends

    with reader.cursor() as cursor:
        assert rollup._committed_through_on(cursor, "wallets_entry") == 2

    writer.rollback()
