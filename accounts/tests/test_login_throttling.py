"""Login throttling, one rule for both doors (the API's /auth/login and the admin's /admin/login/):

- failed attempts are counted per (email, client address): after LOGIN_FAILURE_LIMIT of them that
  pair is locked out for LOGIN_LOCKOUT, even with the right password; the owner signing in from
  elsewhere is not, and a success clears the pair's count (django-axes);
- every attempt is counted per client address (RATELIMIT_LOGIN_PER_IP), whichever door.
Never by email alone: an attacker's failures must not lock the owner out.
"""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/api/v1/auth/login"
ADMIN_LOGIN = "/admin/login/"
ATTACKER, OWNER = "203.0.113.66", "198.51.100.7"
LIMIT = 3
LOCKOUT_SECONDS = 15 * 60


def api_login(client, email: str, password: str, ip: str):
    return client.post(LOGIN, {"email": email, "password": password}, format="json", REMOTE_ADDR=ip)


def admin_login(client: Client, email: str, password: str, ip: str):
    return client.post(ADMIN_LOGIN, {"username": email, "password": password}, REMOTE_ADDR=ip)


def signed_in_to_admin(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


# --- The admin -------------------------------------------------------------------------------------


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_admin_failures_lock_the_email_and_address_out_even_with_the_right_password(olga):
    attacker = Client()
    for _ in range(LIMIT - 1):
        assert admin_login(attacker, "olga@example.com", "wrong-one", ATTACKER).status_code == 200  # the form again

    locked = admin_login(attacker, "olga@example.com", "wrong-one", ATTACKER)
    right_password = admin_login(attacker, "olga@example.com", PASSWORD, ATTACKER)

    for response in (locked, right_password):
        assert response.status_code == 429
        assert response["Retry-After"] == str(LOCKOUT_SECONDS)
        page = response.content.decode()
        assert "Too many failed sign-ins" in page
        assert "15 minutes" in page
    assert not signed_in_to_admin(attacker)


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_the_owner_is_not_locked_out_by_an_attackers_failures(olga):
    attacker = Client()
    for _ in range(LIMIT + 2):
        admin_login(attacker, "olga@example.com", "wrong-one", ATTACKER)

    owner = Client()
    response = admin_login(owner, "OLGA@example.com", PASSWORD, OWNER)

    assert response.status_code == 302
    assert signed_in_to_admin(owner)


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_successful_sign_ins_are_not_counted_and_clear_the_failures(olga):
    owner = Client()
    for _ in range(LIMIT * 2):
        assert admin_login(owner, "olga@example.com", PASSWORD, OWNER).status_code == 302
        owner.logout()
    for _ in range(LIMIT - 1):
        admin_login(owner, "olga@example.com", "typo", OWNER)
    assert admin_login(owner, "olga@example.com", PASSWORD, OWNER).status_code == 302  # clears the count
    owner.logout()

    for _ in range(LIMIT - 1):
        admin_login(owner, "olga@example.com", "typo", OWNER)
    assert admin_login(owner, "olga@example.com", PASSWORD, OWNER).status_code == 302


@override_settings(RATELIMIT_LOGIN_PER_IP="3/m")
def test_admin_attempts_are_limited_per_address_whatever_the_email(olga, still_clock):
    client = Client()
    for n in range(3):
        admin_login(client, f"x{n}@example.com", "wrong-one", ATTACKER)

    response = admin_login(client, "olga@example.com", PASSWORD, ATTACKER)

    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.content.decode()
    assert not signed_in_to_admin(client)
    assert admin_login(Client(), "olga@example.com", PASSWORD, OWNER).status_code == 302


# --- The API, by the same rule ---------------------------------------------------------------------


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_api_failures_lock_the_email_and_address_out_with_retry_after(anon, alice):
    for _ in range(LIMIT - 1):
        assert api_login(anon, "alice@example.com", "wrong-one", ATTACKER).status_code == 401

    locked = api_login(anon, "alice@example.com", "wrong-one", ATTACKER)
    right_password = api_login(anon, "Alice@Example.com", PASSWORD, ATTACKER)

    for response in (locked, right_password):
        assert response.status_code == 429
        assert response["Retry-After"] == str(LOCKOUT_SECONDS)
        assert response.json() == {
            "message": "Too many failed sign-ins for this email from your address; try again in 15 minutes.",
            "statusCode": 429,
            "code": "login_locked_out",
        }
    # The owner, elsewhere, signs in; another email from the attacker's address is not locked.
    assert api_login(anon, "alice@example.com", PASSWORD, OWNER).status_code == 200
    assert api_login(anon, "bob@example.com", "wrong-one", ATTACKER).status_code == 401


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_failures_count_against_the_mailbox_whatever_its_spelling(anon, alice):
    """Each spelling of one mailbox (a full-width or zero-width-spaced domain, capitals) signs in to
    its one account: each had a count of its own, LIMIT guesses per spelling."""
    spellings = ["alice@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "ALICE@ex\u200bample.com"]
    for spelling in spellings[: LIMIT - 1]:
        assert api_login(anon, spelling, "wrong-one", ATTACKER).status_code == 401

    locked = api_login(anon, "alice@example.com", "wrong-one", ATTACKER)
    locked_at_the_admin = admin_login(Client(), "Alice@\uff25xample.com", "wrong-one", ATTACKER)

    assert (locked.status_code, locked_at_the_admin.status_code) == (429, 429)


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_api_successes_are_not_counted(anon, alice):
    for _ in range(LIMIT * 2):
        assert api_login(anon, "alice@example.com", PASSWORD, OWNER).status_code == 200
    for _ in range(LIMIT - 1):
        api_login(anon, "alice@example.com", "typo", OWNER)
    assert api_login(anon, "alice@example.com", PASSWORD, OWNER).status_code == 200  # clears the count

    for _ in range(LIMIT - 1):
        api_login(anon, "alice@example.com", "typo", OWNER)
    assert api_login(anon, "alice@example.com", PASSWORD, OWNER).status_code == 200


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_one_count_for_both_doors(anon, olga):
    for _ in range(LIMIT):
        admin_login(Client(), "olga@example.com", "wrong-one", ATTACKER)

    response = api_login(anon, "olga@example.com", PASSWORD, ATTACKER)

    assert response.status_code == 429
    assert response.json()["code"] == "login_locked_out"


@override_settings(RATELIMIT_LOGIN_PER_IP="3/m")
def test_one_per_address_budget_for_both_doors(anon, olga, still_clock):
    for n in range(3):
        admin_login(Client(), f"x{n}@example.com", "wrong-one", ATTACKER)

    response = api_login(anon, "olga@example.com", PASSWORD, ATTACKER)

    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_guesses_from_one_ipv6_network_are_one_clients(anon, alice):
    """A client holds a whole IPv6 /64 and may send each guess from another address of it: the
    lockout, counted per address, never came (the per-address budget already counted the /64)."""
    guesses = [api_login(anon, "alice@example.com", "wrong-one", f"2001:db8:7:9::{n + 1:x}") for n in range(LIMIT)]

    right_password = api_login(anon, "alice@example.com", PASSWORD, "2001:db8:7:9::ffff")
    elsewhere = api_login(anon, "alice@example.com", PASSWORD, "2001:db8:7:a::1")  # another /64: another client

    assert [guess.status_code for guess in guesses] == [401] * (LIMIT - 1) + [429]  # locked at the limit
    assert right_password.status_code == 429
    assert elsewhere.status_code == 200


@override_settings(RATELIMIT_LOGIN_PER_IP="3/m")
def test_ipv4_clients_written_as_ipv6_are_each_their_own(anon, alice, still_clock):
    """A dual-stack socket writes an IPv4 peer as ::ffff:a.b.c.d: every IPv4 client was counted
    as "::" (django-ratelimit masks IPv6 to /64), one budget for them all."""
    for _ in range(3):
        api_login(anon, "alice@example.com", PASSWORD, "::ffff:198.51.100.20")

    other = api_login(anon, "alice@example.com", PASSWORD, "::ffff:203.0.113.9")
    same = api_login(anon, "alice@example.com", PASSWORD, "198.51.100.20")  # the first, written as IPv4

    assert (other.status_code, same.status_code) == (200, 429)
