"""Register, login, refresh and me, with their refusals."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework import exceptions
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import SignIn, User
from accounts.services import token_pair_for, user_deactivate
from conftest import PASSWORD

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/auth/me"


def register(anon, **overrides):
    body = {"name": "Carol", "email": "carol@example.com", "password": PASSWORD, "role": "user", **overrides}
    return anon.post(REGISTER, body, format="json")


ARGON2_FIRST = ["django.contrib.auth.hashers.Argon2PasswordHasher", "django.contrib.auth.hashers.PBKDF2PasswordHasher"]


@override_settings(PASSWORD_HASHERS=ARGON2_FIRST)
def test_register_answers_user_and_tokens(anon):
    response = register(anon)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"user", "token", "refreshToken"}
    assert set(body["user"]) == {"id", "name", "email", "role", "walletAddress"}
    assert body["user"]["email"] == "carol@example.com"
    assert body["user"]["role"] == "user"
    assert body["user"]["walletAddress"].startswith("0x") and len(body["user"]["walletAddress"]) == 66
    user = User.objects.get(pk=body["user"]["id"])
    assert user.wallet_address == body["user"]["walletAddress"]
    assert user.check_password(PASSWORD)
    assert user.password.startswith("argon2")
    assert not user.is_staff


def test_register_token_authenticates(anon, api):
    token = register(anon).json()["token"]
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = anon.get(ME)

    assert response.status_code == 200
    assert response.json()["user"]["email"] == "carol@example.com"


def test_register_vendor(anon):
    response = register(anon, role="vendor")

    assert response.status_code == 201
    assert User.objects.get(email="carol@example.com").role == "vendor"


def test_register_admin_role_refused(anon):
    response = register(anon, role="admin")

    assert response.status_code == 400
    assert "role" in response.json()["errors"]
    assert not User.objects.filter(email="carol@example.com").exists()


def test_register_unknown_role_refused(anon):
    response = register(anon, role="superuser")

    assert response.status_code == 400
    assert response.json()["errors"]["role"]
    assert User.objects.count() == 0


def test_register_same_email_other_case_refused(anon, alice):
    response = register(anon, email="ALICE@Example.COM")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "email_taken"
    assert body["errors"] == {"email": ["An account with this email already exists."]}
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1


def test_register_stores_email_lower_case(anon):
    register(anon, email="Carol@Example.com")

    assert User.objects.get().email == "carol@example.com"


# A valid address of 119 characters; its domain in ASCII (Punycode), as it is stored, 257.
LENGTHENED_BY_ASCII = "a@" + ".".join(["".join(chr(0x4E00 + 37 * i) for i in range(18))] * 6) + ".com"


def test_register_an_email_that_its_stored_form_makes_too_long_is_400(anon):
    response = register(anon, email=LENGTHENED_BY_ASCII)

    assert response.status_code == 400  # was a 500: the database refused the value
    assert response.json()["errors"]["email"] == [
        "As it is stored (its domain in ASCII), this email has 257 characters; at most 254 are allowed."
    ]
    assert User.objects.count() == 0


# Valid addresses (Django's validator takes any letters in a domain) whose domain has no ASCII form:
# a label of 60 "İ", lower-cased, is longer than a label may be; a label mixing text directions.
@pytest.mark.parametrize("email", ["a@" + ".".join(["İ" * 60] * 3) + ".com", "a@\u05e2ex.com"])
def test_register_an_email_whose_domain_has_no_ascii_form_is_400(anon, email):
    response = register(anon, email=email)

    assert response.status_code == 400  # was a 201 (the second): no mail could be sent to it
    assert response.json()["errors"]["email"] == [
        "This email's domain is not a valid internationalised domain name; check how it is spelled."
    ]
    assert User.objects.count() == 0


# One mailbox spelled another way: mail to either reaches it (Django's mail sends a Unicode domain in
# Punycode), so the second spelling is the taken email, not an account of its own.
OTHER_SPELLINGS = [
    ("alice@example.com", "alice@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"),  # full-width "example"
    ("alice@example.com", "alice@ex\u200bample.com"),  # a zero-width space, which mail drops
    ("alice@xn--exmple-cua.com", "alice@ex\u00e4mple.com"),  # one IDN domain, in Punycode and in Unicode
    ("alice@ex\u00e4mple.com", "Alice@EXA\u0308MPLE.com"),  # in capitals, its "ä" as "a" and a combining mark
    ("alice@strasse.de", "alice@stra\u00dfe.de"),  # "ß" is "ss" in a domain (IDNA 2003, as Django mails)
]


@pytest.mark.parametrize(("taken", "other"), OTHER_SPELLINGS)
def test_register_another_spelling_of_a_taken_mailbox_is_refused(anon, taken, other):
    first = register(anon, name="Alice", email=taken)
    assert first.status_code == 201, first.content

    second = register(anon, name="Mallory", email=other)

    assert second.status_code == 409, second.content  # was a 201: two accounts, one mailbox
    assert second.json()["code"] == "email_taken"
    assert User.objects.count() == 1


def test_register_stores_the_domain_as_mail_is_sent_to_it(anon):
    response = register(anon, email="Carol@\uff25\uff38\u00c4MPLE.com")

    assert response.status_code == 201
    assert response.json()["user"]["email"] == "carol@xn--exmple-cua.com"
    assert User.objects.get().email == "carol@xn--exmple-cua.com"


def test_register_weak_password_refused(anon):
    response = register(anon, password="123")

    assert response.status_code == 400
    assert response.json()["errors"]["password"]
    assert User.objects.count() == 0


@pytest.mark.parametrize("missing", ["name", "email", "password"])
def test_register_missing_field(anon, missing):
    body = {"name": "Carol", "email": "carol@example.com", "password": PASSWORD}
    del body[missing]

    response = anon.post(REGISTER, body, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][missing] == ["This field is required."]


# Each one hides a character, shows other words than it is made of ("PayGo Support"), or nothing.
INVISIBLE_NAMES = ["Victor\u200b", "\u202etroppuS oGyaP", "\u202etroppuS oGyaP\u202c", "a\x07b\x1b[31m", "\u200b"]


@pytest.mark.parametrize("name", INVISIBLE_NAMES)
def test_register_a_name_is_visible_text_as_every_other_name(anon, name):
    response = register(anon, name=name, role="vendor")  # a vendor's name is in the public directory

    assert response.status_code == 400  # was a 201
    assert response.json()["errors"]["name"] == [
        "Use visible characters only (no control, zero-width or text-direction characters)."
    ]
    assert User.objects.count() == 0


def test_register_writes_a_name_on_one_line(anon):
    """As every name: its line breaks are spaces. Written under it, lines read as PayGo's own ("...
    sent you" notifications, their emails); the words themselves are any name's to choose."""
    response = register(anon, name="Bob\n\nPayGo security: your wallet is locked\r\n")

    assert response.status_code == 201
    assert User.objects.get().name == "Bob PayGo security: your wallet is locked"


