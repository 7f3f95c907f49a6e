"""Usage reports are money (each is charged on the next sweep): an Idempotency-Key holds for them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from conftest import money_db
from streaming.models import SessionStatus, StopReason, UsageEvent
from streaming.tests.conftest import USDC, run_sweep, start, stop
from wallets.tests.conftest import balance_of

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


@pytest.mark.parametrize("quantity", ["\u0661\u0660", "\uff11\uff10", "1_0", " 10", "10.0", 10.0])
def test_a_quantity_is_a_json_integer_or_ascii_digits(api, alice, victor, metered, quantity):
    """Arabic-Indic one and zero were counted (and billed) as 10 requests: DRF's IntegerField reads
    int(str(x)). Refused, as amounts in other digits are; nothing counted or held."""
    refused = _report(api(victor), metered, {"eventId": "e1", "quantity": quantity}, "u-1")
    digits = _report(api(victor), metered, {"eventId": "e2", "quantity": "10"}, "u-2")

    assert refused.status_code == 400
    assert refused.json() == {
        "message": "quantity: A valid integer is required.",
        "statusCode": 400,
        "code": "invalid",
        "errors": {"quantity": ["A valid integer is required."]},
    }
    assert digits.status_code == 201  # ASCII digits in a string, as a form or an older client sends them
    metered.refresh_from_db()
    assert metered.usage_quantity == 10
    assert list(UsageEvent.objects.values_list("event_id", "quantity")) == [("e2", 10)]


# --- Bounded usage: a vendor never takes more than the user agreed to ---------------------------------


def test_a_report_above_the_services_largest_quantity_is_refused_and_charges_nothing(api, alice, victor, metered):
    # Reproduces issue 16: {"quantity": 1e18} charged the user's whole balance.
    answer = _report(api(victor), metered, {"eventId": "huge", "quantity": 10**18}, "u-huge")

    assert answer.status_code == 400
    body = answer.json()
    assert body["statusCode"] == 400
    assert body["code"] == "invalid"
    assert "quantity" in body["errors"]
    metered.refresh_from_db()
    assert metered.usage_quantity == 0
    assert not UsageEvent.objects.exists()
    run_sweep()
    assert balance_of(alice) == 10 * USDC


def test_reports_beyond_the_services_spending_cap_are_refused(api, alice, victor, fund, make_service):
    fund(alice, 100 * USDC)
    service = make_service("per_request", rate=1_000, max_session_cost=5_000, max_event_quantity=4)
    session = start(alice, service)
    assert session.max_cost == 5_000  # the service's cap, as the user saw it before starting
    client = api(victor)

    assert _report(client, session, {"eventId": "a", "quantity": 4}, "k-a").status_code == 201
    over = _report(client, session, {"eventId": "b", "quantity": 2}, "k-b")
    exact = _report(client, session, {"eventId": "c", "quantity": 1}, "k-c")

    assert over.status_code == 409
    assert over.json()["code"] == "usage_over_cap"
    assert exact.status_code == 201
    session.refresh_from_db()
    assert session.usage_quantity == 5
    assert sorted(UsageEvent.objects.values_list("event_id", flat=True)) == ["a", "c"]
    run_sweep()
    assert balance_of(alice) == 100 * USDC - 5_000


def test_the_users_max_cost_is_the_cap_when_given(api, alice, victor, fund, make_service):
    fund(alice, 100 * USDC)
    service = make_service("per_request", rate=1_000, max_session_cost=50_000, max_event_quantity=10)
    session = start(alice, service, max_cost=Decimal("0.002"))
    client = api(victor)

    assert _report(client, session, {"eventId": "a", "quantity": 3}, "k-a").status_code == 409
    assert _report(client, session, {"eventId": "b", "quantity": 2}, "k-b").status_code == 201
    session.refresh_from_db()
    assert session.usage_quantity == 2


def test_a_usage_service_shows_its_bounds_before_a_session_starts(api, alice, victor, make_service):
    service = make_service("per_request", rate=1_000, max_session_cost=7_000_000, max_event_quantity=250)

    shown = api(alice).get(f"/api/v1/service/{service.pk}").json()["service"]

    assert shown["maxSessionCost"] == "7.000000"
    assert shown["maxEventQuantity"] == 250


def test_a_usage_service_listed_without_bounds_gets_the_documented_defaults(make_service):
    service = make_service("per_request", rate=1_000)

    assert int(service.max_session_cost) == 100 * 1_000
    assert int(service.max_event_quantity) == 100


def test_a_time_metered_service_declares_no_usage_bounds(make_service):
    service = make_service("per_minute", rate=1_000)

    assert service.max_session_cost is None
    assert service.max_event_quantity is None


@override_settings(SESSION_IDLE_SECONDS=60)
def test_a_report_after_the_idle_timeout_ran_out_is_refused_and_counts_nothing(clock, api, alice, victor, metered):
    """Silent past its timeout, the session ended then, whoever stops it later: a report that comes
    after that instant (before a sweep saw it) is not charged to the user, nor does it revive it.
    One at the very instant the timeout runs out is in time."""
    client = api(victor)
    clock.move(seconds=60)
    assert _report(client, metered, {"eventId": "in-time", "quantity": 5}, "u-1").status_code == 201

    clock.move(seconds=61)
    late = _report(client, metered, {"eventId": "late", "quantity": 7}, "u-2")

    assert late.status_code == 409
    assert late.json()["code"] == "session_ended"
    metered.refresh_from_db()
    assert metered.usage_quantity == 5
    assert not UsageEvent.objects.filter(event_id="late").exists()
    run_sweep()
    metered.refresh_from_db()
    assert (metered.status, metered.stop_reason) == (SessionStatus.STOPPED, StopReason.IDLE)
    assert metered.total_cost == 5 * 1_000
    assert balance_of(alice) == 10 * USDC - 5 * 1_000


@pytest.mark.parametrize("then", ["stopped", "past the event's largest quantity"])
def test_a_report_sent_again_is_answered_as_counted_whatever_came_since(api, victor, metered, then):
    """Its first answer lost, the vendor sends the report again after the session ended: it was
    counted (and is charged), and that is what the answer says, not "this session has ended", which
    reads as "not counted". A copy whose quantity the checks would refuse is the same event."""
    client = api(victor)
    first = client.post(f"/api/v1/streams/{metered.session_id}/usage", {"eventId": "e1", "quantity": 5}, format="json")
    body = {"eventId": "e1", "quantity": 5}
    if then == "stopped":
        stop(metered)
    else:
        body["quantity"] = 10**9

    again = client.post(f"/api/v1/streams/{metered.session_id}/usage", body, format="json")

    assert first.status_code == 201, first.json()
    assert again.status_code == 200, again.json()
    assert again.json()["event"] == first.json()["event"]
    metered.refresh_from_db()
    assert metered.usage_quantity == 5
    assert UsageEvent.objects.filter(session=metered).count() == 1


def test_usage_the_payer_cannot_pay_is_refused_and_what_is_accepted_is_held(
    api, alice, bob, victor, fund, make_service
):
    """Accepted beyond the payer's funds, a report was charged only what was left at the sweep (the
    vendor lost the rest); accepted and not held, the wallet could be emptied before the sweep."""
    from wallets import ledger
    from wallets.services import wallet_transfer

    fund(alice, 5 * USDC)
    session = start(alice, make_service("per_request", rate=USDC, max_session_cost=100 * USDC, max_event_quantity=10))
    client = api(victor)

    over = _report(client, session, {"eventId": "a", "quantity": 6}, "k-a")
    assert over.status_code == 402
    assert over.json()["code"] == "insufficient_funds"
    assert "available" not in over.json() and "needed" not in over.json()  # the payer's balance is his
    accepted = _report(client, session, {"eventId": "b", "quantity": 4}, "k-b")
    assert accepted.status_code == 201

    session.refresh_from_db()
    assert (session.usage_quantity, session.hold.amount) == (4, 4 * USDC)
    with pytest.raises(Exception, match="Insufficient funds"):
        wallet_transfer(sender=alice, recipient=bob, asset=ledger.asset_get("USDC"), amount=2 * USDC)
    run_sweep()
    session.refresh_from_db()
    assert (session.total_cost, session.status) == (4 * USDC, SessionStatus.ACTIVE)
    assert balance_of(alice) == USDC
    assert sorted(UsageEvent.objects.values_list("event_id", flat=True)) == ["b"]


def test_an_integrity_error_past_the_events_insert_surfaces_as_itself_and_counts_nothing(alice, metered, monkeypatch):
    """Only the event's own insert (its id met again) means "counted already". Any other constraint
    broken while counting or holding was read the same way, and the look-up of the event, rolled
    back with it, raised UsageEvent.DoesNotExist: the error that happened was lost."""
    from django.db import IntegrityError

    from streaming import services
    from streaming.models import StreamingSession

    def hold_breaking_a_constraint(session):
        StreamingSession.objects.filter(pk=session.pk).update(metered_cost=-1)  # streaming_metered_gte_0

    monkeypatch.setattr(services, "_hold_what_usage_owes", hold_breaking_a_constraint)

    with pytest.raises(IntegrityError, match="streaming_metered_gte_0"):
        services.usage_report(session=metered, event_id="e1", quantity=5)

    metered.refresh_from_db()
    assert (metered.usage_quantity, metered.metered_cost) == (0, 0)
    assert not UsageEvent.objects.exists()
    assert balance_of(alice) == 10 * USDC


@money_db
def test_a_report_that_loses_the_insert_to_its_own_copy_is_answered_as_counted(alice, victor, fund, make_service):
    """Two copies of one report at once: the second finds no event yet, and its insert waits for the
    first's and then breaks the event's uniqueness. That is the one error that means counted already:
    it is answered with the first's event, counted once."""
    from accounts.tests.conftest import while_writing
    from streaming import services

    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_request", rate=1_000))

    def report():
        return services.usage_report(session=session, event_id="e1", quantity=5)

    copy = while_writing(report, report)

    assert not isinstance(copy, Exception), copy
    event, created = copy
    assert (event.event_id, event.quantity, created) == ("e1", 5, False)
    session.refresh_from_db()
    assert session.usage_quantity == 5
    assert UsageEvent.objects.filter(session=session).count() == 1
