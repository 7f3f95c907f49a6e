"""Refresh tokens are good for one refresh each (rotation), a used one presented again ends its
sign-in, and logging out ends a sign-in (or every sign-in of its user) at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import SignIn
from accounts.services import REFRESH_RACE, sign_ins_end, token_pair_for
from conftest import backend_pid, in_thread, money_db, run_task, wait_until_blocked_on_a_lock

REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"
REVOKED = {
    "message": "This refresh token has been used already or its sign-in has ended; sign in again.",
    "statusCode": 401,
    "code": "token_revoked",
}


def refresh(client, token: str):
    return client.post(REFRESH, {"refreshToken": token}, format="json")


def logout(client, token: str, **extra):
    return client.post(LOGOUT, {"refreshToken": token, **extra}, format="json")


def signed_in(client, token: str) -> bool:
    """Whether the sign-in of this (live) refresh token still refreshes. It uses the token up."""
    return refresh(client, token).status_code == 200


# --- Rotation ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_refresh_answers_a_new_refresh_token_and_uses_up_the_one_sent(anon, alice):
    first = token_pair_for(alice).refresh

    response = refresh(anon, first)

    assert response.status_code == 200
    second = response.json()["refreshToken"]
    assert second != first
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    assert anon.get(ME).json()["user"]["id"] == alice.pk
    anon.credentials()
    assert refresh(anon, second).status_code == 200
    again = refresh(anon, first)
    assert (again.status_code, again.json()) == (401, REVOKED)


@pytest.mark.django_db
def test_each_refresh_token_of_a_chain_works_once(anon, alice):
    token = token_pair_for(alice).refresh
    used = []
    for _ in range(3):
        used.append(token)
        token = refresh(anon, token).json()["refreshToken"]

    assert refresh(anon, token).status_code == 200
    assert len(set(used)) == 3


@pytest.mark.django_db
def test_a_used_refresh_token_presented_again_ends_its_sign_in_and_no_other(anon, alice, still_clock):
    """The thief who replays the stolen token, and the owner who refreshed with it (or the other way
    round): whoever comes second is refused, and the sign-in ends for both. The user's other
    devices keep theirs."""
    stolen = token_pair_for(alice).refresh
    other_device = token_pair_for(alice).refresh
    owners_next = refresh(anon, stolen).json()["refreshToken"]
    still_clock.shift(REFRESH_RACE + timedelta(seconds=1))

    replayed = refresh(anon, stolen)

    assert (replayed.status_code, replayed.json()) == (401, REVOKED)
    assert refresh(anon, owners_next).json() == REVOKED  # the sign-in is ended for its owner too
    assert signed_in(anon, other_device)


@pytest.mark.django_db
def test_a_rotated_refresh_token_expires_with_its_sign_in(anon, alice, still_clock):
    """Rotation renews the token, not the sign-in: it ends JWT_REFRESH_LIFETIME after the login, as
    the one refresh token of a sign-in did before rotation."""
    first = token_pair_for(alice).refresh
    still_clock.shift(timedelta(days=3))
    second = refresh(anon, first).json()["refreshToken"]

    assert RefreshToken(second)["exp"] == RefreshToken(first)["exp"]
    still_clock.shift(timedelta(days=4, seconds=1))
    expired = refresh(anon, second)
    assert (expired.status_code, expired.json()["code"]) == (401, "token_expired")


@pytest.mark.django_db
def test_a_refresh_token_of_before_sign_ins_were_recorded_is_refused(anon, alice):
    """A refresh token as simplejwt made them until now (no sign-in): refused, so that every token
    that could have been stolen before rotation came ends with its arrival; its holder signs in."""
    old = str(RefreshToken.for_user(alice))

    response = refresh(anon, old)

    assert (response.status_code, response.json()) == (401, REVOKED)


@pytest.mark.django_db
def test_a_changed_password_ends_rotated_tokens_too(anon, alice):
    rotated = refresh(anon, token_pair_for(alice).refresh).json()

    alice.set_password("a-brand-new-Password-42")
    alice.save(update_fields=["password"])

    refused = refresh(anon, rotated["refreshToken"])
    assert (refused.status_code, refused.json()["code"]) == (401, "password_changed")
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {rotated['token']}")
    assert anon.get(ME).json()["code"] == "password_changed"


# --- Concurrent refreshes --------------------------------------------------------------------------


@money_db
def test_of_concurrent_refreshes_with_one_token_exactly_one_succeeds(alice):
    token = token_pair_for(alice).refresh
    start = threading.Barrier(8)

    @in_thread
    def send(_):
        client = APIClient()
        start.wait()
        return refresh(client, token)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, range(8)))

    # Refreshes of one client that raced (tabs whose tokens expired together): one rotated the token,
    # the others were answered the token it made. One live refresh token, which works once.
    assert [answer.status_code for answer in answers] == [200] * 8
    jtis = {RefreshToken(answer.json()["refreshToken"])["jti"] for answer in answers}
    assert len(jtis) == 1
    assert SignIn.objects.get().refresh_jti in jtis
    assert refresh(APIClient(), answers[0].json()["refreshToken"]).status_code == 200
    assert refresh(APIClient(), answers[1].json()["refreshToken"]).status_code == 200  # raced it: answered


@pytest.mark.django_db
def test_a_refresh_that_raced_the_last_one_gets_the_live_token_and_a_thief_is_still_caught(anon, alice, still_clock):
    """Two tabs refresh with one token a moment apart: the second is answered the token the first
    made. A thief who raced the owner that way holds the same token as the owner: whichever of them
    refreshes later presents a used token, and the sign-in ends. Past REFRESH_RACE, a used token
    ends it at once."""
    first = token_pair_for(alice).refresh
    owners = refresh(anon, first).json()["refreshToken"]
    still_clock.shift(REFRESH_RACE - timedelta(seconds=1))

    raced = refresh(APIClient(), first)

    assert raced.status_code == 200
    thiefs = raced.json()["refreshToken"]
    assert RefreshToken(thiefs)["jti"] == RefreshToken(owners)["jti"]
    still_clock.shift(timedelta(minutes=5))
    assert refresh(APIClient(), thiefs).status_code == 200  # the thief rotates first
    still_clock.shift(timedelta(minutes=5))
    assert refresh(anon, owners).json() == REVOKED  # the owner's next refresh: a used token
    assert SignIn.objects.get().end_reason == SignIn.EndReason.REUSED


@money_db
def test_a_refresh_waits_for_one_in_flight_with_the_same_token_and_is_then_refused(alice):
    """The race decided by the database, not by timing: the first refresh has swapped the token and
    not committed yet; the second waits on the sign-in's row, then finds the token used."""
    from accounts.services import token_refresh

    token = token_pair_for(alice).refresh
    swapped, commit = threading.Event(), threading.Event()
    outcome: dict[str, str] = {}
    second_pid: list[int] = []

    @in_thread
    def first():
        with transaction.atomic():
            token_refresh(refresh_token=token)
            swapped.set()
            commit.wait(timeout=60)
        outcome["first"] = "refreshed"

    @in_thread
    def second():
        second_pid.append(backend_pid())
        swapped.wait(timeout=60)
        try:
            token_refresh(refresh_token=token)
            outcome["second"] = "refreshed"
        except AuthenticationFailed as exc:
            outcome["second"] = exc.get_codes()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    try:
        swapped.wait(timeout=60)
        wait_until_blocked_on_a_lock(second_pid)
    finally:
        commit.set()
        for thread in threads:
            thread.join()

    assert outcome == {"first": "refreshed", "second": "refreshed"}  # within REFRESH_RACE: the live token


