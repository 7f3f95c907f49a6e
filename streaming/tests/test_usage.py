"""Usage reports are money (each is charged on the next sweep): an Idempotency-Key holds for them."""

from __future__ import annotations

import pytest

from streaming.models import UsageEvent
from streaming.tests.conftest import USDC, start

pytestmark = pytest.mark.django_db


@pytest.fixture
def metered(alice, fund, make_service):
    fund(alice, 10 * USDC)
    return start(alice, make_service("per_request", rate=1_000))


def _report(client, session, body: dict, key: str):
    return client.post(f"/api/v1/streams/{session.session_id}/usage", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_retry_under_the_same_key_replays_the_first_answer(api, victor, metered):
    client = api(victor)

    first = _report(client, metered, {"eventId": "e1", "quantity": 5}, "u-1")
    retry = _report(client, metered, {"eventId": "e1", "quantity": 5}, "u-1")

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    metered.refresh_from_db()
    assert metered.usage_quantity == 5


def test_the_same_key_with_another_event_is_409_and_counts_nothing(api, victor, metered):
    client = api(victor)
    _report(client, metered, {"eventId": "e1", "quantity": 5}, "u-1")

    other = _report(client, metered, {"eventId": "e2", "quantity": 7}, "u-1")

    assert other.status_code == 409
    metered.refresh_from_db()
    assert metered.usage_quantity == 5
    assert list(UsageEvent.objects.values_list("event_id", flat=True)) == ["e1"]
