"""One billing sweep over N active sessions on PostgreSQL, beside the naive way and the floor.

    .venv/bin/python bench/sweep.py [--sizes 10000 100000] [--naive 10000] [--shards 2] [--model-writes]

- sweep: streaming.sweep.sweep() over N sessions, one minute after they started (every one is
  charged, its hold renewed, its charge recorded);
- naive: one ORM transaction per session (lock the session and both wallets, insert the ledger
  transaction and its entries, update the balances and the session), on --naive sessions;
- floor: one plain SQL UPDATE of the same users' balance rows plus one INSERT of a row per session;
- with --model-writes, the writes of one sweep of this data model alone, in plain SQL (one ledger
  transaction, a debit per session that is its charge record, a credit per vendor and the fee, the
  balances, the holds, the sessions).

It also prints what the sweep wrote (rows inserted and updated per charged session, table growth
and WAL per session, from PostgreSQL's own counters) and what 100,000 sessions running for a day
would add at that rate. The last line, for scripts:

    sweep: 100000 sessions in S s; floor F s; R x floor; N x naive

Each measurement gets a freshly built, vacuumed and checkpointed database (paygo_bench_sweep).
Goal (issues 5 and 15): 100,000 sessions in under 5 s, within 3x of the floor, and at least 50x
faster than the naive way; at most 3 rows written per charged session.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/paygo_bench_sweep")

from _setup import close_connections_before_fork, pg_env, setup_django

USDC = 1_000_000


def recreate_database() -> None:
    env = pg_env()
    name = env["PGDATABASE"]
    subprocess.run(["dropdb", "--if-exists", "--force", name], check=True, env=env)
    subprocess.run(["createdb", name], check=True, env=env)
    from django.core.management import call_command
    from django.db import connections

    connections.close_all()
    call_command("migrate", verbosity=0)


def build(n: int):
    """N users, each with a funded wallet and one active session started a minute ago."""
    from django.db import connection
    from django.utils import timezone

    from accounts.models import User
    from marketplace.models import Category, Service
    from streaming.models import StreamingSession
    from wallets import ledger
    from wallets.models import Account, AccountKind, Hold, SystemAccount, TransactionKind

    usdc = ledger.asset_get("USDC")
    vendors = User.objects.bulk_create(
        User(email=f"vendor-{v}@bench.example", name=f"Vendor {v}", role="vendor") for v in range(100)
    )
    category = Category.objects.filter(parent__isnull=True).first()
    services = Service.objects.bulk_create(
        Service(vendor=v, name="Bench stream", category=category, rate=USDC, unit="per_minute", token="USDC")
        for v in vendors
    )
    vendor_accounts = Account.objects.bulk_create(Account(kind=AccountKind.USER, owner=v, asset=usdc) for v in vendors)
    users = User.objects.bulk_create(User(email=f"user-{u}@bench.example", name=f"User {u}") for u in range(n))
    accounts = Account.objects.bulk_create(Account(kind=AccountKind.USER, owner=u, asset=usdc) for u in users)
    custody = ledger.system_account(SystemAccount.CUSTODY, usdc)
    ledger.post_batch(
        [
            ledger.TxSpec(kind=TransactionKind.DEPOSIT, entries=[(custody.pk, -100 * USDC), (a.pk, 100 * USDC)])
            for a in accounts
        ]
    )
    started = timezone.now() - timedelta(seconds=60)
    holds = Hold.objects.bulk_create(Hold(account=a, amount=0, reference=f"bench:{a.pk}") for a in accounts)
    ledger.post_batch(
        [
            ledger.TxSpec(
                kind=TransactionKind.CHARGE, entries=[], hold_changes=[ledger.HoldChange(h.pk, h.account_id, USDC)]
            )
            for h in holds
        ]
    )
    StreamingSession.objects.bulk_create(
        StreamingSession(
            user=u,
            vendor=vendors[i % 100],
            service=services[i % 100],
            asset=usdc,
            rate=USDC,
            unit="per_minute",
            payer_account=a,
            payee_account=vendor_accounts[i % 100],
            hold=h,
            start_time=started,
            charged_until=started,
            last_heartbeat_at=started + timedelta(seconds=60),
        )
        for i, (u, a, h) in enumerate(zip(users, accounts, holds, strict=True))
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        # Flush what building wrote, so that no checkpoint of it lands inside the measurement
        # (the floor, the naive way and the sweep all start from here).
        cursor.execute("CHECKPOINT")
    return started + timedelta(seconds=60)


class Written(NamedTuple):
    """What one sweep wrote to the database (every user table, their indexes and TOAST)."""

    inserted: int
    updated: int
    table_bytes: int  # growth of the tables, indexes included
    wal_bytes: int

    def per_session(self, n: int) -> str:
        rows = (self.inserted + self.updated) / n
        return (
            f"{rows:.2f} rows written per charged session ({self.inserted / n:.2f} inserted, "
            f"{self.updated / n:.2f} updated), {self.table_bytes / n:.0f} bytes of table growth and "
            f"{self.wal_bytes / n:.0f} bytes of WAL per session"
        )

    def per_day(self, n: int, sessions: int = 100_000, period_s: int = 60) -> str:
        sweeps = 86_400 // period_s
        rows = self.inserted / n * sessions * sweeps
        grown = self.table_bytes / n * sessions * sweeps
        return (
            f"{sessions:,} sessions for a day ({sweeps} sweeps): {rows:,.0f} rows added, "
            f"{grown / 2**30:.1f} GiB of tables and indexes"
        )


_COUNTERS = (
    "SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), "
    "coalesce(sum(pg_total_relation_size(relid)), 0), pg_current_wal_lsn() FROM pg_stat_user_tables"
)


def _counters() -> tuple:
    """The database's write counters, with this connection's pending statistics flushed first."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(1.5)  # the flush happens once the backend is idle
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(_COUNTERS)
        return cursor.fetchone()