# --- Logout ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_logout_ends_the_sign_in_of_its_refresh_token(anon, alice):
    tokens = token_pair_for(alice)
    other_device = token_pair_for(alice).refresh

    response = logout(anon, tokens.refresh)

    assert (response.status_code, response.json()) == (200, {"message": "Logged out."})
    assert refresh(anon, tokens.refresh).json() == REVOKED
    assert signed_in(anon, other_device)


@pytest.mark.django_db
def test_logging_out_twice_is_fine(anon, alice):
    token = token_pair_for(alice).refresh

    assert logout(anon, token).status_code == 200
    assert logout(anon, token).status_code == 200
    assert refresh(anon, token).status_code == 401


@pytest.mark.django_db
def test_logout_with_a_used_token_of_the_sign_in_ends_it(anon, alice):
    first = token_pair_for(alice).refresh
    second = refresh(anon, first).json()["refreshToken"]

    assert logout(anon, first).status_code == 200

    assert refresh(anon, second).json() == REVOKED


@pytest.mark.django_db
def test_logout_needs_no_access_token_and_ignores_a_bad_one(anon, alice):
    token = token_pair_for(alice).refresh
    anon.credentials(HTTP_AUTHORIZATION="Bearer expired-or-garbage")

    assert logout(anon, token).status_code == 200

    anon.credentials()
    assert refresh(anon, token).status_code == 401


