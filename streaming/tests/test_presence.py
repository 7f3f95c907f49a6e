"""Honest presence: a session is billed until it stops, and silence costs at most the idle timeout.

A sign of life is the user's heartbeat, the user's open live socket or the vendor's usage report;
each of them moves `last_heartbeat_at` forward through services.sessions_seen.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from streaming import services
from streaming.models import SessionStatus, StopReason, StreamingSession
from streaming.tests.conftest import USDC, fresh, run_sweep, start
from wallets.tests.conftest import balance_of

pytestmark = pytest.mark.django_db


@override_settings(SESSION_IDLE_SECONDS=60)
def test_a_silent_running_session_is_billed_up_to_the_sweep(alice, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))

    clock.move(seconds=45)  # no heartbeat at all, still within the idle timeout
    run_sweep()

    session = fresh(session)
    assert session.status == SessionStatus.ACTIVE
    assert session.total_cost == 750_000
    assert balance_of(alice) == 10 * USDC - 750_000


@override_settings(SESSION_IDLE_SECONDS=60)
def test_a_session_that_never_heartbeats_is_stopped_idle_and_billed_its_timeout(alice, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    started = clock.now()

    clock.move(seconds=150)
    run_sweep()

    session = fresh(session)
    assert session.status == SessionStatus.STOPPED
    assert session.stop_reason == StopReason.IDLE
    # Stopped the moment the timeout ran out, billed up to there: silence costs the timeout, no more.
    assert session.end_time == started + timedelta(seconds=60)
    assert session.total_cost == USDC
    assert balance_of(alice) == 9 * USDC


@override_settings(SESSION_IDLE_SECONDS=60)
def test_an_idle_stop_bills_up_to_the_stop_not_the_last_heartbeat(alice, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    clock.move(seconds=30)
    services.session_heartbeat(session_id=session.pk)
    heartbeat_at = clock.now()

    clock.move(seconds=100)
    run_sweep()

    session = fresh(session)
    assert session.stop_reason == StopReason.IDLE
    assert session.end_time == heartbeat_at + timedelta(seconds=60)
    assert session.total_cost == 1_500_000  # 90 s at 1 USDC a minute
    assert balance_of(alice) == 10 * USDC - 1_500_000


def test_the_idle_timeout_is_a_minute_by_default():
    from django.conf import settings

    assert settings.SESSION_IDLE_SECONDS == 60


def test_sessions_seen_moves_every_active_session_forward_in_one_statement(
    alice, fund, make_service, clock, django_assert_num_queries
):
    fund(alice, 10 * USDC)
    first, second, ended = (start(alice, make_service("per_minute", rate=1_000)) for _ in range(3))
    services.session_stop(session=ended, reason="user")
    ended_seen = fresh(ended).last_heartbeat_at
    later = clock.move(seconds=20)

    with django_assert_num_queries(1):
        seen = services.sessions_seen(session_ids=[first.pk, second.pk, ended.pk], now=later)

    assert seen == 2
    assert fresh(first).last_heartbeat_at == fresh(second).last_heartbeat_at == later
    assert fresh(ended).last_heartbeat_at == ended_seen
    # Never backwards: an older sign of life (a late message) changes nothing.
    assert services.sessions_seen(session_ids=[first.pk], now=later - timedelta(seconds=5)) == 0
    assert fresh(first).last_heartbeat_at == later


def test_a_usage_report_is_a_sign_of_life(alice, victor, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_request", rate=1_000))
    later = clock.move(seconds=50)

    services.usage_report(session=session, event_id="e1", quantity=3)

    assert fresh(session).last_heartbeat_at == later


def test_a_metrics_report_is_a_sign_of_life(alice, fund, make_service, clock):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=1_000))
    later = clock.move(seconds=50)

    services.session_metrics_record(session=session, sample={"bitrate": 1000})

    assert fresh(session).last_heartbeat_at == later
    assert StreamingSession.objects.get(pk=session.pk).quality_metrics[-1]["bitrate"] == 1000


@override_settings(SESSION_IDLE_SECONDS=60)
def test_a_metrics_report_after_the_idle_timeout_ran_out_is_a_409_and_stores_nothing(
    api, alice, fund, make_service, clock
):
    """Silent past its timeout, the session ended then: a metrics report (the API's heartbeat) is
    told so, as a usage report is, instead of "Metrics recorded." for a session that no longer runs."""
    fund(alice, 20 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    clock.move(seconds=150)

    answer = api(alice).patch(f"/api/v1/streams/{session.session_id}/metrics", {"bitrate": 1}, format="json")

    assert answer.status_code == 409
    assert answer.json()["code"] == "session_ended"
    assert fresh(session).quality_metrics == []


# --- Found by the simulation (paygo/tests/test_simulation.py, issue 17) ----------------------------


@override_settings(SESSION_IDLE_SECONDS=60)
@pytest.mark.parametrize(("actor", "status"), [("user", SessionStatus.STOPPED), ("vendor", SessionStatus.STOPPED)])
def test_a_stop_asked_after_the_idle_timeout_ran_out_bills_up_to_the_timeout(
    alice, fund, make_service, clock, actor, status
):
    """Ten silent minutes and no sweep in between, then a stop: the session ended when its timeout
    ran out, as the sweep would have said, and silence costs the timeout, no more. (It was billed
    the ten minutes, stopped as asked: what silence cost depended on whether a sweep came first.)"""
    fund(alice, 20 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    started = clock.now()

    clock.move(minutes=10)
    session = services.session_stop(session=session, reason=actor)

    assert (session.status, session.stop_reason) == (status, StopReason.IDLE)
    assert session.end_time == started + timedelta(seconds=60)
    assert session.total_cost == USDC
    assert balance_of(alice) == 19 * USDC


@override_settings(SESSION_IDLE_SECONDS=60)
def test_a_heartbeat_after_the_idle_timeout_ran_out_does_not_revive_the_session(alice, fund, make_service, clock):
    """A heartbeat that comes after the timeout ran out (before any sweep saw it) is too late: the
    session stopped at the timeout. (It moved the session's last sign of life forward, and the next
    sweep billed the whole silence.)"""
    fund(alice, 20 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    started = clock.now()

    clock.move(seconds=150)
    assert services.session_heartbeat(session_id=session.pk) is False
    clock.move(seconds=10)
    run_sweep()

    session = fresh(session)
    assert session.stop_reason == StopReason.IDLE
    assert session.end_time == started + timedelta(seconds=60)
    assert session.total_cost == USDC


@override_settings(SESSION_IDLE_SECONDS=60)
def test_a_heartbeat_the_instant_the_timeout_runs_out_is_in_time(alice, fund, make_service, clock):
    fund(alice, 20 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))

    clock.move(seconds=60)
    assert services.session_heartbeat(session_id=session.pk) is True
    clock.move(seconds=30)
    run_sweep()

    session = fresh(session)
    assert session.status == SessionStatus.ACTIVE
    assert session.total_cost == 1_500_000


def _read(client, session) -> list[tuple[str, int]]:
    """(status, totalUsageSeconds) as the session's page and the list of active sessions show it."""
    detail = client.get(f"/api/v1/streams/{session.session_id}").json()["session"]
    listed = client.get("/api/v1/streams/active").json()["sessions"]
    return [(detail["status"], detail["totalUsageSeconds"])] + [(s["status"], s["totalUsageSeconds"]) for s in listed]


@override_settings(SESSION_IDLE_SECONDS=60)
@pytest.mark.parametrize("who", ["alice", "victor", "olga"])
def test_a_session_silent_past_its_idle_end_reads_no_longer_than_it_is_billed(
    api, request, alice, fund, make_service, clock, who
):
    """Silent since its start, it ended at 60 s whoever bills it later: before the next sweep its
    page said 110 s of use, and the sweep then billed 60. It reads active until billing records
    the stop, its use stopped at the idle end."""
    fund(alice, 100 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    client = api(request.getfixturevalue(who))
    clock.move(seconds=110)

    before = _read(client, session)
    run_sweep()

    assert before == [("active", 60), ("active", 60)]
    detail = client.get(f"/api/v1/streams/{session.session_id}").json()["session"]
    assert (detail["status"], detail["stopReason"], detail["totalUsageSeconds"]) == ("stopped", "idle", 60)
    assert fresh(session).total_cost == USDC
    if who == "alice":
        mine = client.get("/api/v1/streams/my-sessions").json()["sessions"]
        assert [(s["status"], s["totalUsageSeconds"]) for s in mine] == [("stopped", 60)]


@override_settings(SESSION_IDLE_SECONDS=60)
@pytest.mark.parametrize(("top_up", "seconds"), [(0, 90), (10 * USDC, 100)], ids=["ran-out", "topped-up"])
def test_a_session_whose_money_ran_out_reads_no_longer_than_it_is_billed(
    api, alice, fund, make_service, clock, top_up, seconds
):
    """1.5 USDC at 1 USDC a minute: the sweep at 60 s tells it its money runs out at 90 s. At
    100 s, before the next sweep, it has used 90 s; topped up since, it goes on."""
    fund(alice, 1_500_000)
    session = start(alice, make_service("per_minute", rate=USDC))
    clock.move(seconds=60)
    services.session_heartbeat(session_id=session.pk)
    run_sweep()
    clock.move(seconds=35)
    services.session_heartbeat(session_id=session.pk)
    if top_up:
        fund(alice, top_up)
    clock.move(seconds=5)

    before = _read(api(alice), session)
    run_sweep()

    assert before == [("active", seconds), ("active", seconds)]
    billed = fresh(session)
    if top_up:
        assert (billed.status, billed.total_cost) == (SessionStatus.ACTIVE, 100 * USDC // 60)
    else:
        assert (billed.stop_reason, billed.total_usage_seconds) == ("insufficient_funds", 90)
        assert billed.total_cost == 1_500_000
