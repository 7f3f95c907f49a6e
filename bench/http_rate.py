"""GET /api/v1/wallet/balance served by the README's production shape, beside gunicorn's sync workers
serving the same code straight, in the same run (issue 16: at least 0.8x).

    .venv/bin/python bench/http_rate.py [--seconds 15] [--connections 16] [--rounds 3] [--daphne [CHECKOUT]]

Uses its own database (BENCH_DATABASE_URL, default .../paygo_bench_http) with one funded user, and
production settings (DEBUG off, secrets made for the run, the API's rate limits out of the way).
Starts scripts/prod.py (make prod: nginx in front of gunicorn's sync workers and Daphne, a Celery
worker and beat) and, beside it, the baseline: gunicorn with as many sync workers on its own port,
no proxy. wrk (from Debian; scripts/ensure-services.sh wrk installs it) loads each in turn,
alternating, `--rounds` times, for `--seconds` each; a thread counts the database's connections
meanwhile. With --daphne, Daphne alone (`python -m paygo.server`, the production command before
issue 16) is measured too, from CHECKOUT if given (another checkout with its .venv, e.g. /work/main
to measure the code before the pool). Prints every round, the medians, the ratio; the last line is
JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _setup import (
    ROOT,
    ConnectionCounter,
    database_url,
    free_port,
    production_like,
    served_like_production,
    setup_django,
)

production_like("paygo_bench_http")
served_like_production()
# One account sends every request: its per-user budgets out of the way too (at the default 300 reads
# a minute nearly every answer was a 429, and the rates measured were of refusals).
for _budget in ("READS", "WRITES", "MONEY", "USAGE"):
    os.environ.setdefault(f"RATELIMIT_{_budget}_PER_USER", "100000000/m")


PATH = "/api/v1/wallet/balance"


def wait_for(port: int, process: subprocess.Popen, token: str, seconds: float = 300) -> None:
    """Until the endpoint answers 200 (every process of the server up)."""
    deadline = time.monotonic() + seconds
    request = urllib.request.Request(url(port), headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode} while starting")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url(port)} does not answer 200")


def start(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=cwd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT if process.args[1].endswith("prod.py") else signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}{PATH}"


def wrk(port: int, token: str, seconds: int, connections: int) -> dict:
    counter = ConnectionCounter(every=0.2).start()
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}", *[url(port)]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    most = counter.stop()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rate": rate,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "db_connections_max": most,
    }


def prepare() -> str:
    setup_django(migrate=True)
    from accounts.models import User
    from accounts.services import token_pair_for, user_create
    from wallets import ledger
    from wallets.services import ChainDeposit, deposit_credit

    user = User.objects.filter(email="bench-http@example.com").first()
    if user is None:
        user = user_create(email="bench-http@example.com", password=secrets.token_urlsafe(), name="Bench", role="user")
        deposit_credit(
            user=user,
            asset=ledger.asset_get("USDC"),
            deposit=ChainDeposit.ledger_only(tx_hash=f"0x{secrets.token_hex(32)}", token="USDC", amount=10**9),
            source="bench",
        )
    return token_pair_for(user).access


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--daphne", nargs="?", const=str(ROOT), default=None, metavar="CHECKOUT")
    options = parser.parse_args()
    subprocess.run(["bash", "scripts/ensure-services.sh", "nginx", "wrk"], cwd=ROOT, check=True)
    token = prepare()
    from django.db import connections

    connections.close_all()
    env = {**os.environ, "DATABASE_URL": database_url()}
    if not (Path(env["STATIC_ROOT"]) / "staticfiles.json").exists():
        print("collectstatic (once; a minute or two)...", flush=True)
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env)
    cores = os.cpu_count() or 1
    workers = int(env.get("WEB_WORKERS") or 2 * cores + 1)

    servers: dict[str, tuple[int, subprocess.Popen]] = {}
    port = free_port()
    servers["production (make prod)"] = (
        port,
        start([sys.executable, "scripts/prod.py", "--no-collectstatic"], {**env, "PORT": str(port)}),
    )
    port = free_port()
    servers[f"gunicorn, {workers} sync workers"] = (
        port,
        start(
            [
                *(sys.executable, "-m", "gunicorn", "paygo.wsgi:application", "--workers", str(workers)),
                *("--bind", f"127.0.0.1:{port}", "--no-control-socket"),
            ],
            {**env, "DATABASE_POOL_MAX_SIZE": "2"},
        ),
    )
    if options.daphne:
        checkout = Path(options.daphne)
        port = free_port()
        servers["daphne alone" + ("" if checkout == ROOT else f" ({checkout})")] = (
            port,
            start(
                [
                    *(str(checkout / ".venv/bin/python"), "-m", "paygo.server", "-b", "127.0.0.1"),
                    *("-p", str(port), "paygo.asgi:application"),
                ],
                env,
                cwd=checkout,
            ),
        )
    results: dict[str, list[dict]] = {name: [] for name in servers}
    try:
        for port, process in servers.values():
            wait_for(port, process, token)
        for port, _ in servers.values():  # warm up: every worker imported and connected
            wrk(port, token, 3, options.connections)
        for round_ in range(options.rounds):
            for name, (port, _) in servers.items():
                result = wrk(port, token, options.seconds, options.connections)
                results[name].append(result)
                load = Path("/proc/loadavg").read_text().split()[0]
                print(f"round {round_ + 1} {name}: {result['rate']:.0f} requests/s, {result} (load {load})", flush=True)
    finally:
        for _, process in servers.values():
            stop(process)
    medians = {name: statistics.median(r["rate"] for r in rounds) for name, rounds in results.items()}
    prod_name, base_name = list(servers)[:2]
    ratio = medians[prod_name] / medians[base_name]
    for name, median in medians.items():
        print(f"{name}: median {median:.0f} requests/s")
    print(f"ratio production / gunicorn: {ratio:.2f} (goal: at least 0.8)")
    errors = {n: sum(r["non_2xx"] + r["socket_errors"] for r in rs) for n, rs in results.items()}
    print(
        json.dumps(
            {
                "endpoint": PATH,
                "connections": options.connections,
                "seconds": options.seconds,
                "medians": {name: round(value, 1) for name, value in medians.items()},
                "ratio": round(ratio, 3),
                "errors": errors,
                "db_connections_max": {n: max(r["db_connections_max"] for r in rs) for n, rs in results.items()},
                "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            }
        )
    )

    if any(errors.values()):
        # A rate of refusals or failures is no measure of serving: the run does not count.
        raise SystemExit(f"NOT VALID: answers that were not 2xx, or socket errors, per server: {errors}")


if __name__ == "__main__":
    main()
