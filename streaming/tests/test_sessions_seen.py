"""services.sessions_seen: the signs of life of many sessions (their users' open live sockets) at once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streaming import services
from streaming.tests.conftest import USDC, fresh, start, stop

pytestmark = pytest.mark.django_db


def test_one_update_moves_every_active_sessions_heartbeat_forward(
    alice, bob, fund, make_service, clock, django_assert_num_queries
):
    fund(alice, 10 * USDC)
    fund(bob, 10 * USDC)
    watched, ahead, ended = (
        start(alice, make_service()),
        start(bob, make_service()),
        start(alice, make_service()),
    )
    stop(ended)
    ended_beat = fresh(ended).last_heartbeat_at
    later = clock.move(seconds=30)
    services.session_heartbeat(session_id=ahead.pk, now=later + timedelta(seconds=5))

    with django_assert_num_queries(1):
        moved = services.sessions_seen(session_ids=[watched.pk, ahead.pk, ended.pk], now=later)

    assert moved == 1
    assert fresh(watched).last_heartbeat_at == later
    assert fresh(ahead).last_heartbeat_at == later + timedelta(seconds=5)  # never moved back
    assert fresh(ended).last_heartbeat_at == ended_beat  # an ended session is left as it ended


def test_no_sessions_no_query(django_assert_num_queries, clock):
    with django_assert_num_queries(0):
        assert services.sessions_seen(session_ids=[], now=clock.now()) == 0
