"""Live cost: what goes out on /ws/streams/<sessionId>/ and which sessions anyone is watching.

Committed facts (charges, stops, low balance, reported metrics) are published on commit to the
session's group.
A sweep over 100,000 sessions must not send 100,000 group messages that nobody reads: each server
process's hub (streaming/hub.py) marks the sessions its sockets show as watched, all of them in one
round trip per tick, and the publisher sends only to watched sessions. On Redis the marks are one
sorted set (each session scored with the instant its mark lapses), so that finding which of a
sweep batch's 5,000 sessions are watched costs what is watched, not what was billed: nothing when
no one watches, the few watched ones otherwise, and a look-up of the batch's members only when
more sessions are watched than the batch holds (asking Redis for 5,000 keys per batch was a tenth
of a 100,000-session sweep, most of it building the command in Python).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone
from redis.exceptions import RedisError

from paygo.api.amounts import format_minor
from paygo.api.instants import instant
from paygo.ws import group_send
from streaming import billing, pricing

if TYPE_CHECKING:
    from streaming.selectors import LiveSession

logger = logging.getLogger("paygo.streaming")

WATCH_TTL_SECONDS = 15


def group_name(session_id) -> str:
    return f"stream.{session_id}"


def _watch_key(session_id) -> str:
    return f"stream:watched:{session_id}"


_WATCHED = "stream:watched"  # on Redis: one sorted set, session id -> when its mark lapses

# Both scripts read Redis's own clock, as a key's TTL does: a mark lapses WATCH_TTL_SECONDS after
# it was set, whatever the clocks of the processes that set and read it say.
_MARK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('EXPIRE', KEYS[1], ttl)
return #ARGV - 1
"""
# {0}: nothing is watched; {1, member...}: every watched session, no more than the batch holds;
# {2, now}: more are watched than the batch holds, look the batch's members up.
_WATCHED_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = redis.call('ZCOUNT', KEYS[1], now, '+inf')
if n == 0 then return {0} end
if n <= tonumber(ARGV[1]) then
    local members = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
    table.insert(members, 1, 1)
    return members
end
return {2, tostring(now)}
"""


def _redis():
    """The default cache's Redis client and the sorted set's key, or None off Redis."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(None, write=True), backend.make_key(_WATCHED)
    return None


def mark_watched(session_ids) -> None:
    """Sockets show these sessions: their committed charges are pushed for WATCH_TTL_SECONDS more.
    One round trip for all of them."""
    session_ids = [str(sid) for sid in session_ids]
    if not session_ids:
        return
    redis = _redis()
    if redis is None:
        cache.set_many({_watch_key(sid): 1 for sid in session_ids}, WATCH_TTL_SECONDS)
        return
    client, key = redis
    client.eval(_MARK, 1, key, WATCH_TTL_SECONDS, *session_ids)


def watched(session_ids) -> set[str]:
    """Which of these sessions someone watches: for a sweep's whole batch, one round trip that
    carries what is watched, or two when more is watched than the batch holds."""
    session_ids = [str(sid) for sid in session_ids]
    if not session_ids:
        return set()
    redis = _redis()
    if redis is None:
        keys = {_watch_key(sid): sid for sid in session_ids}
        return {keys[key] for key in cache.get_many(list(keys))}
    client, key = redis
    answer = client.eval(_WATCHED_NOW, 1, key, len(session_ids))
    if answer[0] == 0:
        return set()
    if answer[0] == 1:
        return {member.decode() for member in answer[1:]}.intersection(session_ids)
    now = float(answer[1])
    scores = client.zmscore(key, session_ids)
    return {sid for sid, score in zip(session_ids, scores, strict=True) if score is not None and score >= now}


def tick(session: LiveSession, now: datetime) -> dict:
    """The per-second estimate, from the figures the hub holds (no query): `estimatedCost` is what
    the session would have cost had its user stopped it at `now`; `balance` and `runwaySeconds`
    are what a sweep at `now` would publish in its `cost.charged`.

    Billing's own arithmetic (streaming_decide in streaming/sql/sweep_batch.sql), with the
    functions of streaming/pricing.py that metering.sql mirrors: what it has metered and not been
    charged up to `now`, or up to the instant it ended by itself when that came first (silent
    past its idle timeout, its funds or maxCost run out: billing.session_ends_by_itself_at), no
    more than its funds and what maxCost leaves can pay; a stop adds the rest of its minimum
    charge, out of what is there and within maxCost; the runway is how long what is left under
    both lasts, none once it has ended.
    The funds are the session's alone here: a sweep reckons a payer's balance and runway from all
    their sessions billed together, so with two running the tick tells more than the sweep will."""
    until = min(now, billing.session_ends_by_itself_at(session))
    elapsed = max(0, int((until - session.start_time).total_seconds()))
    unit_ms = pricing.TIME_UNIT_MS.get(session.unit)
    limit = billing.spendable(session)
    # Time is metered no further than its funds and maxCost pay (its end above); usage, as reported,
    # is charged what they can pay.
    metered = min(limit, max(0, _due(session, until, unit_ms) - session.metered_cost))
    left = limit - metered  # what its funds and maxCost leave it
    minimum_rest = max(0, min(session.minimum_charge - session.total_cost - metered, left))
    runway = None
    if unit_ms and session.rate:
        runway = 0 if until < now else pricing.runway_ms(rate=session.rate, unit_ms=unit_ms, funds=left) // 1000
    return {
        "type": "cost.tick",
        "sessionId": session.session_id,
        "elapsedSeconds": elapsed,
        "estimatedCost": format_minor(session.total_cost + metered + minimum_rest, session.decimals),
        "charged": format_minor(session.total_cost, session.decimals),
        "balance": format_minor(max(0, session.funds - metered), session.decimals),
        "runwaySeconds": runway,
        "at": instant(now),
    }