@pytest.mark.django_db
def test_logout_everywhere_ends_every_sign_in_of_the_user_and_nobody_elses(anon, alice, bob):
    here, there = token_pair_for(alice).refresh, token_pair_for(alice).refresh
    bobs = token_pair_for(bob).refresh

    response = logout(anon, here, everywhere=True)

    assert (response.status_code, response.json()) == (200, {"message": "Logged out everywhere."})
    assert refresh(anon, here).status_code == refresh(anon, there).status_code == 401
    assert signed_in(anon, bobs)
    again = logout(anon, here, everywhere=True)  # its sign-in ended: the token is no longer live
    assert (again.status_code, again.json()) == (401, REVOKED)
    assert logout(anon, here).status_code == 200


@pytest.mark.django_db
def test_another_users_token_logs_out_only_what_holding_it_allows(anon, api, alice, bob):
    """Sent by alice, bob's token ends bob's sign-in (as refreshing with it twice would), never
    alice's; a used token of bob's cannot end his other sign-ins (a live one could: it is as good as
    his password until it expires)."""
    bobs_phone = token_pair_for(bob).refresh
    bobs_laptop = token_pair_for(bob).refresh
    bobs_used = token_pair_for(bob).refresh
    bobs_tablet = refresh(anon, bobs_used).json()["refreshToken"]
    alices = token_pair_for(alice).refresh
    as_alice = api(alice)

    assert logout(as_alice, bobs_phone).status_code == 200
    refused = logout(as_alice, bobs_used, everywhere=True)

    assert (refused.status_code, refused.json()) == (401, REVOKED)
    assert refresh(anon, bobs_phone).status_code == 401
    assert signed_in(anon, bobs_laptop)
    assert signed_in(anon, bobs_tablet)
    assert signed_in(anon, alices)


@pytest.mark.django_db
def test_logout_everywhere_after_the_password_changed_is_refused(anon, alice):
    before = token_pair_for(alice).refresh
    alice.set_password("a-brand-new-Password-42")
    alice.save(update_fields=["password"])
    after = token_pair_for(alice).refresh

    refused = logout(anon, before, everywhere=True)

    assert (refused.status_code, refused.json()["code"]) == (401, "password_changed")
    assert signed_in(anon, after)


@pytest.mark.django_db
@pytest.mark.parametrize("everywhere", [False, True])
def test_logout_with_an_access_token_garbage_or_an_expired_token_is_401(anon, alice, still_clock, everywhere):
    expired = token_pair_for(alice).refresh
    still_clock.shift(timedelta(days=7, seconds=1))
    live = token_pair_for(alice)

    for token, code in ((live.access, "token_invalid"), ("garbage", "token_invalid"), (expired, "token_expired")):
        response = logout(anon, token, everywhere=everywhere)
        assert (response.status_code, response.json()["code"]) == (401, code), token
    assert signed_in(anon, live.refresh)


@pytest.mark.django_db
def test_logout_without_a_token_is_400(anon):
    response = anon.post(LOGOUT, {"everywhere": True}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"refreshToken": ["This field is required."]}


def me(client, access: str):
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    try:
        return client.get(ME)
    finally:
        client.credentials()


SIGN_IN_ENDED = {
    "message": "This sign-in has ended (logged out, or ended for the account's safety); sign in again.",
    "statusCode": 401,
    "code": "sign_in_ended",
}


def _end_by_logout(anon, tokens):
    logout(anon, tokens.refresh)


def _end_by_logout_everywhere(anon, tokens):
    logout(anon, token_pair_for(tokens.user).refresh, everywhere=True)  # from another device


def _end_by_reuse(anon, tokens):
    refresh(anon, tokens.refresh)
    with time_machine.travel(timezone.now() + REFRESH_RACE + timedelta(seconds=1), tick=False):
        refresh(anon, tokens.refresh)  # presented again after the race's grace: a stolen copy


def _end_by_staff(anon, tokens):
    sign_ins_end(sign_ins=SignIn.objects.filter(user=tokens.user), reason=SignIn.EndReason.STAFF)


@dataclass
class Device:
    user: object
    access: str
    refresh: str


