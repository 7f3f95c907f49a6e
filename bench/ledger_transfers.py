"""Ledger transfers per second on PostgreSQL with two workers, beside pgbench's tpcb-like.

    .venv/bin/python bench/ledger_transfers.py [--seconds 10] [--accounts 1000]

Both do the same shape of work — update two balances and insert history — on the same database
in the same run. Goal (issue 3): the ledger reaches at least half of pgbench's rate.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import subprocess
import time

from _setup import close_connections_before_fork, pg_env, setup_django


def prepare(accounts: int) -> list[int]:
    from accounts.models import User
    from wallets import ledger
    from wallets.models import Account, AccountKind, SystemAccount, TransactionKind

    usdc = ledger.asset_get("USDC")
    existing = list(
        Account.objects.filter(kind=AccountKind.USER, asset=usdc, owner__email__startswith="bench-")
        .order_by("id")
        .values_list("id", flat=True)
    )
    if len(existing) >= accounts:
        return existing[:accounts]
    users = User.objects.bulk_create(
        User(email=f"bench-{n}@example.com", name=f"Bench {n}") for n in range(len(existing), accounts)
    )
    custody = ledger.system_account(SystemAccount.CUSTODY, usdc)
    new_accounts = Account.objects.bulk_create(Account(kind=AccountKind.USER, owner=u, asset=usdc) for u in users)
    ledger.post_batch(
        [
            ledger.TxSpec(kind=TransactionKind.DEPOSIT, entries=[(custody.pk, -(10**12)), (a.pk, 10**12)])
            for a in new_accounts
        ]
    )
    return existing + [a.pk for a in new_accounts]


def worker(account_ids: list[int], seconds: float, counter) -> None:
    setup_django()
    from wallets import ledger
    from wallets.models import Account

    accounts = list(Account.objects.filter(id__in=account_ids))
    rng = random.Random()
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        debit, credit = rng.sample(accounts, 2)
        ledger.transfer(debit=debit, credit=credit, amount=rng.randint(1, 1000))
        done += 1
    with counter.get_lock():
        counter.value += done


def ledger_rate(account_ids: list[int], seconds: float, workers: int = 2) -> float:
    counter = multiprocessing.Value("i", 0)
    processes = [multiprocessing.Process(target=worker, args=(account_ids, seconds, counter)) for _ in range(workers)]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    if any(process.exitcode for process in processes):
        raise SystemExit("a ledger worker failed (its traceback is above)")
    return counter.value / max(elapsed, seconds)


def pgbench_rate(seconds: float, clients: int = 2) -> float:
    env = pg_env()
    subprocess.run(["pgbench", "-i", "-q", "-s", "1"], check=True, env=env, capture_output=True)
    out = subprocess.run(
        ["pgbench", "-c", str(clients), "-j", str(clients), "-T", str(int(seconds)), "-b", "tpcb-like"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--accounts", type=int, default=1000)
    args = parser.parse_args()
    setup_django(migrate=True)
    account_ids = prepare(args.accounts)
    from django.db import connection

    with connection.cursor() as cursor:  # statistics for the planner, as a live database has them
        cursor.execute("ANALYZE")
    close_connections_before_fork()
    baseline = pgbench_rate(args.seconds)
    ours = ledger_rate(account_ids, args.seconds)
    print(f"pgbench tpcb-like, 2 clients:   {baseline:10.0f} tx/s   (baseline)")
    print(f"ledger.transfer, 2 workers:     {ours:10.0f} transfers/s")
    print(f"ratio ledger / pgbench:         {ours / baseline:10.2f}   (goal >= 0.50)")


if __name__ == "__main__":
    main()
