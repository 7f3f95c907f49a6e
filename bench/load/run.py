"""The load test (issue 16): the production shape on this machine under a mixed HTTP load with live
sockets open, and the database's connections counted against the pools' total.

    .venv/bin/python bench/load/run.py [--users 60] [--spawn-rate 5] [--seconds 600] [--sockets 200]

1. Builds its data once, in its own database (BENCH_DATABASE_URL, default .../paygo_bench_load):
   vendors with per-minute services, and people with funded wallets.
2. Starts the production shape as `make prod` does (scripts/prod.py) on a free port, with
   production settings (DEBUG off, secrets made for the run, the Chipi sandbox); the per-address
   rate limits are raised, since every simulated person comes from this one address.
3. Opens `--sockets` live sockets when bench/load/sockets.py is there (it watches sessions started
   for the purpose, one per socket, and reports ticks per socket per second and tick delay);
   without it, says that sockets were skipped.
4. Runs Locust headless (bench/load/locustfile.py: sign-in, balance, transactions, marketplace,
   sessions started, heartbeated and stopped, transfers, dashboards) with `--users` people for
   `--seconds`, while a thread reads pg_stat_activity every second.
5. Prints requests per second, p50/p95/p99 per endpoint, errors, the socket figures, the most
   database connections seen beside the pools' total, and the load average; the last line is JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _setup import (  # noqa: E402  (bench/ on the path first)
    ROOT,
    ConnectionCounter,
    database_url,
    free_port,
    production_like,
    served_like_production,
    setup_django,
)

production_like("paygo_bench_load")
served_like_production()
os.environ.setdefault("EMAIL_URL", "dummymail://")  # the notifications are sent, to nowhere (not to stdout)


PASSWORD = "load-test-password-2026"
VENDORS, SERVICES_PER_VENDOR = 10, 5
RUN_DIR = ROOT / "var" / "load"


def build(people: int) -> dict:
    """The world, built once (and grown when more people are asked for)."""
    setup_django(migrate=True)
    from accounts.models import User
    from accounts.services import user_create
    from marketplace.models import Category, Service
    from marketplace.services import service_create
    from wallets import ledger
    from wallets.services import ChainDeposit, deposit_credit

    category = Category.objects.filter(parent__isnull=True).order_by("pk").first()
    for v in range(VENDORS):
        email = f"load-vendor-{v}@example.com"
        vendor = User.objects.filter(email=email).first() or user_create(
            email=email, password=PASSWORD, name=f"Vendor {v}", role="vendor"
        )
        for s in range(SERVICES_PER_VENDOR - vendor.services.count()):
            service_create(vendor=vendor, name=f"Load {v}.{s}", category=category, rate=1000, unit="per_minute")
    usdc = ledger.asset_get("USDC")
    have = User.objects.filter(email__startswith="load-person-").count()
    for p in range(have, people):
        person = user_create(email=f"load-person-{p}@example.com", password=PASSWORD, name=f"Person {p}")
        funding = ChainDeposit.ledger_only(tx_hash=f"0x{secrets.token_hex(32)}", token="USDC", amount=10**9)
        deposit_credit(user=person, asset=usdc, deposit=funding, source="load")
        if p % 50 == 49:
            print(f"  {p + 1} people", flush=True)
    world = {
        "password": PASSWORD,
        "people": [
            {"id": u.id, "email": u.email}
            for u in User.objects.filter(email__startswith="load-person-").order_by("pk")[:people]
        ],
        "services": list(Service.objects.filter(name__startswith="Load ").values_list("pk", flat=True)),
    }
    from django.db import connections

    connections.close_all()
    return world


def call(base: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", "Idempotency-Key": secrets.token_hex(16)}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(base + path, data, headers, method=method), timeout=60) as r:
        return json.loads(r.read())


def start_production(env: dict[str, str], port: int) -> tuple[subprocess.Popen, int, queue.Queue]:
    args = [sys.executable, "scripts/prod.py"]
    if (Path(env["STATIC_ROOT"]) / "staticfiles.json").exists():
        args.append("--no-collectstatic")
    prod = subprocess.Popen(
        args,
        cwd=ROOT,
        env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    log = (RUN_DIR / "prod.log").open("w")

    def pump() -> None:
        for line in prod.stdout:
            log.write(line)
            log.flush()
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=5)
        except queue.Empty:
            if prod.poll() is not None:
                raise SystemExit(f"prod.py exited with {prod.returncode}: see {RUN_DIR / 'prod.log'}") from None
            continue
        if "serving on http" in line:  # prod.py's line: a JSON record (LOG_JSON) or plain
            return prod, int(re.search(r"pools' total (\d+)", line).group(1)), lines
    raise SystemExit("prod.py did not start in 10 minutes")


def start_sockets(base: str, world: dict, count: int, seconds: int) -> tuple[subprocess.Popen | None, Path, list]:
    """Sessions to watch, one per socket (from the last people, whom Locust does not use), and
    bench/load/sockets.py watching them; None when that script is not there."""
    script, out = HERE / "sockets.py", RUN_DIR / "sockets.json"
    if count == 0 or not script.exists():
        return None, out, []
    targets, opened = RUN_DIR / "targets.jsonl", []
    with targets.open("w") as file:
        for person in world["people"][-count:]:
            token = call(base, "POST", "/api/v1/auth/login", {"email": person["email"], "password": PASSWORD})["token"]
            started = call(base, "POST", "/api/v1/streams/start", {"serviceId": world["services"][0]}, token)
            opened.append((token, started["session"]["id"]))
            file.write(json.dumps({"token": token, "sessionId": started["session"]["id"]}) + "\n")
    ws = base.replace("http://", "ws://")
    args = [sys.executable, str(script), "--url", ws, "--targets", str(targets), "--seconds", str(seconds)]
    return subprocess.Popen([*args, "--json", str(out)], cwd=ROOT), out, opened


def endpoint_table(stats: Path) -> list[dict]:
    rows = []
    with stats.open() as file:
        for row in csv.DictReader(file):
            rows.append(
                {
                    "endpoint": f"{row['Type']} {row['Name']}".strip(),
                    "requests": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]),
                    "rps": float(row["Requests/s"]),
                    "p50_ms": float(row["50%"] or 0),
                    "p95_ms": float(row["95%"] or 0),
                    "p99_ms": float(row["99%"] or 0),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=60, help="simulated people (each about a request a second)")
    parser.add_argument("--spawn-rate", type=float, default=5)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--sockets", type=int, default=200)
    options = parser.parse_args()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", "scripts/ensure-services.sh", "nginx"], cwd=ROOT, check=True)
    print(f"data: {options.users + options.sockets} people, {VENDORS * SERVICES_PER_VENDOR} services", flush=True)
    world = build(options.users + options.sockets)
    (RUN_DIR / "people.json").write_text(json.dumps({**world, "people": world["people"][: options.users]}))
    env = {**os.environ, "DATABASE_URL": database_url()}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    prod, pools_total, _ = start_production(env, port)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    counter = ConnectionCounter().start()
    sockets, sockets_out, watched = start_sockets(base, world, options.sockets, options.seconds)
    if sockets is None:
        print("sockets: skipped (bench/load/sockets.py is not on this branch)" if options.sockets else "", flush=True)
    locust = subprocess.run(
        [
            *(sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--only-summary"),
            *("-u", str(options.users), "-r", str(options.spawn_rate), "-t", f"{options.seconds}s"),
            *("--host", base, "--csv", str(RUN_DIR / "run"), "--stop-timeout", "10", "--exit-code-on-error", "0"),
        ],
        cwd=ROOT,
        env={**env, "LOAD_PEOPLE": str(RUN_DIR / "people.json")},
        capture_output=True,
        text=True,
    )
    (RUN_DIR / "locust.log").write_text(locust.stdout + locust.stderr)
    socket_figures = None
    if sockets is not None:
        sockets.wait(timeout=options.seconds + 300)
        socket_figures = json.loads(sockets_out.read_text()) if sockets_out.exists() else {"error": "no report"}
        for token, session_id in watched:
            call(base, "PATCH", f"/api/v1/streams/{session_id}/stop", {}, token)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    counter.stop()
    os.killpg(prod.pid, signal.SIGINT)
    prod.wait(timeout=120)

    rows = endpoint_table(RUN_DIR / "run_stats.csv")
    total = next(row for row in rows if row["endpoint"].endswith("Aggregated"))
    print(f"\n{'endpoint':<52} {'requests':>9} {'fail':>5} {'req/s':>7} {'p50':>6} {'p95':>6} {'p99':>6} (ms)")
    for row in rows:
        print(
            f"{row['endpoint']:<52} {row['requests']:>9} {row['failures']:>5} {row['rps']:>7.1f} "
            f"{row['p50_ms']:>6.0f} {row['p95_ms']:>6.0f} {row['p99_ms']:>6.0f}"
        )
    failures = (RUN_DIR / "run_failures.csv").read_text().strip().splitlines()[1:]
    for line in failures:
        print(f"failure: {line}")
    most = max(counter.samples, default=0)
    print(f"database connections: at most {most} (pools' total {pools_total}); {len(counter.samples)} samples")
    print(f"sockets: {socket_figures if socket_figures is not None else 'skipped'}")
    print(f"load average: {' '.join(load_before)} before, {' '.join(load_after)} after; {os.cpu_count()} cores")
    print(
        json.dumps(
            {
                "users": options.users,
                "seconds": options.seconds,
                "rps": total["rps"],
                "requests": total["requests"],
                "failures": total["failures"],
                "p50_ms": total["p50_ms"],
                "p95_ms": total["p95_ms"],
                "p99_ms": total["p99_ms"],
                "db_connections_max": most,
                "pools_total": pools_total,
                "sockets": socket_figures,
                "loadavg_before": load_before,
                "loadavg_after": load_after,
            }
        )
    )


if __name__ == "__main__":
    main()