def test_register_keeps_a_name_in_one_form(anon):
    response = register(anon, name="  \uff23arol   Cafe\u0301 ")

    assert response.status_code == 201
    assert response.json()["user"]["name"] == User.objects.get().name == "Carol Caf\u00e9"


def test_a_name_is_visible_text_whoever_creates_the_user():
    """The rule is the write path's too (accounts.services.user_create): createsuperuser, the shell."""
    with pytest.raises(exceptions.ValidationError) as refused:
        User.objects.create_user("dora@example.com", PASSWORD, name="\u202earoD")

    assert set(refused.value.detail) == {"name"}
    assert User.objects.count() == 0
    assert User.objects.create_user("dora@example.com", PASSWORD, name=" Dora\n").name == "Dora"


def test_register_bad_email(anon):
    response = register(anon, email="not-an-email")

    assert response.status_code == 400
    assert response.json()["errors"]["email"] == ["Enter a valid email address."]


@pytest.mark.parametrize("path", [REGISTER, LOGIN])
@pytest.mark.parametrize("raw", ["[]", '"x"', "123", "true", "null", '[{"email": "alice@example.com"}]'])
def test_a_body_that_is_not_an_object_is_the_400_of_every_endpoint(anon, alice, path, raw):
    users = User.objects.count()

    response = anon.post(path, data=raw, content_type="application/json")
    elsewhere = anon.post(REFRESH, data=raw, content_type="application/json")

    assert response.status_code == elsewhere.status_code == 400
    assert response.json() == elsewhere.json()
    # Said in the API's words and code, not DRF's ("No data provided", code "null").
    assert response.json() == {"message": "Send a JSON object.", "statusCode": 400, "code": "invalid"}
    assert User.objects.count() == users


