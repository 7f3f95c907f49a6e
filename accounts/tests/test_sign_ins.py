"""Refresh tokens are good for one refresh each (rotation), and a used one presented again ends its
sign-in."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import transaction
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.services import token_pair_for
from conftest import backend_pid, in_thread, money_db, wait_until_blocked_on_a_lock

REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/auth/me"
REVOKED = {
    "message": "This refresh token has been used already or its sign-in has ended; sign in again.",
    "statusCode": 401,
    "code": "token_revoked",
}


def refresh(client, token: str):
    return client.post(REFRESH, {"refreshToken": token}, format="json")


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
def test_a_used_refresh_token_presented_again_ends_its_sign_in_and_no_other(anon, alice):
    """The thief who replays the stolen token, and the owner who refreshed with it (or the other way
    round): whoever comes second is refused, and the sign-in ends for both. The user's other
    devices keep theirs."""
    stolen = token_pair_for(alice).refresh
    other_device = token_pair_for(alice).refresh
    owners_next = refresh(anon, stolen).json()["refreshToken"]

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
    assert (expired.status_code, expired.json()["code"]) == (401, "token_not_valid")


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

    assert sorted(answer.status_code for answer in answers) == [200] + [401] * 7
    assert all(answer.json() == REVOKED for answer in answers if answer.status_code == 401)
    # The losers presented a used token: the sign-in ended, for the winner's new token too.
    winner = next(answer for answer in answers if answer.status_code == 200).json()["refreshToken"]
    assert refresh(APIClient(), winner).json() == REVOKED


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

    assert outcome == {"first": "refreshed", "second": "token_revoked"}
