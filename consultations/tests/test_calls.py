"""A consultation's paid call: a metered session on its service, billed to the minor unit exactly
like any streaming session, started by its user, stopped by either participant or by the sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from consultations.models import Consultation, ConsultationCall
from consultations.selectors import running_call_of
from consultations.tests.conftest import INBOX, LIST, call_url, detail_url, message_url, service_unavailable, status_url
from streaming.models import SessionKind, SessionStatus, StopReason, StreamingSession
from streaming.tests.conftest import USDC, beat, charges_of, fresh, run_sweep, start, stop
from wallets.models import SystemAccount
from wallets.tests.conftest import balance_of, system_balance

pytestmark = pytest.mark.django_db


def split(amount: int) -> tuple[int, int]:
    """(vendor's share, platform's fee) of one charge at the default 10%."""
    fee = amount * 1000 // 10_000
    return amount - fee, fee


def call_start(client, consultation, **extra):
    return client.post(call_url(consultation, "start"), extra.pop("data", {}), format="json", **extra)


def call_stop(client, consultation, **extra):
    return client.post(call_url(consultation, "stop"), format="json", **extra)


# --- Money --------------------------------------------------------------------------------------------


def test_a_call_is_billed_exactly_like_a_streaming_session(api, alice, bob, victor, fund, consult, service, clock):
    fund(alice, 10 * USDC)
    fund(bob, 10 * USDC)
    revenue_before = system_balance(SystemAccount.PLATFORM_REVENUE)
    consultation = consult("accepted")
    client = api(alice)

    started = call_start(client, consultation)
    stream = start(bob, service)  # the same service, the same instant, as a plain streaming session

    assert started.status_code == 201, started.json()
    call = StreamingSession.objects.get(session_id=started.json()["session"]["sessionId"])
    assert call.kind == SessionKind.CONSULTATION
    assert (call.user, call.vendor, call.service) == (alice, victor, service)
    assert started.json()["consultation"]["status"] == "active"

    clock.move(seconds=60)
    beat(call)
    beat(stream)
    run_sweep()
    clock.move(seconds=40, milliseconds=1)
    stopped = call_stop(client, consultation)
    stream = stop(stream)

    total = USDC * 100_001 // 60_000  # 100.001 s at 1 USDC a minute, floored once
    assert stopped.status_code == 200, stopped.json()
    call = fresh(call)
    assert call.status == stream.status == SessionStatus.COMPLETED
    assert call.total_cost == stream.total_cost == total
    assert charges_of(call) == charges_of(stream) == [USDC, total - USDC]
    assert balance_of(alice) == balance_of(bob) == 10 * USDC - total
    vendor_share = sum(split(amount)[0] for amount in charges_of(call))
    assert balance_of(victor) == 2 * vendor_share
    assert system_balance(SystemAccount.PLATFORM_REVENUE) - revenue_before == 2 * (total - vendor_share)
    assert call.hold.amount == 0

    # The consultation shows its call and what it cost, and is accepted again.
    shown = api(alice).get(detail_url(consultation)).json()["consultation"]
    assert shown["status"] == "accepted"
    assert shown["calls"] == [
        {
            "sessionId": str(call.session_id),
            "status": "completed",
            "stopReason": "user",
            "startTime": call.start_time.isoformat().replace("+00:00", "Z"),
            "endTime": call.end_time.isoformat().replace("+00:00", "Z"),
            "totalCost": "1.666683",
            "token": "USDC",
            "totalUsageSeconds": 100,
        }
    ]
    assert shown["totalCallCost"] == "1.666683"
    assert shown["callToken"] == "USDC"


# 1.2 USDC a minute is 20 minor units a millisecond: every call's cost is whole, so that calls add up
# to what one call of their length costs (each call's cost is floored on its own).
CALL_RATE = 1_200_000


@override_settings(SESSION_IDLE_SECONDS=3600)  # about free time, not presence
def test_redialling_shares_the_free_seconds_of_one_consultation(api, alice, bob, fund, consult, make_service, clock):
    service = make_service("per_minute", rate=CALL_RATE, free_seconds=60)
    fund(alice, 10 * USDC)
    fund(bob, 10 * USDC)
    redialled, continuous = consult("accepted", service=service), consult("accepted", user=bob, service=service)

    for _ in range(5):  # alice hangs up every 59 s and calls back a second later, bob stays on the line
        call_start(api(alice), redialled)
        clock.move(seconds=59)
        call_stop(api(alice), redialled)
        clock.move(seconds=1)
    call_start(api(bob), continuous)
    clock.move(seconds=5 * 59)
    call_stop(api(bob), continuous)

    # 295 s in all, 60 of them free: 235 s at 20 000 a second, whether in five calls or one.
    calls = StreamingSession.objects.filter(user=alice).order_by("start_time")
    assert [call.free_seconds for call in calls] == [60, 1, 0, 0, 0]
    assert [call.total_cost for call in calls] == [0, 58 * 20_000, 59 * 20_000, 59 * 20_000, 59 * 20_000]
    assert sum(call.total_cost for call in calls) == StreamingSession.objects.get(user=bob).total_cost == 4_700_000
    assert balance_of(alice) == balance_of(bob) == 10 * USDC - 4_700_000
    shown = api(alice).get(detail_url(redialled)).json()["consultation"]
    assert (shown["totalCallCost"], shown["callCount"]) == ("4.700000", 5)


@override_settings(SESSION_IDLE_SECONDS=3600)  # about free time, not presence
def test_a_call_after_the_free_seconds_are_used_pays_from_its_first_second(
    api, alice, fund, consult, make_service, clock
):
    fund(alice, 10 * USDC)
    consultation = consult("accepted", service=make_service("per_minute", rate=CALL_RATE, free_seconds=60))
    call_start(api(alice), consultation)
    clock.move(seconds=90)
    call_stop(api(alice), consultation)

    started = call_start(api(alice), consultation)
    second = running_call_of(consultation)
    held = fresh(second).hold.amount
    clock.move(seconds=20)
    run_sweep()
    clock.move(seconds=10)
    call_stop(api(alice), consultation)

    assert started.json()["session"]["freeSeconds"] == 0
    assert held == CALL_RATE  # a whole first minute: none of it is free
    second = fresh(second)
    assert (second.free_seconds, second.total_cost) == (0, 30 * 20_000)
    assert charges_of(second) == [20 * 20_000, 10 * 20_000]  # the sweep bills it by its own terms
    assert balance_of(alice) == 10 * USDC - 30 * 20_000 - 30 * 20_000


def test_a_part_of_a_free_second_left_counts_as_a_whole_one(api, alice, fund, consult, make_service, clock):
    # In the payer's favour, as costs are rounded down: a redial never loses him the part of a second.
    fund(alice, 10 * USDC)
    consultation = consult("accepted", service=make_service("per_minute", rate=CALL_RATE, free_seconds=60))
    call_start(api(alice), consultation)
    clock.move(seconds=58, milliseconds=500)
    call_stop(api(alice), consultation)

    started = call_start(api(alice), consultation)

    assert started.json()["session"]["freeSeconds"] == 2
    assert balance_of(alice) == 10 * USDC


@override_settings(SESSION_IDLE_SECONDS=3600)  # about the minimum charge, not presence
def test_a_consultations_calls_pay_its_minimum_charge_once(api, alice, victor, fund, consult, make_service, clock):
    fund(alice, 10 * USDC)
    consultation = consult("accepted", service=make_service("per_minute", rate=CALL_RATE, minimum_charge=3 * USDC))
    call_start(api(alice), consultation)
    clock.move(seconds=90)
    call_stop(api(victor), consultation)  # the vendor's hang-up: the time used only, 1.8 USDC

    call_start(api(alice), consultation)
    clock.move(seconds=30)
    call_stop(api(alice), consultation)  # the user's: 0.6 USDC of time, then the rest of the minimum

    first, second = StreamingSession.objects.order_by("start_time")
    assert (first.minimum_charge, first.total_cost) == (3 * USDC, 1_800_000)
    assert (second.minimum_charge, second.total_cost) == (1_200_000, 1_200_000)
    # What one call of two minutes that its user ended would have cost: the minimum, once.
    assert balance_of(alice) == 10 * USDC - 3 * USDC

    call_start(api(alice), consultation)  # paid off: a third call pays its time only
    clock.move(seconds=10)
    call_stop(api(alice), consultation)
    third = StreamingSession.objects.latest("start_time")
    assert (third.minimum_charge, third.total_cost) == (0, 10 * 20_000)


def test_a_running_call_makes_the_consultation_active(api, alice, victor, fund, consult, clock):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")

    call_start(api(alice), consultation)
    clock.move(seconds=30)

    for viewer in (alice, victor):
        assert api(viewer).get(LIST).json()["consultations"][0]["status"] == "active"
        shown = api(viewer).get(detail_url(consultation)).json()["consultation"]
        assert shown["status"] == "active"
        assert shown["calls"][0]["status"] == "active"
        assert shown["calls"][0]["endTime"] is None
        assert shown["calls"][0]["totalUsageSeconds"] == 30
    assert Consultation.objects.get().status == "accepted"  # what is stored: `active` is derived


def test_the_sweep_stopping_a_call_returns_the_consultation_to_accepted(api, alice, fund, consult, clock):
    fund(alice, 1_500_000)  # a minute and a half at 1 USDC a minute
    consultation = consult("accepted")
    client = api(alice)
    call_start(client, consultation)
    call = running_call_of(consultation)

    clock.move(seconds=60)
    beat(call)
    run_sweep()
    assert client.get(detail_url(consultation)).json()["consultation"]["status"] == "active"
    clock.move(seconds=60)
    beat(call)
    run_sweep()

    call = fresh(call)
    assert (call.status, call.stop_reason) == (SessionStatus.STOPPED, StopReason.INSUFFICIENT_FUNDS)
    assert call.total_cost == 1_500_000
    assert balance_of(alice) == 0
    shown = client.get(detail_url(consultation)).json()["consultation"]
    assert shown["status"] == "accepted"
    assert call_stop(client, consultation).json()["code"] == "no_call_running"

    # After a top-up the user calls again; the consultation adds up both calls.
    fund(alice, 5 * USDC)
    assert call_start(client, consultation).status_code == 201
    clock.move(seconds=30)
    assert call_stop(api(alice), consultation).status_code == 200
    shown = client.get(detail_url(consultation)).json()["consultation"]
    assert [c["totalCost"] for c in shown["calls"]] == ["0.500000", "1.500000"]
    assert shown["totalCallCost"] == "2.000000"


def test_a_call_stopped_through_the_streams_api_ends_too(api, alice, fund, consult):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")
    session_id = call_start(api(alice), consultation).json()["session"]["sessionId"]

    assert api(alice).patch(f"/api/v1/streams/{session_id}/stop").status_code == 200

    assert api(alice).get(detail_url(consultation)).json()["consultation"]["status"] == "accepted"


# Silent sessions stop when their idle timeout runs out, whoever stops them later (test_presence.py):
# this test is about who stops a call, not presence, and leaves the session silent.
@override_settings(SESSION_IDLE_SECONDS=3600)
@pytest.mark.parametrize(("who", "status", "reason"), [("alice", "completed", "user"), ("victor", "stopped", "vendor")])
def test_either_participant_stops_the_call(api, alice, victor, fund, consult, clock, who, status, reason):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")
    call_start(api(alice), consultation)
    clock.move(seconds=90)

    response = call_stop(api({"alice": alice, "victor": victor}[who]), consultation)

    assert response.status_code == 200, response.json()
    assert response.json()["message"] == "Call stopped."
    assert response.json()["session"]["status"] == status
    assert response.json()["session"]["stopReason"] == reason
    assert response.json()["session"]["totalCost"] == "1.500000"
    assert response.json()["consultation"]["status"] == "accepted"
    assert balance_of(alice) == 10 * USDC - 1_500_000


@override_settings(SESSION_IDLE_SECONDS=3600)  # about a call's money, not its presence
def test_hanging_up_after_the_money_ran_out_is_the_consultations_latest_change(
    api, alice, victor, fund, consult, clock
):
    fund(alice, 1_500_000)  # a minute and a half at 1 USDC a minute
    consultation = consult("accepted")
    call_start(api(alice), consultation)
    clock.move(seconds=60)
    run_sweep()
    clock.move(seconds=40)  # the money ran out 10 s ago; no sweep has stopped the call yet
    api(victor).post(message_url(consultation), {"message": "Are you still there?"}, format="json")
    clock.move(seconds=20)

    response = call_stop(api(alice), consultation)

    assert response.status_code == 200, response.json()
    call = StreamingSession.objects.get()
    assert call.end_time == call.start_time + timedelta(seconds=90)  # charged up to its money's end
    assert call.total_cost == 1_500_000
    consultation.refresh_from_db()
    # Changed when the call was hung up, after the vendor's message, not back when its money ran out.
    assert consultation.updated_at == clock.now() > consultation.last_message_at


# --- A call ended by silence, before any sweep ------------------------------------------------------
# Silent for SESSION_IDLE_SECONDS, a call ended then, whoever bills it later (the sweep, the live
# hub): what the consultation says and allows follows from that instant, not from the next sweep.


def silent_call(api, alice, fund, consult, clock):
    """An accepted consultation whose call started at T and has had no sign of life since; the clock
    at T + 5 min, no sweep yet: the call ended at T + 60 s."""
    fund(alice, 10 * USDC)
    consultation = consult("accepted")
    assert call_start(api(alice), consultation).status_code == 201
    call = running_call_of(consultation)
    clock.move(minutes=5)
    return consultation, call


def assert_ended_by_silence(call, alice) -> None:
    """Stopped as idle at its idle end, charged exactly up to it (a minute at 1 USDC a minute)."""
    call = fresh(call)
    assert (call.status, call.stop_reason) == (SessionStatus.STOPPED, StopReason.IDLE)
    assert call.end_time == call.charged_until == call.start_time + timedelta(seconds=60)
    assert call.total_cost == USDC
    assert charges_of(call) == [USDC]
    assert call.hold.amount == 0


@override_settings(SESSION_IDLE_SECONDS=60)
def test_a_call_ended_by_silence_shows_the_consultation_accepted(api, alice, victor, fund, consult, clock):
    consultation, call = silent_call(api, alice, fund, consult, clock)

    for viewer in (alice, victor):
        client = api(viewer)
        assert client.get(detail_url(consultation)).json()["consultation"]["status"] == "accepted"
        assert client.get(LIST).json()["consultations"][0]["status"] == "accepted"
        assert client.get(LIST, {"status": "active"}).json()["consultations"] == []
        assert [c["id"] for c in client.get(LIST, {"status": "accepted"}).json()["consultations"]] == [consultation.pk]
    assert api(victor).get(INBOX).json()["consultations"][0]["status"] == "accepted"
    assert fresh(call).status == SessionStatus.ACTIVE  # a read bills nothing: the sweep will


@override_settings(SESSION_IDLE_SECONDS=60)
def test_a_new_call_after_one_ended_by_silence_stops_that_one_at_its_idle_end_first(api, alice, fund, consult, clock):
    consultation, call = silent_call(api, alice, fund, consult, clock)

    response = call_start(api(alice), consultation)

    assert response.status_code == 201, response.json()
    assert_ended_by_silence(call, alice)
    new_call = running_call_of(consultation)
    assert new_call.pk != call.pk
    assert new_call.start_time == clock.now()
    assert response.json()["consultation"]["status"] == "active"
    assert balance_of(alice) == 9 * USDC


@override_settings(SESSION_IDLE_SECONDS=60)
@pytest.mark.parametrize(("who", "status"), [("alice", "cancelled"), ("victor", "completed")])
def test_a_status_change_after_a_call_ended_by_silence_stops_it_at_its_idle_end_first(
    api, alice, victor, fund, consult, clock, who, status
):
    consultation, call = silent_call(api, alice, fund, consult, clock)

    response = api({"alice": alice, "victor": victor}[who]).patch(
        status_url(consultation), {"status": status}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["consultation"]["status"] == status
    assert_ended_by_silence(call, alice)
    assert balance_of(alice) == 9 * USDC


@override_settings(SESSION_IDLE_SECONDS=60)
def test_hanging_up_a_call_ended_by_silence_charges_it_up_to_its_idle_end(api, alice, fund, consult, clock):
    consultation, call = silent_call(api, alice, fund, consult, clock)

    response = call_stop(api(alice), consultation)

    assert response.status_code == 200, response.json()
    assert response.json()["session"]["stopReason"] == "idle"
    assert_ended_by_silence(call, alice)
    assert balance_of(alice) == 9 * USDC


# --- Refusals -----------------------------------------------------------------------------------------


def nothing_started(alice, funds: int) -> None:
    assert not ConsultationCall.objects.exists()
    assert not StreamingSession.objects.exists()
    assert balance_of(alice) == funds


def test_without_funds_a_call_is_a_402_and_starts_nothing(api, alice, consult):
    consultation = consult("accepted")

    response = call_start(api(alice), consultation)

    assert response.status_code == 402
    assert response.json() == {
        "message": "Insufficient funds: starting this session needs 1.000000 USDC; 0.000000 is available.",
        "statusCode": 402,
        "code": "insufficient_funds",
        "needed": "1.000000",
        "available": "0.000000",
        "token": "USDC",
    }
    nothing_started(alice, 0)
    assert api(alice).get(detail_url(consultation)).json()["consultation"]["status"] == "accepted"


@pytest.mark.parametrize("device", ["Pixel\u00009", {"name": "Pixel", "os": {"versi\u0000on": "15"}}])
def test_a_device_holding_nul_is_a_400_and_starts_nothing(api, alice, fund, consult, device):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")

    response = call_start(api(alice), consultation, data={"device": device})

    assert response.status_code == 400
    assert response.json()["errors"] == {"device": ["Must not contain the NUL character."]}
    nothing_started(alice, 10 * USDC)
    assert api(alice).get(detail_url(consultation)).json()["consultation"]["status"] == "accepted"


@pytest.mark.parametrize("status", ["pending", "completed", "cancelled", "rejected"])
def test_a_call_needs_an_accepted_consultation(api, alice, fund, consult, status):
    fund(alice, 10 * USDC)
    consultation = consult(status)

    response = call_start(api(alice), consultation)

    assert response.status_code == 409
    assert response.json()["code"] == "not_accepted"
    nothing_started(alice, 10 * USDC)


def test_one_call_at_a_time(api, alice, consult):
    consultation = consult("active")  # funded with 10 USDC, its call running
    calls = StreamingSession.objects.count()

    response = call_start(api(alice), consultation)

    assert response.status_code == 409
    assert response.json()["code"] == "call_running"
    assert StreamingSession.objects.count() == calls


def test_the_vendor_does_not_start_calls(api, alice, victor, fund, consult):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")

    response = call_start(api(victor), consultation)

    assert response.status_code == 403
    assert response.json()["message"] == "Only the consultation's user starts a call: they pay for it."
    nothing_started(alice, 10 * USDC)


def test_staff_neither_start_nor_stop_calls(api, alice, olga, fund, consult):
    consultation = consult("active")
    session = running_call_of(consultation)

    assert call_start(api(olga), consultation).status_code == 403
    assert call_stop(api(olga), consultation).status_code == 403
    assert fresh(session).status == SessionStatus.ACTIVE


@pytest.mark.parametrize("who", ["bob", "wanda", "stan"])
def test_outsiders_get_a_404(api, bob, wanda, stan, consult, who):
    consultation = consult("active")
    session = running_call_of(consultation)
    outsider = api({"bob": bob, "wanda": wanda, "stan": stan}[who])

    assert call_start(outsider, consultation).status_code == 404
    assert call_stop(outsider, consultation).status_code == 404
    assert fresh(session).status == SessionStatus.ACTIVE
    assert StreamingSession.objects.count() == 1


def test_anonymous_is_401(anon, consult):
    consultation = consult("accepted")

    assert call_start(anon, consultation).status_code == 401
    assert call_stop(anon, consultation).status_code == 401
    assert not StreamingSession.objects.exists()


def test_no_call_to_stop_is_a_409(api, alice, consult):
    response = call_stop(api(alice), consult("accepted"))

    assert response.status_code == 409
    assert response.json()["message"] == "No call is running."


@service_unavailable
def test_an_unavailable_service_takes_no_call(api, alice, fund, consult, make_service, unavailable):
    fund(alice, 10 * USDC, "USDT")
    consultation = consult("accepted", service=make_service(token="USDT"))
    unavailable(service=consultation.service)

    response = call_start(api(alice), consultation)

    assert response.status_code == 409, response.json()  # the call's body names no service: not a field's error
    assert response.json()["code"] == "service_unavailable"
    assert response.json()["message"] == "This consultation's service is no longer offered."
    assert not ConsultationCall.objects.exists()
    assert not StreamingSession.objects.exists()
    assert balance_of(alice, "USDT") == 10 * USDC


def test_a_closed_consultation_takes_no_call_even_after_one(api, alice, victor, fund, consult):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")
    call_start(api(alice), consultation)
    api(victor).patch(status_url(consultation), {"status": "completed"}, format="json")

    response = call_start(api(alice), consultation)

    assert response.status_code == 409
    assert StreamingSession.objects.count() == 1


def test_max_cost_caps_the_call(api, alice, fund, consult):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")

    bad = call_start(api(alice), consultation, data={"maxCost": "0.1234567"})
    good = call_start(api(alice), consultation, data={"maxCost": "2.5", "device": "phone"})

    assert bad.status_code == 400
    assert good.status_code == 201, good.json()
    session = running_call_of(consultation)
    assert session.max_cost == 2_500_000
    assert session.client_info == {"name": "phone"}


# --- Idempotency-Key ----------------------------------------------------------------------------------


def test_a_retried_start_starts_one_call(api, alice, fund, consult):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")
    client = api(alice)

    first = call_start(client, consultation, HTTP_IDEMPOTENCY_KEY="call-1")
    again = call_start(client, consultation, HTTP_IDEMPOTENCY_KEY="call-1")
    other_body = call_start(client, consultation, data={"maxCost": "1"}, HTTP_IDEMPOTENCY_KEY="call-1")

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["session"]["sessionId"] == first.json()["session"]["sessionId"]
    assert other_body.status_code == 409
    assert other_body.json()["code"] == "idempotency_key_reused"
    assert StreamingSession.objects.count() == ConsultationCall.objects.count() == 1


def test_a_retried_stop_replays_the_first_answer(api, alice, fund, consult, clock):
    fund(alice, 10 * USDC)
    consultation = consult("accepted")
    client = api(alice)
    call_start(client, consultation)
    clock.move(seconds=60)

    first = call_stop(client, consultation, HTTP_IDEMPOTENCY_KEY="hang-up")
    clock.move(seconds=60)
    again = call_stop(client, consultation, HTTP_IDEMPOTENCY_KEY="hang-up")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert balance_of(alice) == 9 * USDC


def test_a_refused_start_does_not_keep_its_key(api, alice, fund, consult):
    consultation = consult("accepted")
    client = api(alice)

    assert call_start(client, consultation, HTTP_IDEMPOTENCY_KEY="k").status_code == 402
    fund(alice, 10 * USDC)
    assert call_start(client, consultation, HTTP_IDEMPOTENCY_KEY="k").status_code == 201
