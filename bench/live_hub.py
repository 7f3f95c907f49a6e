"""Live-cost sockets on ONE server process: ticks per socket per second, tick delay, connect time.

    .venv/bin/python bench/live_hub.py [--sizes 100 500 1000 2000] [--at-once 1000] [--seconds 20]

Builds users with an active session each on its own database (paygo_hub_bench, kept between runs
while it holds enough sessions), starts `python -m paygo.server` (Daphne, the README's production
WebSocket server) on a free port with Redis for the channel layer and cache, and runs
bench/load/sockets.py against it: each size with sockets opening 20 at a time, then --at-once
sockets opening at the same moment (clients reconnecting after a deploy). Each measurement gets a
fresh server process. The database's transactions per second during each measuring window (after
the handshakes) are counted (pg_stat_database) to show that the server's round trips do not grow
with the sockets, and the server's CPU use in the window (% of one core, from /proc), a figure
that depends less on what else the machine runs than the delays do.

Baseline, same run: one socket on an idle server.
Goal (issue 16): 2,000 sockets at >= 0.95 ticks per socket per second with p99 tick delay under
250 ms; 1,000 sockets opening at once all connected within 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/paygo_hub_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")

from _setup import ROOT, database_url, setup_django

# The project's apps before this folder's scripts: bench/dashboards.py would shadow the dashboards app.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

USDC = 1_000_000
SOCKETS = ROOT / "bench" / "load" / "sockets.py"


def build(n: int) -> None:
    """n users, each funded and with one active per-minute session (through the services)."""
    from django.db import connection

    from accounts.services import user_create
    from marketplace.models import Category, Service
    from streaming import services
    from streaming.models import SessionStatus, StreamingSession
    from wallets import ledger
    from wallets.services import ChainDeposit, deposit_credit

    have = StreamingSession.objects.filter(status=SessionStatus.ACTIVE).count()
    if have >= n:
        return
    usdc = ledger.asset_get("USDC")
    vendor = user_create(email=f"vendor-{have}@bench.example", password=None, name="Vendor", role="vendor")
    category = Category.objects.filter(parent__isnull=True).first()
    service = Service.objects.create(
        vendor=vendor, name="Bench stream", category=category, rate=USDC, unit="per_minute", token="USDC"
    )
    for i in range(have, n):
        user = user_create(email=f"user-{i}@bench.example", password=None, name=f"User {i}", role="user")
        funding = ChainDeposit.ledger_only(tx_hash=f"0x{i:064x}", token="USDC", amount=1000 * USDC)
        deposit_credit(user=user, asset=usdc, deposit=funding, source="bench")
        services.session_start(user=user, service=service)
        if i % 250 == 0:
            print(f"  built {i}/{n} sessions", file=sys.stderr)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def write_targets(n: int, path: Path) -> None:
    from accounts.services import token_pair_for
    from streaming.models import SessionStatus, StreamingSession

    sessions = StreamingSession.objects.filter(status=SessionStatus.ACTIVE).select_related("user").order_by("pk")[:n]
    with path.open("w") as out:
        for session in sessions:
            out.write(json.dumps({"token": token_pair_for(session.user).access, "sessionId": str(session.session_id)}))
            out.write("\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, log) -> subprocess.Popen:
    from django.conf import settings

    # The tokens written for the client are signed with this process's secrets.
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DEBUG": "1",
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": settings.SECRET_KEY,
        "JWT_SECRET": settings.JWT_SECRET,
        # Every socket comes from this one address: its handshakes are counted, never refused.
        "RATELIMIT_SOCKETS_PER_IP": "100000000/m",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paygo.server",
            # A listen backlog for a thousand handshakes at once (twisted's default is 50).
            "-e",
            f"tcp:port={port}:interface=127.0.0.1:backlog=2048",
            "paygo.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
            return server
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"the server did not start; see {log.name}") from None
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not answer /api/v1/health in 30 s")


def db_transactions() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time process `pid` has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def window_rates(client: subprocess.Popen, server: subprocess.Popen, seconds: float) -> tuple[float, float]:
    """(the database's transactions per second, the server's CPU use in % of one core) in the
    client's measuring window, which ends when it starts closing its sockets (a second or so before
    it exits): the handshakes, before the window, are not counted. Sampled every half second."""
    samples = []
    while client.poll() is None:
        samples.append((time.monotonic(), db_transactions(), cpu_seconds(server.pid)))
        time.sleep(0.5)
    end = time.monotonic() - 1.5
    inside = [sample for sample in samples if end - (seconds - 2) <= sample[0] <= end]
    if len(inside) < 2:
        return float("nan"), float("nan")
    (first_at, first_xacts, first_cpu), (last_at, last_xacts, last_cpu) = inside[0], inside[-1]
    elapsed = last_at - first_at
    return round((last_xacts - first_xacts) / elapsed, 1), round((last_cpu - first_cpu) / elapsed * 100, 1)


def measure(n: int, seconds: float, *, at_once: bool, workdir: Path) -> dict:
    targets, out = workdir / f"targets-{n}.jsonl", workdir / f"out-{n}-{at_once}.json"
    write_targets(n, targets)
    port = free_port()
    log = (workdir / f"server-{n}-{at_once}.log").open("w")
    server = start_server(port, log)
    try:
        command = [sys.executable, str(SOCKETS), "--url", f"ws://127.0.0.1:{port}", "--targets", str(targets)]
        command += ["--seconds", str(seconds), "--json", str(out)] + (["--open-at-once"] if at_once else [])
        client = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        # pg_stat_database is updated as backends report (about every second); each sample counts too.
        xacts, cpu = window_rates(client, server, seconds)
        if client.wait():
            raise RuntimeError(f"the socket client failed: {command}")
        figures = json.loads(out.read_text())
        figures["db_xacts_per_s"], figures["server_cpu_pct"] = xacts, cpu
        figures["load"] = Path("/proc/loadavg").read_text().split()[0]
        return figures
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


COLUMNS = (
    ("sockets", "sockets"),
    ("connected", "conn"),
    ("failed", "failed"),
    ("dropped", "dropped"),
    ("ticks_per_socket_per_s", "ticks/s"),
    ("tick_delay_p50_ms", "p50 ms"),
    ("tick_delay_p99_ms", "p99 ms"),
    ("max_gap_s", "gap s"),
    ("connect_all_s", "connect s"),
    ("client_lag_p99_ms", "client lag p99"),
    ("db_xacts_per_s", "db xacts/s"),
    ("server_cpu_pct", "server cpu%"),
    ("load", "load"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000, 2000])
    parser.add_argument("--at-once", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    setup_django(migrate=True)
    build(max([*args.sizes, args.at_once]))
    print(f"load before: {Path('/proc/loadavg').read_text().strip()}")
    print("  ".join(f"{title:>9}" for _, title in (("", "run"), *COLUMNS)))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("baseline", 1, False), *((f"ramp-{n}", n, False) for n in args.sizes)]
        if args.at_once:
            runs.append((f"at-once-{args.at_once}", args.at_once, True))
        for name, n, at_once in runs:
            figures = measure(n, args.seconds, at_once=at_once, workdir=Path(tmp))
            results[name] = figures
            print("  ".join(f"{value!s:>9}" for value in (name, *(figures.get(key) for key, _ in COLUMNS))), flush=True)
    base = results["baseline"]["ticks_per_socket_per_s"]
    for figures in results.values():
        figures["ticks_vs_baseline"] = round(figures["ticks_per_socket_per_s"] / base, 3) if base else None
    print(f"load after: {Path('/proc/loadavg').read_text().strip()}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
