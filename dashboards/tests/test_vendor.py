"""A vendor's dashboard and earnings report: figures against the ledger, parameters, who sees what."""

from __future__ import annotations

import pytest
from django.db.models import Sum

from conftest import grant
from wallets.models import AccountKind, Entry, TransactionKind

pytestmark = pytest.mark.django_db

OVERVIEW = "/api/v1/dashboard/vendor/overview"
EARNINGS = "/api/v1/dashboard/vendor/earnings"


def ledger_earnings(vendor) -> int:
    """The vendor's credits on charges, straight from the ledger."""
    return int(
        Entry.objects.filter(
            account__kind=AccountKind.USER,
            account__owner=vendor,
            transaction__kind=TransactionKind.CHARGE,
            amount__gt=0,
        ).aggregate(total=Sum("amount"))["total"]
        or 0
    )


def test_overview_figures_equal_the_hand_computed_ledger(api, victor, history):
    body = api(victor).get(OVERVIEW).json()

    assert body["overview"] == {
        "totalEarnings": "13.950000",  # 9 + 2.25 + 2.7: each charge less floor(10%)
        "totalSessionsHosted": 4,
        "activeServices": 2,
        "totalServices": 2,
        "averageEarningPerSession": "3.487500",  # 13.95 / 4
    }
    assert ledger_earnings(victor) == 13_950_000
    assert body["topServices"] == [
        # Sessions hosted: s1, s5 and s4 (still running, nothing charged yet).
        {"serviceId": history["minutes"].pk, "name": "Minutes", "earnings": "11.700000", "sessions": 3},
        {"serviceId": history["pass"].pk, "name": "Pass", "earnings": "2.250000", "sessions": 1},
    ]
    assert [(c["name"], c["sessions"], c["earnings"]) for c in body["recentCustomers"]] == [
        ("Alice", 3, "11.250000"),
        ("Bob", 1, "2.700000"),
    ]
    assert all(type(c["sessions"]) is int for c in body["recentCustomers"])  # a count, as the schema says
    assert {s["name"]: (s["sessions"], s["earnings"]) for s in body["services"]} == {
        "Minutes": (3, "11.700000"),
        "Pass": (1, "2.250000"),
    }
    assert [s["vendorEarnings"] for s in body["recentSessions"]] == ["0.000000", "2.700000", "2.250000", "9.000000"]
    assert body["analytics"][-2:] == [
        {"period": "2026-10", "earnings": "9.000000", "sessions": 1},
        {"period": "2026-11", "earnings": "4.950000", "sessions": 3},
    ]


def test_a_vendor_sees_only_their_own_earnings(api, wanda, history):
    body = api(wanda).get(OVERVIEW).json()

    assert body["overview"]["totalEarnings"] == "1.111711"  # 1.235234 less 0.123523
    assert body["overview"]["totalSessionsHosted"] == 1
    assert [s["name"] for s in body["services"]] == ["Seconds"]
    assert ledger_earnings(wanda) == 1_111_711


def test_earnings_report_per_day_in_new_york(api, victor, history):
    body = api(victor).get(EARNINGS, {"tz": "America/New_York", "from": "2026-10-31", "to": "2026-11-02"}).json()

    # The Pass session was charged at 23:30 on October 31st in New York (03:30 UTC on November 1st).
    assert body == {
        "token": "USDC",
        "period": "day",
        "tz": "America/New_York",
        "from": "2026-10-31",
        "to": "2026-11-02",
        "report": [
            {"period": "2026-10-31", "earnings": "2.250000", "sessions": 1},
            {"period": "2026-11-01", "earnings": "0.000000", "sessions": 0},
            {"period": "2026-11-02", "earnings": "0.000000", "sessions": 0},
        ],
        "totalEarnings": "2.250000",
        "totalSessions": 1,
    }


def test_earnings_report_totals_equal_the_ledger(api, victor, history):
    body = api(victor).get(EARNINGS, {"period": "month", "from": "2026-01-01", "to": "2026-12-31"}).json()

    assert [row["period"] for row in body["report"]][:2] == ["2026-01", "2026-02"]
    assert len(body["report"]) == 12
    assert body["totalEarnings"] == "13.950000"
    assert body["totalSessions"] == 4


