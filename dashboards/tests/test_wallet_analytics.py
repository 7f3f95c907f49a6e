"""GET /wallet/analytics: the wallet page's shape, now with the ledger's and the sessions' figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from dashboards.tests.conftest import NOW, USDC, make_service, run_session
from streaming import services as streaming

pytestmark = pytest.mark.django_db

ANALYTICS = "/api/v1/wallet/analytics"


def test_shape_with_zeros(api, alice):
    body = api(alice).get(ANALYTICS).json()

    assert body == {
        "totalSpending": "0.000000",
        "servicesUsed": 0,
        "avgUsageTime": 0,
        "todaySpend": "0.000000",
        "monthSpend": "0.000000",
        "serviceBreakdown": [],
        "totalBalance": "0.000000",
        "token": "USDC",
        "tz": "UTC",
        "chartData": {"monthlySpending": [], "topServices": [], "usageOverTime": []},
    }


def test_real_figures(api, alice, history):
    body = api(alice).get(ANALYTICS).json()

    assert body == {
        "totalSpending": "13.735234",
        "servicesUsed": 3,
        "avgUsageTime": 634,  # seconds, over ended sessions: (600 + 300 + 1001) / 3
        "todaySpend": "0.000000",
        "monthSpend": "3.735234",  # November in UTC: 2.5 + 1.235234
        "serviceBreakdown": [
            {"service": "Minutes", "amount": "10.000000"},
            {"service": "Pass", "amount": "2.500000"},
            {"service": "Seconds", "amount": "1.235234"},
        ],
        "totalBalance": "986.264766",  # 1000 - 13.735234
        "token": "USDC",
        "tz": "UTC",
        "chartData": {
            "monthlySpending": [
                {"month": "2026-10", "amount": "10.000000"},
                {"month": "2026-11", "amount": "3.735234"},
            ],
            "topServices": [
                {"service": "Minutes", "amount": "10.000000"},
                {"service": "Pass", "amount": "2.500000"},
                {"service": "Seconds", "amount": "1.235234"},
            ],
            # Seconds of sessions run each day (s4 has run 5 minutes so far today), beside what was spent.
            "usageOverTime": [
                {"date": "2026-11-01", "usage": 300, "spent": "2.500000"},
                {"date": "2026-11-10", "usage": 1001, "spent": "1.235234"},
                {"date": "2026-11-20", "usage": 300, "spent": "0.000000"},
            ],
        },
    }


def test_month_and_days_in_the_callers_zone(api, alice, history):
    body = api(alice).get(ANALYTICS, {"tz": "America/New_York"}).json()

    assert body["monthSpend"] == "1.235234"  # the Pass was bought on October 31st in New York
    assert body["chartData"]["monthlySpending"] == [
        {"month": "2026-10", "amount": "12.500000"},
        {"month": "2026-11", "amount": "1.235234"},
    ]
    assert body["chartData"]["usageOverTime"][0] == {"date": "2026-10-31", "usage": 300, "spent": "2.500000"}


def test_usage_is_time_used_each_local_day_split_at_midnight(api, alice, victor, fund):
    """A session counts on each local day it ran, for the part of it run that day (up to now while
    it runs); days before the last 30 are left out. Spending is dated by the charges."""
    fund(alice, 1000 * USDC)
    minutes = make_service(victor, unit="per_minute", rate=USDC)
    # 23:50 to 00:10 UTC: ten minutes on the 12th, ten on the 13th (charged at its stop, on the 13th).
    run_session(alice, minutes, datetime(2026, 11, 12, 23, 50, tzinfo=UTC), 1200)
    # From 23:00 on the 21st of October, the day before the window's first: only its last hour counts.
    run_session(alice, minutes, datetime(2026, 10, 21, 23, 0, tzinfo=UTC), 2 * 3600, sweeps=(3600,))
    # Still running since 22:00 yesterday: two hours yesterday, twelve today so far.
    streaming.session_start(user=alice, service=minutes, now=NOW - timedelta(hours=14))

    usage = api(alice).get(ANALYTICS).json()["chartData"]["usageOverTime"]

    assert usage == [
        {"date": "2026-10-22", "usage": 3600, "spent": "120.000000"},
        {"date": "2026-11-12", "usage": 600, "spent": "0.000000"},
        {"date": "2026-11-13", "usage": 600, "spent": "20.000000"},
        {"date": "2026-11-19", "usage": 7200, "spent": "0.000000"},
        {"date": "2026-11-20", "usage": 43200, "spent": "0.000000"},
    ]
    assert sum(day["usage"] for day in usage) == 3600 + 1200 + 14 * 3600


def test_usage_splits_at_the_callers_midnight(api, alice, victor, fund):
    fund(alice, 1000 * USDC)
    minutes = make_service(victor, unit="per_minute", rate=USDC)
    # 04:50 to 05:10 UTC on the 15th is 23:50 to 00:10 in New York (EST).
    run_session(alice, minutes, datetime(2026, 11, 15, 4, 50, tzinfo=UTC), 1200)

    in_utc = api(alice).get(ANALYTICS).json()["chartData"]["usageOverTime"]
    in_new_york = api(alice).get(ANALYTICS, {"tz": "America/New_York"}).json()["chartData"]["usageOverTime"]

    assert in_utc == [{"date": "2026-11-15", "usage": 1200, "spent": "20.000000"}]
    assert in_new_york == [
        {"date": "2026-11-14", "usage": 600, "spent": "0.000000"},
        {"date": "2026-11-15", "usage": 600, "spent": "20.000000"},
    ]


def test_usage_counts_only_the_callers_sessions(api, bob, history):
    usage = api(bob).get(ANALYTICS).json()["chartData"]["usageOverTime"]

    assert usage == [{"date": "2026-11-15", "usage": 180, "spent": "3.000000"}]


def test_the_schema_gives_the_analytics_fields_and_their_units(anon):
    schema = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    def component(reference: dict) -> dict:
        return schema["components"]["schemas"][reference["$ref"].rsplit("/", 1)[-1]]

    ok = schema["paths"]["/api/v1/wallet/analytics"]["get"]["responses"]["200"]
    analytics = component(ok["content"]["application/json"]["schema"])
    day = component(component(analytics["properties"]["chartData"])["properties"]["usageOverTime"]["items"])
    assert set(day["properties"]) == {"date", "usage", "spent"}
    assert day["properties"]["usage"]["type"] == "integer"
    assert "in seconds" in day["properties"]["usage"]["description"]
    assert day["properties"]["spent"]["type"] == "string"
    assert "in seconds" in analytics["properties"]["avgUsageTime"]["description"]


def test_usage_on_a_day_whose_midnight_happens_twice(api, alice, victor, fund):
    """Havana falls back from 01:00 CDT to 00:00 CST on 2026-11-01: its midnight happens twice, and
    that day starts at the first (04:00 UTC), as the money's days do. A session in the repeated hour
    counts on that day, whole; none counts a negative slice of a day."""
    fund(alice, 1000 * USDC)
    minutes = make_service(victor, unit="per_minute", rate=USDC)
    run_session(alice, minutes, datetime(2026, 11, 1, 4, 10, tzinfo=UTC), 40 * 60)  # 00:10-00:50 CDT
    run_session(alice, minutes, datetime(2026, 11, 1, 10, 0, tzinfo=UTC), 30 * 60)  # 05:00-05:30 CST
    # 23:30 CDT on October 31st to 00:30 CDT: half an hour on each day.
    run_session(alice, minutes, datetime(2026, 11, 1, 3, 30, tzinfo=UTC), 60 * 60)

    usage = api(alice).get(ANALYTICS, {"tz": "America/Havana"}).json()["chartData"]["usageOverTime"]

    assert usage == [
        {"date": "2026-10-31", "usage": 30 * 60, "spent": "0.000000"},
        {"date": "2026-11-01", "usage": 70 * 60 + 30 * 60, "spent": "130.000000"},
    ]


def test_usage_on_a_day_whose_midnight_is_skipped(api, alice, victor, fund):
    """Havana springs forward from 00:00 CST to 01:00 CDT on 2027-03-14: that day starts at 05:00 UTC
    and is 23 hours long."""
    fund(alice, 100 * USDC)
    minutes = make_service(victor, unit="per_minute", rate=USDC)
    # 23:40 CST on March 13th to 01:20 CDT on the 14th: twenty minutes, then twenty.
    with time_machine.travel(datetime(2027, 3, 20, 12, 0, tzinfo=UTC), tick=False):
        run_session(alice, minutes, datetime(2027, 3, 14, 4, 40, tzinfo=UTC), 40 * 60)
        usage = api(alice).get(ANALYTICS, {"tz": "America/Havana"}).json()["chartData"]["usageOverTime"]

    assert usage == [
        {"date": "2027-03-13", "usage": 20 * 60, "spent": "0.000000"},
        {"date": "2027-03-14", "usage": 20 * 60, "spent": "40.000000"},
    ]