def test_login_answers_user_and_tokens(anon, alice):
    response = anon.post(LOGIN, {"email": "alice@example.com", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["user"]["id"] == alice.pk
    assert body["token"] and body["refreshToken"]


def test_login_email_is_case_insensitive(anon, alice):
    response = anon.post(LOGIN, {"email": "Alice@EXAMPLE.com", "password": PASSWORD}, format="json")

    assert response.status_code == 200


@pytest.mark.parametrize(
    "spelling", ["ALICE@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com", "alice@ex\u200bample.com"]
)
def test_login_with_another_spelling_of_the_mailbox(anon, alice, spelling):
    response = anon.post(LOGIN, {"email": spelling, "password": PASSWORD}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["user"]["id"] == alice.pk


def test_login_to_an_account_of_an_internationalised_domain_in_either_spelling(anon):
    user = User.objects.create_user("dora@ex\u00e4mple.com", PASSWORD, name="Dora")
    assert user.email == "dora@xn--exmple-cua.com"

    for spelling in ("dora@EX\u00c4MPLE.com", "dora@xn--exmple-cua.com"):
        response = anon.post(LOGIN, {"email": spelling, "password": PASSWORD}, format="json")
        assert response.status_code == 200, (spelling, response.content)


def test_wrong_password_and_unknown_email_answer_the_same(anon, alice):
    wrong_password = anon.post(LOGIN, {"email": "alice@example.com", "password": "nope-nope"}, format="json")
    unknown_email = anon.post(LOGIN, {"email": "nobody@example.com", "password": PASSWORD}, format="json")

    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["message"] == "Invalid email or password."


def test_deactivated_user_cannot_log_in_and_tokens_stop(anon, api, alice):
    client = api(alice)
    refresh = token_pair_for(alice).refresh
    assert client.get(ME).status_code == 200

    user_deactivate(user=alice)

    assert anon.post(LOGIN, {"email": "alice@example.com", "password": PASSWORD}, format="json").status_code == 401
    me = client.get(ME)
    assert me.status_code == 401
    assert me.json()["statusCode"] == 401
    assert anon.post(REFRESH, {"refreshToken": refresh}, format="json").status_code == 401


def test_a_deactivation_ends_the_users_sign_ins_for_good(anon, alice):
    """Deactivated (taken over, say), the account's refresh tokens were only refused while it stayed
    inactive: reactivated, every device signed in before, the thief's included, was back."""
    refresh = token_pair_for(alice).refresh

    user_deactivate(user=alice)
    User.objects.filter(pk=alice.pk).update(is_active=True)

    refused = anon.post(REFRESH, {"refreshToken": refresh}, format="json")
    assert refused.status_code == 401 and refused.json()["code"] == "token_revoked"
    assert set(SignIn.objects.filter(user=alice).values_list("end_reason", flat=True)) == {SignIn.EndReason.STAFF}


def test_a_login_that_read_the_account_before_its_deactivation_committed_signs_nobody_in(alice):
    """The login checked the password of an active account; the deactivation committed before its
    sign-in was recorded, so it ended every sign-in but that one, which worked again once the
    account was reactivated."""
    read_by_the_login = User.objects.get(pk=alice.pk)
    user_deactivate(user=User.objects.get(pk=alice.pk))

    with pytest.raises(exceptions.AuthenticationFailed):
        token_pair_for(read_by_the_login)
    assert not SignIn.objects.filter(user=alice).exists()


def test_refresh_gives_a_working_access_token(anon, alice):
    refresh = token_pair_for(alice).refresh

    response = anon.post(REFRESH, {"refreshToken": refresh}, format="json")

    assert response.status_code == 200
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    assert anon.get(ME).json()["user"]["id"] == alice.pk


def test_refresh_with_access_token_refused(anon, alice):
    response = anon.post(REFRESH, {"refreshToken": token_pair_for(alice).access}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "token_invalid"


def test_refresh_with_garbage_refused(anon):
    response = anon.post(REFRESH, {"refreshToken": "garbage"}, format="json")

    assert response.status_code == 401


def test_refresh_of_deleted_user_refused(anon, alice):
    refresh = token_pair_for(alice).refresh
    alice.delete()

    assert anon.post(REFRESH, {"refreshToken": refresh}, format="json").status_code == 401


NEW_PASSWORD = "a-brand-new-Password-42"


def _password_changed_in_the_admin(client, operator, user) -> None:
    client.force_login(operator)
    response = client.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content[:2000]


@pytest.mark.parametrize("how", ["service", "admin"])
def test_a_changed_password_ends_every_token_issued_before_it(anon, client, api, alice, olga, how):
    """A stolen token outlives nothing: once the password changes (its owner's doing, or an
    operator's reset in the admin), the access and refresh tokens issued before are refused, and
    signing in with the new password gives tokens that work."""
    old = token_pair_for(alice)
    before = api(alice)
    if how == "service":
        alice.set_password(NEW_PASSWORD)
        alice.save(update_fields=["password"])
    else:
        _password_changed_in_the_admin(client, olga, alice)

    me = before.get(ME)
    refreshed = anon.post(REFRESH, {"refreshToken": old.refresh}, format="json")

    assert (me.status_code, me.json()["code"]) == (401, "password_changed")
    assert (refreshed.status_code, refreshed.json()["code"]) == (401, "password_changed")
    ended = SignIn.objects.get(pk=SignIn.id_of(AccessToken(old.access)))
    assert (ended.ended_at is not None, ended.end_reason) == (True, SignIn.EndReason.PASSWORD_CHANGED)
    signed_in = anon.post(LOGIN, {"email": alice.email, "password": NEW_PASSWORD}, format="json")
    assert signed_in.status_code == 200
    fresh = anon.post(REFRESH, {"refreshToken": signed_in.json()["refreshToken"]}, format="json")
    assert fresh.status_code == 200
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {fresh.json()['token']}")
    assert anon.get(ME).json()["user"]["id"] == alice.pk


def test_me_without_token(anon):
    response = anon.get(ME)

    assert response.status_code == 401
    assert response.json() == {
        "message": "Authentication credentials were not provided.",
        "statusCode": 401,
        "code": "not_authenticated",
    }


def test_me_with_bad_token(anon):
    anon.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")

    response = anon.get(ME)

    assert response.status_code == 401
    assert response.json()["statusCode"] == 401


@override_settings(RATELIMIT_LOGIN_PER_IP="3/m")  # failures per email and address: test_login_throttling
def test_login_rate_limited_per_ip(anon, alice, still_clock):
    for n in range(3):
        anon.post(LOGIN, {"email": f"x{n}@example.com", "password": "wrong-one"}, format="json")

    response = anon.post(LOGIN, {"email": "alice@example.com", "password": PASSWORD}, format="json")

    assert (response.status_code, response.json()["code"]) == (429, "rate_limited")
    assert "token" not in response.json()
    assert not SignIn.objects.filter(user=alice).exists()  # her right password signed nobody in


@override_settings(RATELIMIT_REGISTER_PER_IP="2/h")
def test_register_rate_limited_per_ip(anon, still_clock):
    assert register(anon, email="a1@example.com").status_code == 201
    assert register(anon, email="a2@example.com").status_code == 201

    response = register(anon, email="a3@example.com")

    assert response.status_code == 429
    assert response.json()["statusCode"] == 429
    assert not User.objects.filter(email="a3@example.com").exists()


@override_settings(RATELIMIT_REGISTER_PER_EMAIL="2/h")
def test_register_rate_limited_per_mailbox_whatever_its_spelling(anon, still_clock):
    for spelling in ("carol@ex\u00e4mple.com", "CAROL@xn--exmple-cua.com"):
        assert register(anon, email=spelling, password="short").status_code == 400  # counted all the same

    response = register(anon, email="carol@EXA\u0308MPLE.com")

    assert response.status_code == 429  # was a 201: each spelling had a budget of its own
    assert User.objects.count() == 0


def test_register_succeeds_when_chipi_is_down(anon):
    from wallets.chipi.sandbox import get_sandbox

    get_sandbox().inject("create_wallet", "error")
    try:
        response = register(anon)
    finally:
        get_sandbox().reset()

    assert response.status_code == 201
    assert response.json()["user"]["walletAddress"] == ""


def test_each_user_gets_their_own_address(anon):
    first = register(anon, email="one@example.com").json()["user"]["walletAddress"]
    second = register(anon, email="two@example.com").json()["user"]["walletAddress"]

    assert first != second


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_authorization_scheme_is_case_insensitive(anon, alice, scheme):
    """RFC 9110 11.1: an authentication scheme is matched case-insensitively."""
    anon.credentials(HTTP_AUTHORIZATION=f"{scheme} {token_pair_for(alice).access}")

    response = anon.get(ME)

    assert response.status_code == 200
    assert response.json()["user"]["id"] == alice.pk


@pytest.mark.parametrize("header", ["Basic abc", "Token abc", "bearer", "bearer a b"])
def test_other_schemes_and_malformed_bearer_headers_are_401(anon, header):
    anon.credentials(HTTP_AUTHORIZATION=header)

    response = anon.get(ME)

    assert response.status_code == 401


def test_an_expired_access_token_is_told_from_a_bad_one(anon, alice, still_clock):
    """A frontend refreshes on token_expired and signs out on token_invalid: both were
    token_not_valid, told apart only in simplejwt's `messages`, which the error format has not."""
    from datetime import timedelta

    from django.conf import settings

    access = token_pair_for(alice).access
    still_clock.shift(settings.JWT_LIFETIME + timedelta(seconds=1))
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")

    expired = anon.get(ME)

    assert expired.status_code == 401
    assert expired.json() == {
        "message": "Your session has expired; sign in again.",
        "statusCode": 401,
        "code": "token_expired",
    }


@pytest.mark.parametrize("kind", ["garbage", "refresh", "forged"])
def test_an_access_token_that_is_not_one_is_token_invalid(anon, alice, kind):
    pair = token_pair_for(alice)
    forged = AccessToken(pair.access)
    forged["user_id"] = User.objects.create_user(email="x@example.com", password=PASSWORD, name="X").pk
    token = {"garbage": "abc", "refresh": pair.refresh, "forged": str(forged)[:-2] + "xx"}[kind]
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    refused = anon.get(ME)

    assert refused.status_code == 401
    assert refused.json() == {
        "message": "This sign-in token is not valid; sign in again.",
        "statusCode": 401,
        "code": "token_invalid",
    }