def test_earnings_report_defaults_to_the_last_30_days(api, victor, history):
    body = api(victor).get(EARNINGS).json()

    assert (body["period"], body["from"], body["to"], len(body["report"])) == ("day", "2026-10-22", "2026-11-20", 30)
    assert body["totalEarnings"] == "4.950000"  # October 5th is outside


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"period": "hour"}, "period"),
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
        ({"tz": "../../etc/passwd"}, "tz"),
        ({"from": "2026-02-30"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "from"),
        ({"from": "1900-01-01", "to": "2026-01-01"}, "from"),  # more than 1000 days
    ],
)
def test_bad_parameters_are_a_400(api, victor, params, field):
    response = api(victor).get(EARNINGS, params)

    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_users_have_no_vendor_dashboard(api, alice, victor):
    assert api(alice).get(OVERVIEW).status_code == 403
    assert api(alice).get(EARNINGS).status_code == 403
    assert api(alice).get(EARNINGS, {"vendorId": victor.pk}).status_code == 403


def test_a_vendor_cannot_name_another_vendor(api, victor, wanda):
    assert api(wanda).get(OVERVIEW, {"vendorId": victor.pk}).status_code == 403


def test_a_vendor_cannot_read_another_vendors_earnings(api, victor, wanda, history):
    response = api(wanda).get(EARNINGS, {"vendorId": victor.pk})

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "totalEarnings" not in response.json()


def test_staff_see_any_vendors_earnings(api, olga, alice, victor, history):
    client = api(olga)

    assert client.get(OVERVIEW, {"vendorId": victor.pk}).json()["overview"]["totalEarnings"] == "13.950000"
    assert client.get(EARNINGS, {"vendorId": victor.pk, "period": "year"}).json()["totalEarnings"] == "13.950000"
    assert client.get(OVERVIEW, {"vendorId": alice.pk}).status_code == 404  # not a vendor
    assert client.get(OVERVIEW, {"vendorId": "x"}).status_code == 400  # no id at all
    assert client.get(EARNINGS, {"vendorId": "\u0661"}).json()["errors"] == {
        "vendorId": ["A valid integer is required."]
    }
    for signed in (f"+{victor.pk}", f"-{victor.pk}"):  # int() reads +N as victor's
        assert client.get(OVERVIEW, {"vendorId": signed}).json()["errors"] == {
            "vendorId": ["A valid integer is required."]
        }


# What staff need to look at a vendor's dashboard: the view permissions on what it shows.
VENDOR_DASHBOARD = ("streaming.view_streamingsession", "wallets.view_ledgertransaction", "marketplace.view_service")


def test_staff_without_the_view_permissions_cannot_name_a_vendor(api, stan, victor, history):
    for missing in (*VENDOR_DASHBOARD, None):
        stan.user_permissions.clear()
        client = api(grant(stan, *(p for p in VENDOR_DASHBOARD if p != missing)) if missing else stan)

        assert client.get(OVERVIEW, {"vendorId": victor.pk}).status_code == 403
        assert client.get(EARNINGS, {"vendorId": victor.pk}).status_code == 403


def test_staff_with_the_view_permissions_see_any_vendors_earnings(api, stan, victor, history):
    client = api(grant(stan, *VENDOR_DASHBOARD))

    assert client.get(OVERVIEW, {"vendorId": victor.pk}).json()["overview"]["totalEarnings"] == "13.950000"
    assert client.get(EARNINGS, {"vendorId": victor.pk, "period": "year"}).json()["totalEarnings"] == "13.950000"


@pytest.mark.parametrize("rolled_up", [False, True])
def test_a_retired_services_earnings_keep_its_name(api, alice, victor, fund, rolled_up):
    """What a retired service earned is still the vendor's: it was labelled "Other"."""
    from datetime import UTC, datetime

    from dashboards import rollup
    from dashboards.tests.conftest import USDC, make_service, run_session
    from marketplace.services import service_delete

    fund(alice, 100 * USDC)
    service = make_service(victor, name="Old Consulting", unit="per_session", rate=3 * USDC)
    run_session(alice, service, datetime(2026, 11, 1, 10, 0, tzinfo=UTC), 60)
    service_delete(service=service)
    if rolled_up:
        rollup.rollup_advance()

    body = api(victor).get(OVERVIEW).json()

    assert [(row["name"], row["earnings"]) for row in body["topServices"]] == [("Old Consulting", "2.700000")]
    assert (body["overview"]["totalServices"], body["services"]) == (0, [])  # the lists are of those not retired
