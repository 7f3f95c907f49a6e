"""Dashboard endpoints on a million ledger entries (or ten), beside one indexed SELECT of a single row.

    .venv/bin/python bench/dashboards.py [--entries 1000000] [--requests 60] [--rebuild] [--rollup-from-nothing]

Builds (once per size, in a database of its own; --rebuild starts over) a year of history with
set-based SQL: 10,000 users and 500 vendors with their wallets, 2,000 services, ~100,000 sessions
(~1,000,000 with --entries 10000000) of 3 charges each (every charge a ledger transaction of three
entries, the payer's debit carrying its session), deposits and withdrawals. One vendor hosts a
tenth of all sessions and one user opened a hundredth: they are timed as the worst cases, beside a
typical user and vendor. Then brings the dashboards' rollup up to date (the beat task's work,
timed: the whole ledger the first time, or with --rollup-from-nothing). Then, with a minute of
heavy traffic in the rollup's tail (10,002 new entries, rolled back afterwards), times every
endpoint and one incremental run of the rollup over them; the same with the ten seconds of it
(1,668 entries) that the beat, every 10 s, leaves at most; then every endpoint again with the
rollup up to date. Endpoints are requested through Django's test client (routing, JWT, DRF, JSON
rendering included); p50/p95 per endpoint are printed next to `SELECT * FROM wallets_entry WHERE
id = %s`; the staff overview is timed computed (its one-minute cache emptied before each request).
Goal (issues 7 and 21): p95 under 100 ms per endpoint. The last line sums it up for a script:
`dashboards: worst p95 X ms (ENDPOINT) at N entries; tail worst p95 Y ms (ENDPOINT) ...` (a minute
of heavy traffic in the tail, then ten seconds of it).
Uses its own database (BENCH_DATABASE_URL, default .../paygo_bench_dash[_<entries>]).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import time
from urllib.parse import urlparse

from _setup import database_url, production_like, setup_django

# Thousands of timed requests from one account and address: the reads' rate limits out of the way.
for _budget in ("RATELIMIT_READS_PER_USER", "RATELIMIT_READS_PER_IP"):
    os.environ.setdefault(_budget, "100000000/m")
# Requests go through Django's test client, whose host is "testserver": production_like names only
# 127.0.0.1 and localhost, and every request was a 400 (DisallowedHost).
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")


DEFAULT_ENTRIES = 1_000_000
COLD = "__cold__"
GOAL_MS = 100
ADMIN = "/api/v1/dashboard/admin/overview"
USERS, VENDORS, SERVICES_PER_VENDOR, CHARGES_PER_SESSION = 10_000, 500, 4, 3
DEPOSITS_PER_USER, WITHDRAWING_USERS = 4, 5_000


def recreate_database() -> None:
    url = urlparse(database_url())
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    args = ["-h", url.hostname or "127.0.0.1", "-U", url.username or "postgres"]
    subprocess.run(["dropdb", *args, "--if-exists", url.path.lstrip("/")], check=True, env=env)


def sessions_for(entries: int) -> int:
    rest = entries - USERS * DEPOSITS_PER_USER * 2 - WITHDRAWING_USERS * 2
    return max(1, rest // (CHARGES_PER_SESSION * 3))


def build(entries: int) -> None:
    """A year of ledger history, written with a few set-based statements."""
    from django.db import connection, transaction

    from wallets.models import Account, Asset, SystemAccount

    sessions = sessions_for(entries)
    usdc = Asset.objects.get(code="USDC").pk
    revenue = Account.objects.get(system_code=SystemAccount.PLATFORM_REVENUE, asset_id=usdc).pk
    custody = Account.objects.get(system_code=SystemAccount.CUSTODY, asset_id=usdc).pk
    in_flight = Account.objects.get(system_code=SystemAccount.WITHDRAWALS_IN_FLIGHT, asset_id=usdc).pk
    params = {
        "users": USERS,
        "vendors": VENDORS,
        "per_vendor": SERVICES_PER_VENDOR,
        "services": VENDORS * SERVICES_PER_VENDOR,
        "sessions": sessions,
        "charges": CHARGES_PER_SESSION,
        "deposits": DEPOSITS_PER_USER,
        "withdrawing": WITHDRAWING_USERS,
        "usdc": usdc,
        "revenue": revenue,
        "custody": custody,
        "in_flight": in_flight,
    }
    steps = [
        ("seed", "SELECT setseed(0.42)"),
        (
            "users and vendors",
            """
            INSERT INTO accounts_user (password, is_superuser, email, name, role, phone, is_verified, is_active,
                                       is_staff, wallet_address, date_joined)
            SELECT '!', false, 'bench-dash-' || r || g || '@example.com', 'Bench ' || r || ' ' || g,
                   CASE r WHEN 'u' THEN 'user' ELSE 'vendor' END, '', true, true, false, '',
                   now() - interval '400 days'
            FROM (SELECT 'u' AS r, generate_series(1, %(users)s) AS g
                  UNION ALL SELECT 'v', generate_series(1, %(vendors)s)) AS people
            """,
        ),
        (
            "staff",
            """
            INSERT INTO accounts_user (password, is_superuser, email, name, role, phone, is_verified, is_active,
                                       is_staff, wallet_address, date_joined)
            VALUES ('!', true, 'bench-dash-staff@example.com', 'Bench staff', 'admin', '', true, true, true, '', now())
            """,
        ),
        (
            "wallets",
            """
            INSERT INTO wallets_account (kind, balance, held, created_at, owner_id, asset_id)
            SELECT 'user', 0, 0, now(), id, %(usdc)s FROM accounts_user
            WHERE email LIKE 'bench-dash-%%' AND role IN ('user', 'vendor')
            """,
        ),
        (
            "maps",
            """
            CREATE TEMP TABLE bu AS
            SELECT row_number() OVER (ORDER BY u.id) AS n, u.id AS user_id, a.id AS account_id
            FROM accounts_user u JOIN wallets_account a ON a.owner_id = u.id
            WHERE u.email LIKE 'bench-dash-u%%';
            CREATE UNIQUE INDEX ON bu (n);
            CREATE TEMP TABLE bv AS
            SELECT row_number() OVER (ORDER BY u.id) AS n, u.id AS user_id, a.id AS account_id
            FROM accounts_user u JOIN wallets_account a ON a.owner_id = u.id
            WHERE u.email LIKE 'bench-dash-v%%';
            CREATE UNIQUE INDEX ON bv (n);
            """,
        ),
        (
            "services",
            """
            INSERT INTO marketplace_service (name, description, type, rate, token, unit, minimum_charge, free_seconds,
                                             metadata, tags, is_active, created_at, updated_at, price_version,
                                             category_id, vendor_id)
            SELECT 'Bench service ' || v.n || '-' || k, '', 'other', 1000 + (v.n * 37 + k * 911) %% 9000, 'USDC',
                   'per_minute', 0, 0, '{}', '[]', true, now() - interval '390 days', now(), 1,
                   cats.ids[1 + (v.n * 4 + k) %% array_length(cats.ids, 1)], v.user_id
            FROM bv v CROSS JOIN generate_series(0, %(per_vendor)s - 1) k
            CROSS JOIN (SELECT array_agg(id ORDER BY id) AS ids FROM marketplace_category
                        WHERE parent_id IS NULL) cats;
            CREATE TEMP TABLE bs AS
            SELECT row_number() OVER (ORDER BY s.id) AS n, s.id AS service_id, s.rate, s.vendor_id,
                   v.account_id AS vendor_account_id
            FROM marketplace_service s JOIN bv v ON v.user_id = s.vendor_id
            WHERE s.name LIKE 'Bench service %%';
            CREATE UNIQUE INDEX ON bs (n);
            """,
        ),
        (
            "session plan",
            """
            -- Vendor 1 hosts every tenth session, user 1 opens every hundredth: the timed worst cases.
            CREATE TEMP TABLE bplan AS
            SELECT g,
                   CASE WHEN g %% 100 = 1 THEN 1 ELSE 1 + (g::bigint * 7919) %% %(users)s END AS user_n,
                   CASE WHEN g %% 10 = 0 THEN 1 + (g / 10) %% %(per_vendor)s
                        ELSE 1 + (g::bigint * 104729) %% %(services)s END AS service_n,
                   date_trunc('second', now() - random() * interval '365 days') AS start_time
            FROM generate_series(1, %(sessions)s) g
            """,
        ),
        (
            "holds",
            """
            INSERT INTO wallets_hold (amount, reference, status, created_at, updated_at, account_id)
            SELECT 0, 'bench-session:' || p.g, 'released', p.start_time, p.start_time, u.account_id
            FROM bplan p JOIN bu u ON u.n = p.user_n
            """,
        ),
        (
            "sessions",
            """
            INSERT INTO streaming_streamingsession (
                session_id, kind, status, stop_reason, start_time, end_time, rate, unit, free_seconds,
                minimum_charge, session_fee, charged_until, metered_cost, total_cost, charge_count, usage_quantity,
                stop_at_reason, alert_level, total_usage_seconds, client_info, quality_metrics, last_heartbeat_at,
                created_at, updated_at, asset_id, hold_id, payee_account_id, payer_account_id, service_id, user_id,
                vendor_id)
            SELECT gen_random_uuid(), 'stream', 'completed', 'user', p.start_time,
                   p.start_time + %(charges)s * interval '1 minute', s.rate, 'per_minute', 0, 0, 0,
                   p.start_time + %(charges)s * interval '1 minute', %(charges)s * s.rate, %(charges)s * s.rate,
                   %(charges)s, 0, '', 0, %(charges)s * 60, '{}', '[]',
                   p.start_time + %(charges)s * interval '1 minute', p.start_time, p.start_time, %(usdc)s, h.id,
                   s.vendor_account_id, u.account_id, s.service_id, u.user_id, s.vendor_id
            FROM bplan p JOIN bu u ON u.n = p.user_n JOIN bs s ON s.n = p.service_n
            JOIN wallets_hold h ON h.reference = 'bench-session:' || p.g
            """,
        ),
        (
            "charge transactions",
            """
            CREATE TEMP TABLE bsm AS
            SELECT ss.id AS session_pk, ss.session_id, ss.start_time, ss.rate, ss.payer_account_id,
                   ss.payee_account_id, ss.service_id, ss.vendor_id, ss.user_id
            FROM streaming_streamingsession ss JOIN wallets_hold h ON h.id = ss.hold_id
            WHERE h.reference LIKE 'bench-session:%%';
            INSERT INTO wallets_ledgertransaction (kind, reference, memo, metadata, created_at)
            SELECT 'charge', 'charge:' || m.session_id || ':' || k, 'Bench service',
                   jsonb_build_object('sessionId', m.session_id, 'serviceId', m.service_id, 'vendorId', m.vendor_id,
                                      'userId', m.user_id, 'serviceName', 'Bench service', 'kind', 'stream'),
                   m.start_time + k * interval '1 minute'
            FROM bsm m CROSS JOIN generate_series(1, %(charges)s) k;
            CREATE TEMP TABLE btx AS
            SELECT t.id AS tx_id, t.created_at, m.session_pk, m.rate, m.payer_account_id, m.payee_account_id
            FROM bsm m CROSS JOIN generate_series(1, %(charges)s) k
            JOIN wallets_ledgertransaction t ON t.reference = 'charge:' || m.session_id || ':' || k;
            """,
        ),
        (
            "charge entries",
            """
            INSERT INTO wallets_entry (transaction_id, account_id, asset_id, amount, session_id, billed_from,
                                       billed_until, fee, created_at)
            SELECT tx_id, payer_account_id, %(usdc)s, -rate, session_pk, created_at - interval '1 minute', created_at,
                   floor(rate / 10), created_at
            FROM btx
            UNION ALL SELECT tx_id, payee_account_id, %(usdc)s, rate - floor(rate / 10), NULL, NULL, NULL, NULL,
                             created_at FROM btx
            UNION ALL SELECT tx_id, %(revenue)s, %(usdc)s, floor(rate / 10), NULL, NULL, NULL, NULL, created_at FROM btx
            """,
        ),
        (
            "deposits",
            """
            INSERT INTO wallets_ledgertransaction (kind, reference, memo, metadata, created_at)
            SELECT 'deposit', 'deposit:bench:' || u.n || ':' || d, 'Bench deposit', '{}',
                   now() - random() * interval '380 days'
            FROM bu u CROSS JOIN generate_series(1, %(deposits)s) d;
            INSERT INTO wallets_entry (transaction_id, account_id, asset_id, amount, created_at)
            SELECT t.id, x.account_id, %(usdc)s, x.amount, t.created_at
            FROM bu u CROSS JOIN generate_series(1, %(deposits)s) d
            JOIN wallets_ledgertransaction t ON t.reference = 'deposit:bench:' || u.n || ':' || d
            CROSS JOIN LATERAL (VALUES (%(custody)s::bigint, -1000000000::numeric),
                                       (u.account_id, 1000000000::numeric)) AS x(account_id, amount);
            """,
        ),
        (
            "withdrawals",
            """
            INSERT INTO wallets_ledgertransaction (kind, reference, memo, metadata, created_at)
            SELECT 'withdrawal', 'withdrawal:bench:' || u.n, 'Bench withdrawal', '{}',
                   now() - random() * interval '365 days'
            FROM bu u WHERE u.n <= %(withdrawing)s;
            INSERT INTO wallets_entry (transaction_id, account_id, asset_id, amount, created_at)
            SELECT t.id, x.account_id, %(usdc)s, x.amount, t.created_at
            FROM bu u JOIN wallets_ledgertransaction t ON t.reference = 'withdrawal:bench:' || u.n
            CROSS JOIN LATERAL (VALUES (u.account_id, -10000000::numeric),
                                       (%(in_flight)s::bigint, 10000000::numeric)) AS x(account_id, amount)
            WHERE u.n <= %(withdrawing)s;
            INSERT INTO wallets_withdrawal (id, kind, amount, to_address, status, tx_hash, nonce, attempts,
                                            refusals, next_attempt_at, last_error, created_at, updated_at,
                                            asset_id, user_id)
            SELECT gen_random_uuid(), 'withdrawal', 10000000, '0x' || lpad(to_hex(u.n), 64, '0'),
                   CASE WHEN u.n <= 50 THEN 'pending' ELSE 'sent' END, '', '', 0, 0, now(), '',
                   now() - random() * interval '365 days', now(), %(usdc)s, u.user_id
            FROM bu u WHERE u.n <= %(withdrawing)s;
            """,
        ),
        (
            "balances",
            """
            UPDATE wallets_account a SET balance = e.total
            FROM (SELECT account_id, SUM(amount) AS total FROM wallets_entry GROUP BY account_id) e
            WHERE a.id = e.account_id AND a.balance <> e.total
            """,
        ),
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        for name, sql in steps:
            started = time.perf_counter()
            cursor.execute(sql, params)
            print(f"  built {name:<20} {time.perf_counter() - started:6.1f} s", flush=True)
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute("VACUUM ANALYZE")
        print(f"  vacuum analyze           {time.perf_counter() - started:6.1f} s", flush=True)


# Heavy traffic: the last `charges` charges again, now (three entries each; each payer's debit is its
# charge). A minute of it is 3,334 charges (10,002 entries); the beat's 10 s leave a sixth of that.
MINUTE, TEN_SECONDS = 3_334, 556
TRAFFIC_SQL = """
CREATE TEMP TABLE bcopy ON COMMIT DROP AS
SELECT id AS old_id, nextval(pg_get_serial_sequence('wallets_ledgertransaction', 'id')) AS new_id
FROM wallets_ledgertransaction WHERE kind = 'charge' ORDER BY id DESC LIMIT {charges};
INSERT INTO wallets_ledgertransaction (id, kind, reference, memo, metadata, created_at)
SELECT c.new_id, t.kind, 'bench-traffic:' || c.new_id, t.memo, t.metadata, now() - random() * interval '1 minute'
FROM bcopy c JOIN wallets_ledgertransaction t ON t.id = c.old_id;
INSERT INTO wallets_entry (transaction_id, account_id, asset_id, amount, session_id, billed_from, billed_until, fee,
                           created_at)
