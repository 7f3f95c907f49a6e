"""The admin's pages on a large database: each page's time (best of 3), its queries, its slowest.

Usage: BENCH_DATABASE_URL=postgres://.../a_copy_of_a_big_database .venv/bin/python bench/admin_pages.py [URL ...]

It reads the database it is pointed at and writes nothing but the staff member's session (it logs in
as the first superuser). Without URLs it times the lists that review r19 found slow at scale
(notifications, sign-ins, the ledger and its entries), with a search and a filter each; the
baseline printed beside them is the index page, which reads no list.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import setup_django

PAGES = [
    "/admin/notifications/notification/",
    "/admin/notifications/notification/?q=bob",
    "/admin/notifications/notification/?type__exact=system",
    "/admin/accounts/signin/",
    "/admin/accounts/signin/?q=bob",
    "/admin/wallets/ledgertransaction/",
    "/admin/wallets/ledgertransaction/?kind__exact=charge",
    "/admin/wallets/entry/",
]


def main(urls: list[str]) -> None:
    setup_django()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.models import User

    settings.ALLOWED_HOSTS = ["*"]
    client = Client(raise_request_exception=False)
    client.force_login(User.objects.filter(is_superuser=True).order_by("pk").first())

    def timed(url: str) -> tuple[int, float, int, float]:
        best, status, count, slowest = float("inf"), 0, 0, 0.0
        for _ in range(3):
            started = time.perf_counter()
            with CaptureQueriesContext(connection) as queries:
                status = client.get(url).status_code
            best = min(best, time.perf_counter() - started)
            count = len(queries)
            slowest = max((float(q["time"]) for q in queries.captured_queries), default=0.0)
        return status, best, count, slowest

    _, baseline, _, _ = timed("/admin/")
    print(f"baseline /admin/ (no list): {baseline * 1000:.0f} ms")
    print(f"{'status':>6} {'time':>9} {'ratio':>7} {'queries':>7} {'slowest':>9}  page")
    for url in urls or PAGES:
        status, best, count, slowest = timed(url)
        print(f"{status:>6} {best * 1000:>7.0f}ms {best / baseline:>6.1f}x {count:>7} {slowest * 1000:>7.0f}ms  {url}")


if __name__ == "__main__":
    main(sys.argv[1:])
