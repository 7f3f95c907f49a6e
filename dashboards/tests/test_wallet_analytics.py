"""GET /wallet/analytics: the wallet page's shape, now with the ledger's and the sessions' figures."""

from __future__ import annotations

import pytest

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
            "usageOverTime": [{"date": "2026-11-01", "usage": "2.500000"}, {"date": "2026-11-10", "usage": "1.235234"}],
        },
    }


def test_month_and_days_in_the_callers_zone(api, alice, history):
    body = api(alice).get(ANALYTICS, {"tz": "America/New_York"}).json()

    assert body["monthSpend"] == "1.235234"  # the Pass was bought on October 31st in New York
    assert body["chartData"]["monthlySpending"] == [
        {"month": "2026-10", "amount": "12.500000"},
        {"month": "2026-11", "amount": "1.235234"},
    ]
    assert body["chartData"]["usageOverTime"][0] == {"date": "2026-10-31", "usage": "2.500000"}


def test_bob_sees_only_his_own(api, bob, history):
    body = api(bob).get(ANALYTICS).json()

    assert (body["totalSpending"], body["servicesUsed"], body["totalBalance"]) == ("3.000000", 1, "997.000000")


def test_unknown_zone_is_a_400(api, alice):
    response = api(alice).get(ANALYTICS, {"tz": "Atlantis/Capital"})

    assert response.status_code == 400
    assert response.json()["errors"]["tz"]