SELECT c.new_id, e.account_id, e.asset_id, e.amount, e.session_id, e.billed_from, e.billed_until, e.fee, t.created_at
FROM bcopy c JOIN wallets_entry e ON e.transaction_id = c.old_id JOIN wallets_ledgertransaction t ON t.id = c.new_id;
"""


ROLLUP_MODELS = (
    "ChargeBucket",
    "CustomerTotal",
    "LedgerBucket",
    "RunningSession",
    "ServiceBucket",
    "SessionBucket",
    "UserBucket",
)


def rollup_up_to_date(*, from_nothing: bool) -> tuple[str, float]:
    """Run the beat task's work once (the whole ledger when the rollup is empty, or emptied first)."""
    from django.apps import apps
    from django.db import connection

    from dashboards.models import Watermark
    from dashboards.rollup import rollup_advance

    models = [apps.get_model("dashboards", name) for name in ROLLUP_MODELS]
    if from_nothing:
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(model._meta.db_table for model in models)}")
        Watermark.objects.update(entry_id=0, session_id=0)
    before = Watermark.objects.filter(pk=1).values_list("entry_id", flat=True).first() or 0
    started = time.perf_counter()
    mark = rollup_advance()
    seconds = time.perf_counter() - started
    if before == 0:
        with connection.cursor() as cursor:  # as autovacuum would, soon after: statistics for the planner
            for model in models:
                cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    rows = ", ".join(f"{model.objects.count():,} {model._meta.verbose_name}s" for model in models)
    what = f"entries {before + 1:,}..{mark.entry_id:,}" if mark.entry_id > before else "nothing new"
    return f"{what}; rows: {rows}", seconds


