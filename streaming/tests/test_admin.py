"""The sessions admin: operators stop a session with the permission the API asks for it."""

from __future__ import annotations

import pytest
from django.test import Client

from conftest import grant
from streaming.models import SessionStatus
from streaming.tests.conftest import USDC, start

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(alice, fund, make_service):
    fund(alice, 10 * USDC)
    return start(alice, make_service("per_minute", rate=USDC))


def _stop(user, session):
    client = Client()
    client.force_login(user)
    return client.post(
        "/admin/streaming/streamingsession/", {"action": "stop_sessions", "_selected_action": [session.pk]}
    )


def test_staff_who_may_only_view_sessions_are_not_offered_the_stop(stan, session):
    response = _stop(grant(stan, "streaming.view_streamingsession"), session)

    assert response.status_code == 200  # the list again: no action is offered
    session.refresh_from_db()
    assert session.status == SessionStatus.ACTIVE


def test_staff_who_may_change_sessions_stop_them(stan, session):
    response = _stop(grant(stan, "streaming.change_streamingsession"), session)

    assert response.status_code == 302
    session.refresh_from_db()
    assert (session.status, session.stop_reason) == (SessionStatus.STOPPED, "staff")
