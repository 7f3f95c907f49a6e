"""A participant's account deactivated by staff (accounts.services.user_deactivate, which the admin's
action and its user form both call): the calls they take part in stop at once, charged exactly up
to then, and their open consultations are cancelled, the other side told, so that nobody keeps
writing to, waiting on or paying someone who can no longer answer."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import Client, override_settings
from rest_framework import exceptions

from accounts.models import User
from accounts.services import user_deactivate
from accounts.tests.conftest import another_waits_on_a_lock, while_deactivating, while_writing
from conftest import admin_form, money_db
from consultations import services
from consultations.models import Consultation, ConsultationStatus
from consultations.selectors import running_call_of
from consultations.tests.conftest import call_url, committed, message_url
from notifications.models import Notification
from paygo.api.errors import Conflict
from streaming.models import SessionStatus, StopReason, StreamingSession
from streaming.tests.conftest import USDC, beat, fresh, run_sweep
from wallets.models import Account, AccountKind, SystemAccount
from wallets.tests.conftest import balance_of, fund_wallet, system_balance

pytestmark = pytest.mark.django_db


def deactivate_in_the_admin(operator, someone, how: str) -> None:
    """As staff do it: the users list's action, or the user's form with "active" unticked."""
    client = Client()
    client.force_login(operator)
    with committed():
        if how == "action":
            response = client.post(
                "/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [someone.pk]}
            )
        else:
            form = admin_form(client, f"/admin/accounts/user/{someone.pk}/change/")
            del form["is_active"]  # unticked
            response = client.post(f"/admin/accounts/user/{someone.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    someone.refresh_from_db()
    assert not someone.is_active


def consultation_news() -> set[tuple[int, int, str]]:
    """(whom, which consultation, title) of every consultation notification."""
    return {
        (n.user_id, n.data["consultationId"], n.title)
        for n in Notification.objects.filter(type="consultation").order_by("pk")
    }


def states(*consultations) -> list[tuple[str, object]]:
    fetched = Consultation.objects.in_bulk([c.pk for c in consultations])
    return [(fetched[c.pk].status, fetched[c.pk].closed_at) for c in consultations]


@pytest.mark.parametrize("how", ["action", "form"])
def test_a_vendor_deactivated_mid_call_stops_the_call_then_and_cancels_his_open_consultations(
    api, olga, alice, bob, victor, wanda, consult, make_service, clock, how
):
    done = consult("completed")  # before alice's next about the service: one open at a time
    in_call = consult("active")  # alice: 10 USDC, a call at 1 USDC a minute from now on
    call = running_call_of(in_call)
    waiting = consult("pending", user=bob)
    accepted = consult("accepted", user=bob, service=make_service("per_minute", rate=USDC))
    elsewhere = consult("accepted", service=make_service("per_minute", rate=USDC, vendor=wanda))
    done_at = Consultation.objects.get(pk=done.pk).closed_at
    for _ in range(3):
        clock.move(seconds=30)
        beat(call)
    Notification.objects.all().delete()

    deactivate_in_the_admin(olga, victor, how)
    deactivated_at = clock.now()
    for _ in range(4):  # alice's client keeps beating; the sweep runs
        clock.move(seconds=30)
        beat(call)
        run_sweep()

    call = fresh(call)
    assert (call.status, call.stop_reason, call.end_time) == (SessionStatus.STOPPED, StopReason.STAFF, deactivated_at)
    assert call.total_cost == 1_500_000  # 90 seconds at 1 USDC a minute, not a minor unit more
    assert balance_of(alice) == 10 * USDC - 1_500_000
    assert (balance_of(victor), system_balance(SystemAccount.PLATFORM_REVENUE)) == (1_350_000, 150_000)
    assert states(in_call, waiting, accepted) == [(ConsultationStatus.CANCELLED, deactivated_at)] * 3
    assert states(done, elsewhere) == [(ConsultationStatus.COMPLETED, done_at), (ConsultationStatus.ACCEPTED, None)]
    # Those who were talking to him are told; he, whose account is off, is not.
    title = "Consultation cancelled"
    told = {(alice.pk, in_call.pk, title), (bob.pk, waiting.pk, title), (bob.pk, accepted.pk, title)}
    assert consultation_news() == told
    told = Notification.objects.get(user=alice, type="consultation")
    assert told.message == (
        "Victor can no longer take consultations (the account is no longer active): the consultation about "
        f"{in_call.service.name} is cancelled. Its call was stopped and charged up to then."
    )
    assert told.data == {"consultationId": in_call.pk, "status": "cancelled", "reason": "account_deactivated"}
    # Nobody writes to him or calls him there any more.
    client = api(alice)
    written = client.post(message_url(in_call), {"message": "Hello? Are you there?"}, format="json")
    called = client.post(call_url(in_call, "start"), {}, format="json")
    assert (written.status_code, written.json()["code"]) == (409, "closed")
    assert (called.status_code, called.json()["code"]) == (409, "not_accepted")
    assert StreamingSession.objects.filter(status=SessionStatus.ACTIVE).count() == 0


def test_a_user_deactivated_mid_call_stops_his_call_as_his_sessions_stop_and_cancels_his_consultations(
    olga, alice, bob, victor, consult, make_service, clock
):
    """The reverse: the payer's account goes. Deactivation already stopped the sessions he pays for
    (streaming.services.sessions_stop_of); his calls stop the same way, and the vendors waiting on
    him are told."""
    in_call, waiting = consult("active"), consult("pending", service=make_service("per_minute", rate=USDC))
    fund_wallet(bob, 10 * USDC)
    bobs = consult("active", user=bob)
    call, bobs_call = running_call_of(in_call), running_call_of(bobs)
    clock.move(seconds=45)
    beat(call)
    beat(bobs_call)
    Notification.objects.all().delete()

    deactivate_in_the_admin(olga, alice, "action")
    deactivated_at = clock.now()
    clock.move(seconds=30)
    beat(bobs_call)
    run_sweep()

    call = fresh(call)
    assert (call.status, call.stop_reason, call.end_time, call.total_cost) == (
        SessionStatus.STOPPED,
        StopReason.STAFF,
        deactivated_at,
        750_000,
    )
    assert balance_of(alice) == 10 * USDC - 750_000
    assert states(in_call, waiting) == [(ConsultationStatus.CANCELLED, deactivated_at)] * 2
    assert states(bobs) == [(ConsultationStatus.ACCEPTED, None)]
    assert fresh(bobs_call).status == SessionStatus.ACTIVE
    title = "Consultation cancelled"
    assert consultation_news() == {(victor.pk, in_call.pk, title), (victor.pk, waiting.pk, title)}
    assert Notification.objects.get(user=victor, type="consultation", data__consultationId=waiting.pk).message == (
        "Alice can no longer take part (the account is no longer active): the consultation about "
        f"{waiting.service.name} is cancelled."
    )


@override_settings(SESSION_IDLE_SECONDS=60)
def test_a_call_that_ended_by_silence_before_the_deactivation_is_charged_up_to_its_idle_end(
    olga, alice, victor, consult, clock
):
    """Silent for the idle timeout, the call ended then, before the vendor's account went: it is
    charged up to that instant, as the sweep would, and the user is not told it was stopped by it."""
    in_call = consult("active")  # alice: 10 USDC, a call at 1 USDC a minute from now on
    call = running_call_of(in_call)
    clock.move(minutes=5)  # not a sign of life since its start, and no sweep
    Notification.objects.all().delete()

    deactivate_in_the_admin(olga, victor, "action")

    call = fresh(call)
    assert (call.status, call.stop_reason) == (SessionStatus.STOPPED, StopReason.IDLE)
    assert call.end_time == call.charged_until == call.start_time + timedelta(seconds=60)
    assert call.total_cost == USDC
    assert balance_of(alice) == 9 * USDC
    assert states(in_call) == [(ConsultationStatus.CANCELLED, clock.now())]
    assert Notification.objects.get(user=alice, type="consultation").message == (
        "Victor can no longer take consultations (the account is no longer active): the consultation about "
        f"{in_call.service.name} is cancelled."
    )


def test_a_deactivation_leaves_closed_consultations_as_they_were(olga, alice, victor, consult):
    closed = [consult(status) for status in ("completed", "cancelled", "rejected")]
    before = states(*closed)
    Notification.objects.all().delete()

    with committed():
        user_deactivate(user=victor)

    assert states(*closed) == before
    assert not Notification.objects.filter(type="consultation").exists()


# --- Races ------------------------------------------------------------------------------------------


@money_db
def test_a_consultation_asked_for_while_the_vendor_is_being_deactivated_is_not_left_open(alice, victor, service):
    """The deactivation has read the vendor's open consultations and not yet committed when alice
    asks for one: her request waits for it, then finds him gone (it was left open, with nobody to
    answer it, when it did not wait)."""
    refused = while_deactivating(
        victor,
        lambda: services.consultation_create(
            user=alice, vendor_id=victor.pk, service_id=service.pk, initial_message="Hello?"
        ),
    )
    assert getattr(refused, "detail", None) == {"vendor_id": ["No such vendor."]}, refused
    assert not Consultation.objects.exists()


def test_a_deactivated_user_asks_for_no_consultation_through_the_service(alice, victor, service):
    """The request authenticated him before his account went: the service sees it gone."""
    with committed():
        user_deactivate(user=alice)

    with pytest.raises(exceptions.AuthenticationFailed):
        services.consultation_create(user=alice, vendor_id=victor.pk, service_id=service.pk, initial_message="Hi")
    assert not Consultation.objects.exists()


@money_db
@pytest.mark.parametrize("first", ["deactivation", "start"])
def test_a_call_started_while_the_vendor_is_deactivated_does_not_outlive_him(
    alice, victor, consult, make_service, clock, first
):
    """Whichever takes the accounts' locks first, the other waits for it: the deactivation first,
    the start then finds the consultation cancelled and starts nothing; the start first, the
    deactivation then finds the call and stops it at that instant. Either way nothing runs, and
    alice pays nothing: the call's hold (its first minute and its minimum charge) is released, and
    a call that staff stop pays the time used only, here none."""
    service = make_service("per_minute", rate=USDC, minimum_charge=5 * USDC)
    consultation = consult("accepted", service=service)
    fund_wallet(alice, 10 * USDC)
    revenue = system_balance(SystemAccount.PLATFORM_REVENUE)

    def start():
        return services.consultation_call_start(consultation=Consultation.objects.get(pk=consultation.pk), actor=alice)

    if first == "deactivation":
        started = while_deactivating(victor, start)
        assert isinstance(started, Conflict), started
        assert started.detail["code"] == "not_accepted"
        assert not StreamingSession.objects.exists()
    else:
        deactivated = while_writing(start, lambda: user_deactivate(user=User.objects.get(pk=victor.pk)))
        assert isinstance(deactivated, User), deactivated  # no deadlock, no error
        call = StreamingSession.objects.get()
        assert (call.status, call.stop_reason) == (SessionStatus.STOPPED, StopReason.STAFF)
        assert (call.end_time, call.total_cost) == (call.start_time, 0)

    assert states(consultation) == [(ConsultationStatus.CANCELLED, clock.now())]
    assert not User.objects.get(pk=victor.pk).is_active
    account = Account.objects.get(kind=AccountKind.USER, owner=alice, asset__code="USDC")
    assert (account.balance, account.held) == (10 * USDC, 0)
    assert (balance_of(victor), system_balance(SystemAccount.PLATFORM_REVENUE)) == (0, revenue)


@money_db
def test_deactivating_a_vendor_while_the_sweep_bills_his_sessions_does_not_deadlock(
    alice, bob, victor, service, consult, monkeypatch
):
    """The deactivation stopped each running call on its own (its session, then the accounts) and
    then his other sessions (sessions again): a sweep batch that had claimed one of those and waited
    for the accounts deadlocked with it, and one of the two was aborted (staff got a 500, the account
    stayed active). Now every session stops in one stop, locked in the sweep's order."""
    from django.utils import timezone

    import streaming.services
    from streaming.billing import bill_batch
    from streaming.services import session_start

    consult(ConsultationStatus.ACTIVE)  # alice's call with victor
    fund_wallet(bob, 10 * USDC)
    with committed():
        other = session_start(user=bob, service=service)
    paused, swept, errors = threading.Event(), threading.Event(), {}
    stop_all = streaming.services.sessions_stop_of

    def pausing_stop(**kwargs):
        paused.set()
        for _ in range(500):  # until the sweep waits for this transaction, or is through
            if swept.wait(0.01) or another_waits_on_a_lock():
                break
        return stop_all(**kwargs)

    monkeypatch.setattr(streaming.services, "sessions_stop_of", pausing_stop)

    def deactivate():
        try:
            user_deactivate(user=User.objects.get(pk=victor.pk))
        except Exception as exc:
            errors["deactivate"] = exc
        finally:
            connection.close()

    def sweep():
        try:
            paused.wait(10)
            with transaction.atomic():
                bill_batch(now=timezone.now(), after_id=0, shard=0, shards=1, limit=100)
        except Exception as exc:
            errors["sweep"] = exc
        finally:
            swept.set()
            connection.close()

    threads = [threading.Thread(target=deactivate), threading.Thread(target=sweep)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a thread never finished"

    assert errors == {}
    assert not User.objects.get(pk=victor.pk).is_active
    assert not StreamingSession.objects.filter(status=SessionStatus.ACTIVE).exists()
    assert StreamingSession.objects.get(pk=other.pk).stop_reason == StopReason.STAFF
