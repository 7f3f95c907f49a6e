"""Periods of the dashboards: a window of whole days in the caller's time zone, cut into buckets.

A bucket is named by the local date it starts on (the Monday of a week, the 1st of a month, the
1st of January); the database groups with Trunc*(…, tzinfo=tz) so that a day is the caller's day,
23 or 25 hours long across a DST change.
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models.functions import TruncDay, TruncMonth, TruncWeek, TruncYear

from paygo.api.filters import reversed_range

DAY, WEEK, MONTH, YEAR = "day", "week", "month", "year"
PERIODS = (DAY, WEEK, MONTH, YEAR)
# How many buckets a window has when the caller gives no dates: a month of days, a quarter of
# weeks, a year of months, five years.
DEFAULT_BUCKETS = {DAY: 30, WEEK: 12, MONTH: 12, YEAR: 5}
MAX_BUCKETS = 1000
# The dates a caller may give. Python's dates stop at years 1 and 9999, and a window reaches past
# the dates given (back to the start of a bucket, a day on in UTC, a bucket on), so a date near
# either end overflows. Rather than catch that wherever a window is computed, dates are kept to
# a range far from both ends and far beyond any data PayGo holds: a clear 400, the same rule for
# every period and time zone.
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(9000, 12, 31)
_TRUNC = {DAY: TruncDay, WEEK: TruncWeek, MONTH: TruncMonth, YEAR: TruncYear}


class PeriodError(ValueError):
    """A period, time zone or date range the dashboards cannot use; `field` names the parameter."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def parse_tz(name: str | None) -> ZoneInfo:
    """The IANA time zone `name` (UTC when empty), or PeriodError.

    Only the zones the time zone database lists: ZoneInfo() also opens any file under its folders, so
    a folder ("America") was an OSError (a 500), and the leap-second copies ("right/UTC") were zones
    whose local times PostgreSQL and Python put seconds apart."""
    if not name:
        return ZoneInfo("UTC")
    try:
        if name not in _zone_names():
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise PeriodError("tz", f"Unknown time zone {name[:64]!r}; use an IANA name such as Europe/Paris.") from None


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def floor(day: date, period: str) -> date:
    """The first day of the bucket `day` falls in."""
    if period == DAY:
        return day
    if period == WEEK:
        return day - timedelta(days=day.weekday())
    if period == MONTH:
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def shift(start: date, period: str, n: int) -> date:
    """The bucket start `n` buckets after (or before, n < 0) the bucket starting on `start`."""
    if period == DAY:
        return start + timedelta(days=n)
    if period == WEEK:
        return start + timedelta(weeks=n)
    if period == MONTH:
        months = start.year * 12 + start.month - 1 + n
        return date(months // 12, months % 12 + 1, 1)
    return date(start.year + n, 1, 1)


def trunc(period: str, field: str, tz: ZoneInfo):
    """The database's bucket of `field` (a local-time truncation in `tz`)."""
    return _TRUNC[period](field, tzinfo=tz)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


@dataclass(frozen=True)
class Window:
    """[start, end) in time zone `tz`, cut into buckets of `period`."""

    period: str
    tz: ZoneInfo
    start: datetime
    end: datetime
    buckets: tuple[date, ...]

    def trunc(self, field: str):
        return trunc(self.period, field, self.tz)

    def key(self, value: datetime | date) -> date:
        """The bucket of a value the database truncated (aware, or a date on some backends)."""
        if isinstance(value, datetime):
            value = value.astimezone(self.tz).date() if value.tzinfo else value.date()
        return floor(value, self.period)

    def label(self, start: date) -> str:
        if self.period == MONTH:
            return f"{start.year:04d}-{start.month:02d}"
        if self.period == YEAR:
            return f"{start.year:04d}"
        return start.isoformat()

    def ranges(self) -> list[tuple[datetime, datetime]]:
        """[start, end) in UTC of each bucket, cut to the window (its first bucket may start later)."""
        edges = [local_midnight(start, self.tz).astimezone(UTC) for start in self.buckets]
        edges = [max(edge, self.start) for edge in edges] + [self.end]
        return list(pairwise(edges))

    @property
    def first_day(self) -> date:
        return self.start.astimezone(self.tz).date()

    @property
    def last_day(self) -> date:
        """The last local day inside the window (end is exclusive)."""
        return (self.end.astimezone(self.tz) - timedelta(microseconds=1)).date()


def window(
    *,
    period: str,
    tz: ZoneInfo,
    now: datetime,
    since: date | None = None,
    until: date | None = None,
) -> Window:
    """The window of whole local days from `since` to `until` (both included).

    Without `until` it ends today; without `since` it starts DEFAULT_BUCKETS[period] buckets back,
    at the start of a bucket, so that every bucket of a default window is whole.
    """
    if period not in PERIODS:
        raise PeriodError("period", f"Choose one of {', '.join(PERIODS)}.")
    for field, day in (("from", since), ("to", until)):
        if day is not None and not EARLIEST_DAY <= day <= LATEST_DAY:
            raise PeriodError(field, f"Give a date from {EARLIEST_DAY} to {LATEST_DAY}.")
    today = now.astimezone(tz).date()
    last = until or today
    first = since or shift(floor(last, period), period, -(DEFAULT_BUCKETS[period] - 1))
    if refusal := reversed_range(first, last):  # `to` is today when not given
        raise PeriodError("from", refusal)
    buckets = []
    cursor = floor(first, period)
    while cursor <= last:
        buckets.append(cursor)
        if len(buckets) > MAX_BUCKETS:
            raise PeriodError("from", f"That range has more than {MAX_BUCKETS} {period}s; choose a longer period.")
        cursor = shift(cursor, period, 1)
    start = local_midnight(first, tz)
    end = local_midnight(last + timedelta(days=1), tz)
    return Window(period=period, tz=tz, start=start.astimezone(UTC), end=end.astimezone(UTC), buckets=tuple(buckets))