def _due(session: LiveSession, until: datetime, unit_ms: int | None) -> int:
    """What its metering has cost in all by `until`: its time, or the usage reported so far."""
    if unit_ms:
        elapsed_ms = pricing.elapsed_ms(session.start_time, until)
        return pricing.time_due(
            rate=session.rate, unit_ms=unit_ms, elapsed_ms=elapsed_ms, free_ms=session.free_seconds * 1000
        )
    if pricing.is_usage_unit(session.unit):
        quantity = pricing.USAGE_UNIT_QUANTITY[session.unit]
        return pricing.usage_due(rate=session.rate, unit_quantity=quantity, quantity=session.usage_quantity)
    return 0  # a per-session fee was charged at its start


def send(session_id, message: dict) -> None:
    async_to_sync(group_send)(group_name(session_id), {"type": "stream.event", "message": message})


def publish_metrics(session_id, sample: dict) -> None:
    """A quality sample the session's user reported (once committed): to everyone watching it.

    The session's own figures, as recorded (the newest entry of its qualityMetrics), so its
    vendor gets the whole message too."""
    send(session_id, {"type": "metrics.updated", "sessionId": str(session_id), "metrics": sample, "at": sample["at"]})


def publish_outcomes(outcomes: list[billing.Billed]) -> None:
    """After a committed billing: push to watchers, notify users and vendors."""
    from notifications import notify
    from wallets.models import Asset

    try:
        seen = watched(o.session_id for o in outcomes if o.charge or o.stops or o.alert_crossed)
    except RedisError:  # the notifications below are stored all the same
        logger.warning("Could not read which sessions are watched: no charge is pushed this time", exc_info=True)
        seen = set()
    # Charges are pushed only where someone watches; alerts and stops are also notified.
    interesting = [o for o in outcomes if o.stops or o.alert_crossed or (o.charge and o.session_id in seen)]
    if not interesting:
        return
    assets = {pk: (code, places) for pk, code, places in Asset.objects.values_list("id", "code", "decimals")}
    now = instant(timezone.now())
    for o in interesting:
        row = o
        token, places = assets[o.asset_id]
        sid = row.session_id
        total = format_minor(o.total_cost, places)
        runway = None if o.runway_ms is None else o.runway_ms // 1000
        messages = []
        if o.charge:
            messages.append(
                {
                    "type": "cost.charged",
                    "sessionId": sid,
                    "charged": total,
                    "amount": format_minor(o.charge, places),
                    "chargedUntil": instant(o.until),
                    "balance": format_minor(o.remaining, places),
                    "runwaySeconds": runway,
                    "at": now,
                }
            )
        if o.alert_crossed and not o.stops:
            messages.append(
                {
                    "type": "balance.low",
                    "sessionId": sid,
                    "runwaySeconds": runway,
                    "stopAt": instant(o.stop_at) if o.stop_at else None,
                    "at": now,
                }
            )
            notify(
                row.user_id,
                "alert",
                "Low balance",
                f"Your session on {row.service_name} can run about {max(0, runway or 0)} more seconds; "
                "top up to keep it going.",
                {"sessionId": sid, "runwaySeconds": runway},
            )
        if o.stops:
            messages.append(
                {
                    "type": "session.stopped",
                    "sessionId": sid,
                    "reason": o.stop_reason,
                    "totalCost": total,
                    "endTime": instant(o.stop_time),
                    "at": now,
                }
            )
            _notify_stopped(o, total, token)
        # A stop is pushed whether or not the session is marked watched yet: a socket opened since
        # the hub's last tick is in the session's group but not marked, and was never told.
        if sid in seen or o.stops:
            try:
                for message in messages:
                    send(sid, message)
            except Exception:  # a push is a courtesy: the next outcomes are pushed and notified all the same
                logger.warning("Could not push session %s's events to its sockets", sid, exc_info=True)


def _notify_stopped(o: billing.Billed, total: str, token: str) -> None:
    """Its user and its vendor are told what it cost, in its token: sessions run in several."""
    from notifications import notify

    row = o
    cost = f"{total} {token}"
    data = {"sessionId": row.session_id, "reason": o.stop_reason, "totalCost": total, "token": token}
    if o.stop_reason == "insufficient_funds":
        notify(
            row.user_id,
            "alert",
            "Session stopped: funds ran out",
            f"Your session on {row.service_name} stopped when your balance ran out. It cost {cost}.",
            data,
        )
    else:
        notify(
            row.user_id, "session", "Session ended", f"Your session on {row.service_name} ended; it cost {cost}.", data
        )
    notify(
        row.vendor_id,
        "session",
        "Session ended",
        f"A session on {row.service_name} ended; it was billed {cost} before the platform fee.",
        data,
    )