def incremental_run(timed: list, requests: int, charges: int) -> tuple[str, list]:
    """One run of the rollup over `charges` new charges (3 entries each), and each of `timed` called
    with that tail unsummed, then everything rolled back. Returns the lines to print and (name, p50,
    p95) per call."""
    from django.db import connection, transaction

    from dashboards.rollup import rollup_advance

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(TRAFFIC_SQL.format(charges=int(charges)))
        with_tail = [(name, *time_calls(call, requests)) for name, call in timed]
        started = time.perf_counter()
        rollup_advance()
        seconds = time.perf_counter() - started
        transaction.set_rollback(True)
    lines = [
        f"one rollup run over {charges * 3:,} new entries: {seconds * 1000:.0f} ms",
        f"with those {charges * 3:,} entries in the tail:",
    ]
    lines += [f"  {name:44}{p50:9.2f}{p95:9.2f}{over(p95)}" for name, p50, p95 in with_tail]
    return "\n".join(lines), with_tail


def over(p95: float) -> str:
    return "" if p95 < GOAL_MS else "   over the 100 ms goal"


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def time_calls(call, requests: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--rollup-from-nothing", action="store_true", help="empty the rollup first, and time it")
    args = parser.parse_args()
    # Each size has a database of its own (BENCH_DATABASE_URL overrides): paygo_bench_dash for the
    # default million, paygo_bench_dash_10000000 for ten million.
    production_like("paygo_bench_dash" if args.entries == DEFAULT_ENTRIES else f"paygo_bench_dash_{args.entries}")
    if args.rebuild:
        recreate_database()
    setup_django(migrate=True)
    from django.core.cache import cache
    from django.db import connection
    from django.utils import timezone
    from rest_framework.test import APIClient

    from accounts.models import User
    from accounts.services import token_pair_for
    from dashboards.health import ledger_health_check
    from dashboards.periods import parse_tz, window
    from dashboards.selectors import admin_overview_cache_key
    from streaming.models import StreamingSession
    from wallets.models import Entry

    if not User.objects.filter(email="bench-dash-staff@example.com").exists():
        print(f"Building ~{args.entries:,} ledger entries ({sessions_for(args.entries):,} sessions)...", flush=True)
        build(args.entries)
    summed, rollup_seconds = rollup_up_to_date(from_nothing=args.rollup_from_nothing)
    print(f"Rollup brought up to date in {rollup_seconds:.1f} s ({summed})", flush=True)
    entries = Entry.objects.count()
    user = User.objects.get(email="bench-dash-u1@example.com")
    vendor = User.objects.get(email="bench-dash-v1@example.com")
    typical_user = User.objects.get(email="bench-dash-u2@example.com")
    typical_vendor = User.objects.get(email="bench-dash-v2@example.com")
    staff = User.objects.get(email="bench-dash-staff@example.com")
    user_sessions = StreamingSession.objects.filter(user=user).count()
    vendor_sessions = StreamingSession.objects.filter(vendor=vendor).count()
    a_session = StreamingSession.objects.filter(user=user).values_list("session_id", flat=True).first()

    # The conservation check runs on a schedule, and the dashboards show its latest result. Timed
    # here on its own (a first run on this database reads the whole ledger once).
    started = time.perf_counter()
    health = ledger_health_check()
    health_ms = (time.perf_counter() - started) * 1000

    def client(who):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_for(who).access}")
        return api

    as_user, as_vendor, as_staff = client(user), client(vendor), client(staff)
    typical = {
        "user": (typical_user, StreamingSession.objects.filter(user=typical_user).count()),
        "vendor": (typical_vendor, StreamingSession.objects.filter(vendor=typical_vendor).count()),
    }
    endpoints = [
        (
            f"typical user ({typical['user'][1]} sessions) overview",
            client(typical_user),
            "/api/v1/dashboard/user/overview",
            {},
        ),
        (
            f"typical vendor ({typical['vendor'][1]} sessions) overview",
            client(typical_vendor),
            "/api/v1/dashboard/vendor/overview",
            {},
        ),
        ("heavy user: user/overview", as_user, "/api/v1/dashboard/user/overview", {}),
        ("heavy user: user/overview ?period=day", as_user, "/api/v1/dashboard/user/overview", {"period": "day"}),
        ("heavy user: user/sessions", as_user, "/api/v1/dashboard/user/sessions", {}),
        ("heavy user: user/sessions/:id", as_user, f"/api/v1/dashboard/user/sessions/{a_session}", {}),
        ("heavy user: wallet/analytics", as_user, "/api/v1/wallet/analytics", {}),
        ("heavy vendor: vendor/overview", as_vendor, "/api/v1/dashboard/vendor/overview", {}),
        ("heavy vendor: vendor/earnings", as_vendor, "/api/v1/dashboard/vendor/earnings", {}),
        (
            "heavy vendor: vendor/earnings ?period=month",
            as_vendor,
            "/api/v1/dashboard/vendor/earnings",
            {"period": "month"},
        ),
        ("admin/overview (cached for a minute)", as_staff, "/api/v1/dashboard/admin/overview", {}),
        ("admin/overview, computed", as_staff, "/api/v1/dashboard/admin/overview", {COLD: True}),
        (
            "admin/overview ?period=week, computed",
            as_staff,
            "/api/v1/dashboard/admin/overview",
            {COLD: True, "period": "week"},
        ),
        (
            "admin/overview ?period=month, computed",
            as_staff,
            "/api/v1/dashboard/admin/overview",
            {COLD: True, "period": "month"},
        ),
    ]

    ids = list(Entry.objects.order_by("?").values_list("id", flat=True)[:1000])
    rng = random.Random(1)

    def one_row():
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM wallets_entry WHERE id = %s", [rng.choice(ids)])
            cursor.fetchone()

    def get(api, path, params):
        if params.get(COLD):
            # What a staff request pays: the figures computed (health stays scheduled).
            params = {k: v for k, v in params.items() if k != COLD}
            tz, now = parse_tz("UTC"), timezone.now()
            cache.delete(admin_overview_cache_key(window(period=params.get("period", "day"), tz=tz, now=now)))
        response = api.get(path, params)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])

    calls = [
        (name, lambda api=api, path=path, params=params: get(api, path, params))
        for name, api, path, params in endpoints
    ]
    traffic, with_tail = incremental_run(calls, max(20, args.requests // 3), MINUTE)
    beat, with_beat_tail = incremental_run(calls, max(20, args.requests // 3), TEN_SECONDS)
    base_p50, base_p95 = time_calls(one_row, max(200, args.requests))
    print(
        f"\n{entries:,} ledger entries; timed user: {user_sessions:,} sessions; timed vendor: {vendor_sessions:,} "
        f"sessions; ledger health {'OK' if health['healthy'] else 'BROKEN'}"
    )
    print(f"{'':46}{'p50 ms':>9}{'p95 ms':>9}{'p95 / baseline':>16}")
    print(f"{'SELECT one entry by id (baseline)':46}{base_p50:9.2f}{base_p95:9.2f}{1:16.0f}")
    timed = []
    for name, call in calls:
        p50, p95 = time_calls(call, args.requests)
        timed.append((name, p50, p95))
        print(f"{name:46}{p50:9.2f}{p95:9.2f}{p95 / base_p95:16.0f}{over(p95)}")
    print(f"{'ledger_health_check() (scheduled, once)':46}{health_ms:9.0f}")
    print(traffic)
    print(beat)
    worst, tail_worst = max(timed, key=lambda row: row[2]), max(with_tail, key=lambda row: row[2])
    beat_worst = max(with_beat_tail, key=lambda row: row[2])
    print(
        f"dashboards: worst p95 {worst[2]:.1f} ms ({worst[0]}) at {entries} entries; "
        f"tail worst p95 {tail_worst[2]:.1f} ms ({tail_worst[0]}) with a minute of heavy traffic unsummed, "
        f"{beat_worst[2]:.1f} ms ({beat_worst[0]}) with the ten seconds a beat every 10 s leaves"
    )


if __name__ == "__main__":
    main()
