"""Windows and buckets in the caller's time zone: month ends, week starts, DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from dashboards.periods import (
    DAY,
    EARLIEST_DAY,
    LATEST_DAY,
    MONTH,
    PERIODS,
    WEEK,
    YEAR,
    PeriodError,
    parse_tz,
    shift,
    window,
)
from dashboards.tests.conftest import NOW, USDC, make_service, run_session

NEW_YORK = ZoneInfo("America/New_York")


def test_a_day_across_the_end_of_dst_lasts_25_hours():
    # 2026-11-01: New York goes from EDT (-4) back to EST (-5) at 02:00.
    day = window(period=DAY, tz=NEW_YORK, now=NOW, since=date(2026, 11, 1), until=date(2026, 11, 1))

    assert day.start == datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
    assert day.end == datetime(2026, 11, 2, 5, 0, tzinfo=UTC)
    assert day.buckets == (date(2026, 11, 1),)


def test_a_day_across_the_start_of_dst_lasts_23_hours():
    day = window(period=DAY, tz=NEW_YORK, now=NOW, since=date(2026, 3, 8), until=date(2026, 3, 8))

    assert (day.end - day.start).total_seconds() == 23 * 3600


def test_month_ends_and_year_ends():
    months = window(period=MONTH, tz=ZoneInfo("UTC"), now=NOW, since=date(2025, 12, 31), until=date(2026, 3, 1))

    assert [months.label(b) for b in months.buckets] == ["2025-12", "2026-01", "2026-02", "2026-03"]
    assert months.start == datetime(2025, 12, 31, tzinfo=UTC)
    assert months.end == datetime(2026, 3, 2, tzinfo=UTC)
    assert shift(date(2026, 12, 1), MONTH, 1) == date(2027, 1, 1)
    assert shift(date(2026, 1, 1), MONTH, -1) == date(2025, 12, 1)


def test_default_windows_end_today_in_the_callers_zone():
    late = datetime(2026, 11, 1, 3, 30, tzinfo=UTC)  # still October 31st in New York

    assert window(period=DAY, tz=NEW_YORK, now=late).buckets[-1] == date(2026, 10, 31)
    assert window(period=DAY, tz=ZoneInfo("UTC"), now=late).buckets[-1] == date(2026, 11, 1)
    assert window(period=MONTH, tz=NEW_YORK, now=late).buckets[-1] == date(2026, 10, 1)
    weeks = window(period=WEEK, tz=ZoneInfo("UTC"), now=NOW)  # NOW is a Friday
    assert (weeks.buckets[-1], len(weeks.buckets)) == (date(2026, 11, 16), 12)
    assert all(b.weekday() == 0 for b in weeks.buckets)
    assert window(period=YEAR, tz=NEW_YORK, now=NOW).buckets[0] == date(2022, 1, 1)


@pytest.mark.parametrize("name", ["America", "Etc", "right/UTC", "posix/Europe/Paris", "America/", "Europe/../UTC"])
def test_a_folder_or_a_copy_of_the_zone_database_is_no_time_zone(name):
    # A folder was an OSError (a 500); the leap-second copies put local times seconds off PostgreSQL's.
    with pytest.raises(PeriodError):
        parse_tz(name)


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["America", "right/UTC"])
def test_a_dashboard_given_one_is_400(api, alice, name):
    response = api(alice).get("/api/v1/dashboard/user/overview", {"tz": name})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["tz"]


def test_unknown_time_zones_and_periods():
    with pytest.raises(PeriodError):
        parse_tz("Nowhere/Land")
    with pytest.raises(PeriodError):
        parse_tz("/etc/localtime")
    with pytest.raises(PeriodError):
        window(period="fortnight", tz=NEW_YORK, now=NOW)
    assert parse_tz("") == ZoneInfo("UTC")


# The zones furthest ahead of and behind UTC, where a local midnight is furthest from UTC's.
EDGE_ZONES = [ZoneInfo("UTC"), ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Pacific/Pago_Pago"), ZoneInfo("Asia/Tokyo")]


@pytest.mark.parametrize("tz", EDGE_ZONES, ids=str)
@pytest.mark.parametrize("period", PERIODS)
def test_windows_at_both_ends_of_the_allowed_dates_are_computed(period, tz):
    for since, until in (
        (EARLIEST_DAY, EARLIEST_DAY),
        (None, EARLIEST_DAY),
        (LATEST_DAY, LATEST_DAY),
        (None, LATEST_DAY),
    ):
        span = window(period=period, tz=tz, now=NOW, since=since, until=until)

        assert span.last_day == until
        assert span.buckets[-1] <= until < shift(span.buckets[-1], period, 1)
        assert len(span.ranges()) == len(span.buckets)


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        (None, date(9999, 12, 31), "to"),
        (None, date(9001, 1, 1), "to"),
        (None, date(1, 1, 15), "to"),
        (None, date(1999, 12, 31), "to"),
        (date(1, 1, 1), date(1, 1, 1), "from"),
        (date(1999, 12, 31), date(2000, 1, 1), "from"),
        (date(9001, 1, 1), None, "from"),
    ],
)
@pytest.mark.parametrize("period", PERIODS)
def test_dates_outside_the_allowed_range_are_a_period_error(period, since, until, field):
    with pytest.raises(PeriodError) as refused:
        window(period=period, tz=ZoneInfo("Asia/Tokyo"), now=NOW, since=since, until=until)

    assert refused.value.field == field
    assert str(refused.value) == "Give a date from 2000-01-01 to 9000-12-31."


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "who"),
    [
        ("/api/v1/dashboard/user/overview", "alice"),
        ("/api/v1/dashboard/vendor/overview", "victor"),
        ("/api/v1/dashboard/vendor/earnings", "victor"),
        ("/api/v1/dashboard/admin/overview", "olga"),
    ],
)
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("to=9999-12-31", "to"),
        ("to=9999-12-31&period=day", "to"),
        ("to=9999-12-31&period=year", "to"),
        ("to=0001-01-15", "to"),
        ("to=0001-03-01&period=month", "to"),
        ("from=0001-01-01&to=0001-01-01&tz=Asia/Tokyo", "from"),
        ("from=9999-12-31", "from"),
    ],
)
def test_dates_near_the_ends_of_the_calendar_are_a_400(request, api, path, who, query, field):
    response = api(request.getfixturevalue(who)).get(f"{path}?{query}")

    assert response.status_code == 400
    body = response.json()
    assert (body["statusCode"], body["code"]) == (400, "invalid")
    assert body["errors"] == {field: ["Give a date from 2000-01-01 to 9000-12-31."]}


@pytest.mark.django_db
def test_charges_fall_on_the_callers_day_across_the_dst_change(api, bob, wanda, fund):
    """Per-session fees are charged at the start: 03:59 UTC on November 1st is October 31st in New
    York (EDT), 04:30 UTC is 00:30 on November 1st (EDT), and 04:30 UTC on November 2nd is still
    November 1st there (EST, 23:30)."""
    fund(bob, 100 * USDC)
    service = make_service(wanda, unit="per_session", rate=USDC)
    for start in (
        datetime(2026, 11, 1, 3, 59, tzinfo=UTC),
        datetime(2026, 11, 1, 4, 30, tzinfo=UTC),
        datetime(2026, 11, 2, 4, 30, tzinfo=UTC),
    ):
        run_session(bob, service, start, 60)

    params = {"from": "2026-10-31", "to": "2026-11-02"}
    new_york = api(wanda).get("/api/v1/dashboard/vendor/earnings", {**params, "tz": "America/New_York"}).json()
    utc = api(wanda).get("/api/v1/dashboard/vendor/earnings", params).json()

    assert [(r["period"], r["earnings"]) for r in new_york["report"]] == [
        ("2026-10-31", "0.900000"),
        ("2026-11-01", "1.800000"),
        ("2026-11-02", "0.000000"),
    ]
    assert [(r["period"], r["earnings"]) for r in utc["report"]] == [
        ("2026-10-31", "0.000000"),
        ("2026-11-01", "1.800000"),
        ("2026-11-02", "0.900000"),
    ]
    assert new_york["totalEarnings"] == utc["totalEarnings"] == "2.700000"
