"""The ledger's scheduled health check, which reads each entry once, and its latest result.

The conservation check (wallets.selectors.ledger_health, streaming.selectors.charges_health) reads
every entry: about a minute at ten million, under a day of production. Run every two minutes it
would soon outlast its time limit and never finish. Entries are append-only (the ledger's triggers
refuse UPDATE and DELETE), so what is checked of an entry stays true: each run checks the entries
committed since the last one (the watermark is the rollup's, dashboards.rollup._committed_through),
every transaction among them whole, and adds them to each account's and each session's sums
(CheckedBalance, CheckedCharges); an account's balance is then compared with its sum plus the
entries after the watermark, a session's total cost likewise, in one statement each. A run reads
the new entries, the accounts, the active holds and the sessions, never the old entries.

What that does not see, a change to an old row past the database's own guards, the full check
does (manage.py ledger_check --full, weekly off-peak: README, "The schedule"). No request runs
either: the dashboards show the latest result and its age.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from dashboards import rollup
from dashboards.models import CheckedBalance, CheckedCharges, HealthMark
from paygo.api.instants import instant
from streaming.selectors import charge_entries_health, charges_health, session_totals_health
from wallets.models import Entry
from wallets.selectors import ledger_accounts_health, ledger_entries_health, ledger_health

HEALTH_ID = 1
CACHE_KEY = "dashboards:ledger-health"
# A result older than this is shown as stale: the scheduled check (every 120 s) stopped finishing.
MAX_AGE_SECONDS = 300


def ledger_health_check() -> dict:
    """Check the entries committed since the last run, then every account's and session's state
    against the sums; keep the result (for latest()) and return it."""
    through = rollup._committed_through(Entry)  # None: writers in flight; the next run takes them
    HealthMark.objects.get_or_create(pk=HEALTH_ID)
    chunk = settings.DASHBOARDS_ROLLUP_CHUNK
    while True:
        with transaction.atomic():
            mark = HealthMark.objects.select_for_update().get(pk=HEALTH_ID)
            if through is not None and through > mark.entry_id:
                _check_entries(mark, rollup._chunk_end(Entry, after=mark.entry_id, through=through, rows=chunk))
                continue
            found = {
                **ledger_accounts_health(sums=CheckedBalance._meta.db_table, through=mark.entry_id),
                **session_totals_health(sums=CheckedCharges._meta.db_table, through=mark.entry_id),
                **mark.found,
            }
            mark.result = {"healthy": not any(found.values()), **found, "checked_through_entry": mark.entry_id}
            mark.checked_at = timezone.now()
            mark.save(update_fields=["result", "checked_at"])
            break
    _keep()
    return mark.result


def _check_entries(mark: HealthMark, upto: int) -> None:
    """Check the entries in (mark.entry_id, upto], add them to the sums, move the mark past them."""
    after = mark.entry_id
    found = {**ledger_entries_health(after=after, through=upto), **charge_entries_health(after=after, through=upto)}
    entries = "FROM wallets_entry WHERE id > %s AND id <= %s"
    rollup._add(
        CheckedBalance,
        (f"SELECT account_id, SUM(amount) AS total {entries} GROUP BY account_id ORDER BY account_id", (after, upto)),
        key=("account_id",),
        added=("total",),
    )
    rollup._add(
        CheckedCharges,
        (
            f"SELECT session_id, -SUM(amount) AS total {entries} AND session_id IS NOT NULL "
            "GROUP BY session_id ORDER BY session_id",
            (after, upto),
        ),
        key=("session_id",),
        added=("total",),
    )
    mark.found = {name: mark.found.get(name, 0) + count for name, count in found.items()}
    mark.entry_id = upto
    mark.save(update_fields=["found", "entry_id"])


def ledger_health_full() -> dict:
    """The whole ledger checked (every entry read, tens of seconds at ten million): for an operator,
    off-peak. Its result is kept beside the scheduled one's, and shown with it."""
    ledger, charges = ledger_health(), charges_health()
    result = {**ledger, **charges, "healthy": ledger["healthy"] and charges["healthy"]}
    HealthMark.objects.get_or_create(pk=HEALTH_ID)
    HealthMark.objects.filter(pk=HEALTH_ID).update(full_result=result, full_checked_at=timezone.now())
    _keep()
    return result


def _keep() -> dict:
    """The kept results, read from their row into the cache (the row is the truth: a cache that
    lost them costs a request one query)."""
    mark = HealthMark.objects.filter(pk=HEALTH_ID).values("result", "checked_at", "full_result", "full_checked_at")
    kept = mark.first() or {"result": None, "checked_at": None, "full_result": None, "full_checked_at": None}
    cache.set(CACHE_KEY, kept, MAX_AGE_SECONDS)
    return kept


def latest() -> dict:
    """The latest results, read (never computed) for the dashboards: the scheduled check's, with
    the time it ran and its age, and the latest full check's. `healthy` is None before the first
    run, and False when either found something."""
    kept = cache.get(CACHE_KEY) or _keep()
    result = kept["result"] or {"healthy": None}
    full = kept["full_result"]
    age = (timezone.now() - kept["checked_at"]).total_seconds() if kept["checked_at"] else None
    return {
        **result,
        "healthy": None if result["healthy"] is None else result["healthy"] and (full is None or full["healthy"]),
        "checked_at": instant(kept["checked_at"]) if kept["checked_at"] else None,
        "age_seconds": None if age is None else int(age),
        "stale": age is not None and age > MAX_AGE_SECONDS,
        "full_check": None
        if full is None
        else {"healthy": full["healthy"], "checked_at": instant(kept["full_checked_at"])},
    }