@pytest.mark.django_db
@pytest.mark.parametrize("end", [_end_by_logout, _end_by_logout_everywhere, _end_by_reuse, _end_by_staff])
def test_a_sign_in_that_ends_ends_its_access_tokens_at_once(anon, alice, bob, end):
    """Not when they expire (JWT_LIFETIME, a day by default): a logout, a stolen refresh token caught
    or staff end what a sign-in gave at once, the access tokens its refreshes minted included. Other
    sign-ins (alice's other device where only this one ends, bob's always) go on."""
    pair = token_pair_for(alice)
    device = Device(alice, pair.access, pair.refresh)
    minted = refresh(anon, device.refresh).json()
    device.refresh = minted["refreshToken"]
    other_device = token_pair_for(alice).access
    bobs = token_pair_for(bob).access
    assert me(anon, device.access).status_code == me(anon, minted["token"]).status_code == 200

    end(anon, device)

    for access in (device.access, minted["token"]):
        response = me(anon, access)
        assert (response.status_code, response.json()) == (401, SIGN_IN_ENDED)
    everywhere = end in (_end_by_logout_everywhere, _end_by_staff)
    assert me(anon, other_device).status_code == (401 if everywhere else 200)
    assert me(anon, bobs).status_code == 200


@pytest.mark.django_db
def test_an_access_token_of_before_sign_ins_were_recorded_is_refused(anon, alice):
    """As its refresh token is (test_a_refresh_token_of_before_sign_ins_were_recorded_is_refused):
    nothing could end it but its expiry."""
    old = str(AccessToken.for_user(alice))

    response = me(anon, old)

    assert (response.status_code, response.json()) == (401, SIGN_IN_ENDED)


@pytest.mark.django_db
def test_an_access_token_is_refused_once_it_expires(anon, alice, still_clock):
    tokens = token_pair_for(alice)

    still_clock.shift(AccessToken.lifetime - timedelta(seconds=1))
    assert me(anon, tokens.access).status_code == 200
    still_clock.shift(timedelta(seconds=2))
    assert me(anon, tokens.access).status_code == 401


# --- Forgetting sign-ins long over ------------------------------------------------------------------


@pytest.mark.django_db
def test_sign_ins_expired_a_month_ago_are_forgotten_daily(anon, alice, still_clock):
    from django.conf import settings

    from accounts.models import SignIn
    from accounts.tasks import sign_ins_forget_task

    old = token_pair_for(alice).refresh
    still_clock.shift(timedelta(days=20))
    recent = token_pair_for(alice).refresh  # expires on day 27
    still_clock.shift(timedelta(days=17, seconds=1))  # day 37: the first expired 30 days ago and a second

    assert run_task(sign_ins_forget_task) == 1
    assert SignIn.objects.filter(user=alice).count() == 1
    assert logout(anon, old).status_code == 401  # expired, as every token of a forgotten sign-in is
    assert refresh(anon, recent).status_code == 401
    assert settings.CELERY_BEAT_SCHEDULE["sign-ins-forget"]["task"] == sign_ins_forget_task.name


@pytest.mark.django_db
def test_sign_ins_are_forgotten_in_bounded_batches_found_through_their_expiry(alice, still_clock, monkeypatch):
    """One DELETE of every sign-in expired a month ago read the whole table (no index on
    expires_at: 1.85M rows filtered, 3.0 s) and removed them all in one statement and transaction."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.tasks import sign_ins_forget_task
    from conftest import plans_of
    from paygo import db

    for _ in range(5):
        token_pair_for(alice)
    still_clock.shift(timedelta(days=38))  # they expired a month ago and a day
    token_pair_for(alice)
    monkeypatch.setattr(db, "DELETE_BATCH", 2)

    with CaptureQueriesContext(connection) as forgetting:
        assert run_task(sign_ins_forget_task) == 5

    assert [s.expires_at > timezone.now() for s in SignIn.objects.filter(user=alice)] == [True]
    plans = plans_of(forgetting, "accounts_signin")
    finds = [(sql, plan) for sql, plan in plans if sql.startswith("SELECT")]
    deletes = [sql for sql, _ in plans if sql.startswith("DELETE")]
    assert (len(finds), len(deletes)) == (3, 3)  # 2, 2 and 1: each batch's ids found, then deleted by id
    assert [sql for sql, plan in finds if "LIMIT 2" not in sql or "accounts_signin_expires_idx" not in plan] == []
