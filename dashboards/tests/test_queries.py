"""Each dashboard answers in a fixed number of queries, with 10 sessions as with 1,000."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards import rollup
from dashboards.tests.conftest import NOW, USDC, make_service
from streaming import services as streaming
from streaming.sweep import sweep
from wallets.models import Entry

pytestmark = pytest.mark.django_db

# The JWT's user, then each endpoint's own reads (see dashboards/selectors.py); those that sum the
# ledger read the rollup's watermark once (dashboards/rollup.py); those that list sessions read their
# holds and payers' wallets beside them (two queries: a running session's end is read from them).
EXPECTED = {
    "/api/v1/dashboard/user/overview": 8,
    "/api/v1/dashboard/user/sessions": 5,  # the user, the count, the page, its holds and payers' wallets
    "/api/v1/dashboard/vendor/overview": 11,
    "/api/v1/dashboard/vendor/earnings": 4,  # earnings and sessions per bucket in one statement
    "/api/v1/wallet/analytics": 6,
}
ADMIN = "/api/v1/dashboard/admin/overview"
# With the ledger health's latest result in the cache (the check runs on a schedule); one query names the top services
# and vendors (none is sent when the window has no charge).
ADMIN_EXPECTED = 10


def build(n: int, *, users, vendors) -> list:
    """n sessions spread over users, vendors' services, categories and the last year: a per-session
    fee charged at start, then every one stopped as idle by one sweep."""
    services = [
        make_service(vendor, category_name=name, unit="per_session", rate=USDC + i)
        for i, (vendor, name) in enumerate(
            [(vendors[0], "Time-Based"), (vendors[0], "Usage-Based"), (vendors[1], "Data & Analytics")]
        )
    ]
    first = NOW - timedelta(days=360)
    sessions = [
        streaming.session_start(
            user=users[i % len(users)], service=services[i % len(services)], now=first + timedelta(hours=8 * i)
        )
        for i in range(n)
    ]
    sweep(now=datetime(2030, 1, 1, tzinfo=UTC))
    return sessions


@pytest.mark.parametrize("n", [10, 1000])
def test_query_counts_do_not_grow_with_the_data(
    n, api, alice, bob, victor, wanda, olga, fund, django_assert_num_queries
):
    fund(alice, 10_000 * USDC)
    fund(bob, 10_000 * USDC)
    sessions = build(n, users=[alice, bob], vendors=[victor, wanda])
    # Half the ledger in the rollup, half in its tail: both are read, in the same statements.
    entry_ids = list(Entry.objects.order_by("id").values_list("id", flat=True))
    session_ids = [session.pk for session in sessions]
    rollup.rollup_advance(entries_through=entry_ids[len(entry_ids) // 2], sessions_through=session_ids[n // 2])
    clients = {"user": api(alice), "vendor": api(victor), "staff": api(olga)}
    clients["staff"].get(ADMIN, {"period": "week"})  # the ledger health's latest result, read once into the cache

    for path, queries in EXPECTED.items():
        client = clients["vendor" if "/vendor/" in path else "user"]
        with django_assert_num_queries(queries):
            assert client.get(path, {"period": "day"}).status_code == 200
    with django_assert_num_queries(5):  # the user, the session, its hold, its payer's wallet, its charges
        assert clients["user"].get(f"/api/v1/dashboard/user/sessions/{sessions[0].session_id}").status_code == 200
    with django_assert_num_queries(ADMIN_EXPECTED):
        body = clients["staff"].get(ADMIN, {"period": "year"}).json()
    assert body["totals"]["charges"] == n