def _written(before: tuple, after: tuple) -> Written:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(%s, %s)", [after[3], before[3]])
        (wal,) = cursor.fetchone()
    return Written(after[0] - before[0], after[1] - before[1], after[2] - before[2], int(wal))


def time_sweep(n: int) -> tuple[float, Written]:
    from streaming.models import StreamingSession
    from streaming.sweep import sweep

    recreate_database()
    now = build(n)
    before = _counters()
    began = time.perf_counter()
    result = sweep(now=now)
    elapsed = time.perf_counter() - began
    written = _written(before, _counters())
    assert result.charged == n, result
    assert StreamingSession.objects.filter(total_cost=USDC).count() == n
    return elapsed, written


def _sweep_shard(shard: int, shards: int, now, start, done) -> None:
    setup_django()
    from django.db import connection

    from streaming.sweep import sweep

    connection.ensure_connection()
    start.wait()
    result = sweep(now=now, shard=shard, shards=shards)
    done.put(result.charged)


def time_sharded_sweep(n: int, shards: int) -> float:
    """The same sweep split into shards, each in its own process at the same time (as Celery
    workers run them): wall-clock time from the start signal until the last shard is done."""
    import multiprocessing

    recreate_database()
    now = build(n)
    close_connections_before_fork()
    start, done = multiprocessing.Event(), multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=_sweep_shard, args=(shard, shards, now, start, done)) for shard in range(shards)
    ]
    for process in processes:
        process.start()
    time.sleep(3)  # let every process set Django up and connect before the clock starts
    began = time.perf_counter()
    start.set()
    charged = sum(done.get() for _ in processes)
    elapsed = time.perf_counter() - began
    for process in processes:
        process.join()
    assert charged == n, charged
    return elapsed


