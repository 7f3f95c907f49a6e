"""A long wallet history costs its first page a page of rows, and its count a bounded number.

Measured on the queries the endpoint runs, by PostgreSQL's own account of the rows it read from the
entries table (EXPLAIN ANALYZE), never by time."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from paygo.api.pagination import Pagination
from wallets import ledger
from wallets.models import SystemAccount, TransactionKind

pytestmark = pytest.mark.django_db

HISTORY = 3000  # entries in each of alice's two wallets


def _deposits(user, token: str, count: int, *, at) -> None:
    """`count` deposits into the user's wallet in this token, posted by the ledger as one batch at `at`."""
    asset = ledger.asset_get(token)
    wallet = ledger.account_for_user(user, asset).pk
    custody = ledger.system_account(SystemAccount.CUSTODY, asset).pk
    specs = [ledger.TxSpec(kind=TransactionKind.DEPOSIT, entries=[(custody, -1), (wallet, 1)]) for _ in range(count)]
    ledger.post_batch(specs, now=at)


@pytest.fixture
def long_history(alice):
    """Two wallets of HISTORY entries each, posted over a year (a batch a month), then analysed."""
    start = timezone.now() - timedelta(days=365)
    for month in range(12):
        for token in ("USDC", "USDT"):
            _deposits(alice, token, HISTORY // 12, at=start + timedelta(days=30 * month))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE wallets_entry; ANALYZE wallets_ledgertransaction; ANALYZE wallets_account")
    return start


def _entries_read(sql: str) -> int:
    """Rows PostgreSQL read from wallets_entry running `sql` (kept or filtered out, in every loop)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
        (plan,) = cursor.fetchone()
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def walk(node) -> int:
        own = 0
        if node.get("Relation Name") == "wallets_entry":
            removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
            own = (node["Actual Rows"] + removed) * node["Actual Loops"]
        return own + sum(walk(child) for child in node.get("Plans", ()))

    return walk(plan[0]["Plan"])


def _history_reads(client, query: str = "") -> tuple[dict, list[int]]:
    """The endpoint's answer, and the entries each of its queries that reads entries read."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/api/v1/wallet/transactions{query}")
    assert response.status_code == 200, response.json()
    reads = [_entries_read(q["sql"]) for q in queries.captured_queries if "wallets_entry" in q["sql"]]
    return response.json(), reads


def test_the_first_page_of_a_long_history_reads_about_a_page(api, alice, long_history):
    body, reads = _history_reads(api(alice))

    assert len(body["transactions"]) == 20
    page_reads = reads[-1]  # the count, then the page
    # Each wallet's 20 newest from the index, then the 20 shown.
    assert page_reads <= 3 * 20, f"the first page read {page_reads} entries of {2 * HISTORY}"


def test_a_dated_page_reads_about_a_page(api, alice, long_history):
    """?from=/?to= are ranges of the index the history is read from, not filters over all of it."""
    to = (long_history + timedelta(days=45)).isoformat().replace("+00:00", "Z")
    since = (long_history + timedelta(days=15)).isoformat().replace("+00:00", "Z")

    body, reads = _history_reads(api(alice), f"?to={to}&from={since}&pageSize=5")

    # The second month's batch of each wallet: 250 entries each, read 5 at a time.
    assert body["count"] == 2 * HISTORY // 12
    assert len(body["transactions"]) == 5
    assert reads[-1] <= 3 * 5, f"a dated page read {reads[-1]} entries"


def test_the_count_of_a_long_history_is_bounded(api, alice, long_history, monkeypatch):
    """The count stops at the pagination's limit (Pagination.count_limit, lowered here to keep the test
    small): a history longer than that is paged over its newest count_limit entries."""
    monkeypatch.setattr(Pagination, "count_limit", 1000)

    body, reads = _history_reads(api(alice), "?page=last")

    assert body["count"] == 1000 and body["totalPages"] == 50 and body["page"] == 50
    assert len(body["transactions"]) == 20
    count_reads, page_reads = reads
    assert count_reads <= 2 * 1000, f"the count read {count_reads} entries of {2 * HISTORY}"
    # The last page of the 1,000: each wallet's 1,000 newest from the index, then the 20 shown.
    assert page_reads <= 2 * 1000 + 20, f"the last page read {page_reads} entries of {2 * HISTORY}"


def test_a_long_history_merges_its_wallets_newest_first(api, alice, long_history):
    """The last month's batches, USDC's then USDT's (250 entries each, one instant): lines 200 to 299
    are USDT's 50 oldest then USDC's 50 newest, ids descending; and the first lines are the newest."""
    lines = api(alice).get("/api/v1/wallet/transactions?pageSize=100&page=3").json()["transactions"]
    older = api(alice).get("/api/v1/wallet/transactions?pageSize=100&page=6").json()["transactions"]

    assert [line["token"] for line in lines] == ["USDT"] * 50 + ["USDC"] * 50
    assert len({line["createdAt"] for line in lines}) == 1
    assert [line["id"] for line in lines] == sorted((line["id"] for line in lines), reverse=True)
    assert older[0]["createdAt"] < lines[-1]["createdAt"]  # page 6: the month before
