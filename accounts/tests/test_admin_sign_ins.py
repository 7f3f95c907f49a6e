"""Sign-ins in the admin: staff who may view them see them, staff who may change them end them
(staff accounts' a superuser only), and nobody edits, adds or deletes one there."""

from __future__ import annotations

import pytest

from accounts.models import SignIn
from accounts.services import token_pair_for
from conftest import grant

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/accounts/signin/"
REFRESH = "/api/v1/auth/refresh"


def end(client, *sign_ins: SignIn):
    return client.post(CHANGELIST, {"action": "end_sign_ins", "_selected_action": [s.pk for s in sign_ins]})


def sign_in_of(user) -> tuple[SignIn, str]:
    """A new sign-in of `user` and its refresh token."""
    token = token_pair_for(user).refresh
    return SignIn.objects.filter(user=user).latest("created_at"), token


def test_a_superuser_sees_and_ends_a_users_sign_in(client, anon, olga, alice):
    sign_in, token = sign_in_of(alice)
    _, kept_token = sign_in_of(alice)
    client.force_login(olga)

    page = client.get(CHANGELIST)
    response = end(client, sign_in)

    assert page.status_code == 200 and b"alice@example.com" in page.content
    assert response.status_code == 302
    sign_in.refresh_from_db()
    assert (sign_in.ended_at is not None, sign_in.end_reason) == (True, "staff")
    assert anon.post(REFRESH, {"refreshToken": token}, format="json").json()["code"] == "token_revoked"
    assert anon.post(REFRESH, {"refreshToken": kept_token}, format="json").status_code == 200


@pytest.mark.parametrize(("permissions", "may_end"), [((), None), (("view_signin",), False)])
def test_staff_without_the_change_permission_do_not_end_sign_ins(client, stan, alice, permissions, may_end):
    sign_in, _ = sign_in_of(alice)
    client.force_login(grant(stan, *(f"accounts.{permission}" for permission in permissions)))

    page = client.get(CHANGELIST)
    end(client, sign_in)

    if may_end is None:
        assert page.status_code == 403
    else:
        assert page.status_code == 200 and b"end_sign_ins" not in page.content
    sign_in.refresh_from_db()
    assert sign_in.ended_at is None


def test_staff_with_the_change_permission_end_users_but_not_staff_sign_ins(client, stan, olga, alice):
    alices, _ = sign_in_of(alice)
    olgas, _ = sign_in_of(olga)
    stans, _ = sign_in_of(stan)
    client.force_login(grant(stan, "accounts.view_signin", "accounts.change_signin"))

    end(client, alices, olgas, stans)

    for sign_in in (alices, olgas, stans):
        sign_in.refresh_from_db()
    assert alices.end_reason == "staff" and stans.end_reason == "staff"  # a user's, and his own
    assert olgas.ended_at is None  # a superuser's


def test_nobody_adds_edits_or_deletes_a_sign_in_in_the_admin(client, olga, alice):
    sign_in, _ = sign_in_of(alice)
    client.force_login(olga)

    page = client.get(f"{CHANGELIST}{sign_in.pk}/change/")

    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client.get(f"{CHANGELIST}add/").status_code == 403
    assert client.get(f"{CHANGELIST}{sign_in.pk}/delete/").status_code == 403
    assert b"delete_selected" not in client.get(CHANGELIST).content