def time_naive(n: int) -> float:
    """What a straightforward implementation does: one transaction per session, row by row."""
    from django.db import transaction
    from django.db.models import F

    from streaming import pricing
    from streaming.models import StreamingSession
    from wallets import ledger
    from wallets.models import Account, Entry, LedgerTransaction, SystemAccount

    recreate_database()
    now = build(n)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, ledger.asset_get("USDC"))
    ids = list(StreamingSession.objects.values_list("id", flat=True))
    began = time.perf_counter()
    for session_id in ids:
        with transaction.atomic():
            session = StreamingSession.objects.select_for_update().get(pk=session_id)
            due = pricing.time_due(
                rate=session.rate, unit_ms=60_000, elapsed_ms=int((now - session.start_time).total_seconds() * 1000)
            )
            charge = due - session.metered_cost
            fee = pricing.platform_fee(charge, 1000)
            accounts = list(
                Account.objects.select_for_update()
                .filter(pk__in=[session.payer_account_id, session.payee_account_id, revenue.pk])
                .order_by("pk")
            )
            assert accounts
            tx = LedgerTransaction.objects.create(kind="charge", reference=f"naive:{session.session_id}")
            Entry.objects.bulk_create(
                [
                    Entry(
                        transaction=tx,
                        created_at=tx.created_at,
                        account_id=session.payer_account_id,
                        asset_id=session.asset_id,
                        amount=-charge,
                    ),
                    Entry(
                        transaction=tx,
                        created_at=tx.created_at,
                        account_id=session.payee_account_id,
                        asset_id=session.asset_id,
                        amount=charge - fee,
                    ),
                    Entry(
                        transaction=tx,
                        created_at=tx.created_at,
                        account_id=revenue.pk,
                        asset_id=session.asset_id,
                        amount=fee,
                    ),
                ]
            )
            Account.objects.filter(pk=session.payer_account_id).update(balance=F("balance") - charge)
            Account.objects.filter(pk=session.payee_account_id).update(balance=F("balance") + charge - fee)
            Account.objects.filter(pk=revenue.pk).update(balance=F("balance") + fee)
            session.metered_cost += charge
            session.total_cost += charge
            session.charged_until = now
            session.save(update_fields=["metered_cost", "total_cost", "charged_until"])
    return time.perf_counter() - began


def time_floor(n: int) -> float:
    """One UPDATE of the users' balance rows and one INSERT of a row per session: the least work."""
    from django.db import connection, transaction

    recreate_database()
    build(n)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_floor (session_id bigint, amount numeric(38,0))")
    began = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE wallets_account a SET balance = a.balance - 1000000 FROM streaming_streamingsession s "
            "WHERE a.id = s.payer_account_id"
        )
        cursor.execute("INSERT INTO bench_floor SELECT id, 1000000 FROM streaming_streamingsession")
    return time.perf_counter() - began


_MODEL_WRITES = [
    # Every active session's charge of 1 USDC, with what a sweep writes for it and nothing decided:
    # one ledger transaction, a debit per session (its charge record), a credit per vendor, the
    # fee, the balances, the holds, the sessions.
    """CREATE TEMP TABLE bench_charge AS
    SELECT s.id, s.payer_account_id AS payer, s.payee_account_id AS payee, s.asset_id, s.hold_id,
           s.charged_until, 1000000::numeric AS amount
    FROM streaming_streamingsession s WHERE s.status = 'active'""",
    """INSERT INTO wallets_ledgertransaction (id, kind, reference, memo, metadata, created_at)
    VALUES (nextval(pg_get_serial_sequence('wallets_ledgertransaction', 'id')), 'charge', NULL, 'Metered sessions',
            '{}', now())""",
    """INSERT INTO wallets_entry (transaction_id, account_id, asset_id, amount, session_id, billed_from, billed_until,
                                  fee, created_at)
    SELECT currval(pg_get_serial_sequence('wallets_ledgertransaction', 'id')), payer, asset_id, -amount, id,
           charged_until, now(), 100000, now()
    FROM bench_charge
    UNION ALL SELECT currval(pg_get_serial_sequence('wallets_ledgertransaction', 'id')), payee, asset_id,
                     sum(amount - 100000), NULL, NULL, NULL, NULL, now() FROM bench_charge GROUP BY payee, asset_id
    UNION ALL SELECT currval(pg_get_serial_sequence('wallets_ledgertransaction', 'id')), %(revenue)s, asset_id,
                     sum(100000), NULL, NULL, NULL, NULL, now() FROM bench_charge GROUP BY asset_id""",
    """UPDATE wallets_account a SET balance = a.balance + d.delta
    FROM (SELECT payer AS id, -sum(amount) AS delta FROM bench_charge GROUP BY payer
          UNION ALL SELECT payee, sum(amount - 100000) FROM bench_charge GROUP BY payee
          UNION ALL SELECT %(revenue)s, sum(100000) FROM bench_charge) d
    WHERE a.id = d.id""",
    """UPDATE wallets_hold h SET updated_at = now() FROM bench_charge c WHERE h.id = c.hold_id""",
    """UPDATE streaming_streamingsession s SET charged_until = now(), metered_cost = s.metered_cost + c.amount,
        total_cost = s.total_cost + c.amount, charge_count = s.charge_count + 1, updated_at = now()
    FROM bench_charge c WHERE s.id = c.id""",
]


def time_model_writes(n: int) -> float:
    """Only the writes of one sweep of this data model, one plain SQL statement each, then commit:
    what no sweep of it can go below, however it decides."""
    from django.db import connection, transaction

    from wallets import ledger
    from wallets.models import SystemAccount

    recreate_database()
    build(n)
    revenue = ledger.system_account(SystemAccount.PLATFORM_REVENUE, ledger.asset_get("USDC")).pk
    began = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in _MODEL_WRITES:
            cursor.execute(statement, {"revenue": revenue})
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--naive", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=0, help="also time the largest size split into N processes")
    parser.add_argument(
        "--model-writes", action="store_true", help="also time only the writes of this data model, in plain SQL"
    )
    args = parser.parse_args()
    setup_django()

    sweeps = {n: time_sweep(n) for n in args.sizes}
    sharded = time_sharded_sweep(max(args.sizes), args.shards) if args.shards > 1 else None
    largest = max(args.sizes)
    model_writes = time_model_writes(largest) if args.model_writes else None
    floor = time_floor(largest)
    naive = time_naive(args.naive)
    naive_rate = args.naive / naive
    print(f"load average before the last measurement: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"floor (1 UPDATE + 1 INSERT), {largest:,} sessions: {floor:8.2f} s  {largest / floor:10,.0f} sessions/s")
    print(f"naive (ORM per session), {args.naive:,} sessions:   {naive:8.2f} s  {naive_rate:10,.0f} sessions/s")
    if model_writes is not None:
        line = f"this data model's writes alone (plain SQL), {largest:,} sessions: {model_writes:8.2f} s"
        print(f"{line}, {model_writes / floor:4.2f}x the floor's time")
    for n, (elapsed, written) in sweeps.items():
        rate = n / elapsed
        line = f"sweep, {n:,} sessions:                  {elapsed:8.2f} s  {rate:10,.0f} sessions/s"
        line += f"   {rate / naive_rate:6.1f}x the naive rate"
        if n == largest:
            line += f", {elapsed / floor:4.2f}x the floor's time"
        print(line)
        print(f"  wrote {written.per_session(n)}")
    largest_written = sweeps[largest][1]
    print(f"at that rate, {largest_written.per_day(largest)}")
    if sharded is not None:
        rate = largest / sharded
        line = f"sweep, {largest:,} sessions in {args.shards} shards at once: {sharded:8.2f} s"
        line += f"  {rate:10,.0f} sessions/s"
        print(f"{line}   {rate / naive_rate:6.1f}x the naive rate, {sharded / floor:4.2f}x the floor's time")
    # The ratio to the naive way at the size it was measured at when the sweep was too (the issue
    # asks it of 10,000 sessions), else at the largest size.
    compared = args.naive if args.naive in sweeps else largest
    versus_naive = (compared / sweeps[compared][0]) / naive_rate
    elapsed = sweeps[largest][0]
    print(
        f"sweep: {largest} sessions in {elapsed:.2f} s; floor {floor:.2f} s; {elapsed / floor:.2f} x floor; "
        f"{versus_naive:.1f} x naive"
    )


if __name__ == "__main__":
    main()
