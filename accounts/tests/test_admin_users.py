"""Operators create vendors and admins in the admin, search and filter users, deactivate them."""

from __future__ import annotations

import pytest

from accounts.models import User
from conftest import grant

pytestmark = pytest.mark.django_db

ADD = "/admin/accounts/user/add/"


def add_user(client, email: str, role: str):
    return client.post(
        ADD,
        {
            "email": email,
            "name": "New One",
            "role": role,
            "phone": "",
            "password1": "a-Long-pass-4321",
            "password2": "a-Long-pass-4321",
            "usable_password": "true",
        },
    )


@pytest.mark.parametrize(("role", "staff"), [("vendor", False), ("admin", True), ("user", False)])
def test_staff_create_users_of_every_role(client, olga, role, staff):
    client.force_login(olga)

    response = add_user(client, "New.One@Example.com", role)

    assert response.status_code == 302, response.content[:2000]
    user = User.objects.get(email="new.one@example.com")
    assert user.role == role
    assert (user.is_staff, user.is_superuser) == (staff, staff)
    assert user.check_password("a-Long-pass-4321")


def test_the_same_email_in_another_case_is_refused(client, olga, alice):
    client.force_login(olga)

    response = add_user(client, "ALICE@example.com", "vendor")

    assert response.status_code == 200
    assert b"already exists" in response.content
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1


def test_an_email_that_lower_case_makes_too_long_is_refused(client, olga):
    client.force_login(olga)

    response = add_user(client, "a@" + ".".join(["İ" * 60] * 3) + ".com", "vendor")

    assert response.status_code == 200  # the form again (was a 500)
    assert b"Lower-cased, this email has 368 characters" in response.content
    assert not User.objects.filter(role="vendor").exists()


def test_an_email_changed_in_the_admin_is_stored_as_sign_in_looks_it_up(client, olga, alice):
    client.force_login(olga)
    page = client.get(f"/admin/accounts/user/{alice.pk}/change/")
    form = {
        name: value
        for name, value in page.context["adminform"].form.initial.items()
        if value is not None and name not in ("groups", "user_permissions", "password", "last_login")
    }

    response = client.post(f"/admin/accounts/user/{alice.pk}/change/", {**form, "email": " Alice.New@Example.COM "})

    assert response.status_code == 302, response.content[:3000]
    alice.refresh_from_db()
    assert alice.email == "alice.new@example.com"


def test_search_filter_and_deactivate(client, olga, alice, bob, victor):
    client.force_login(olga)

    assert b"victor@example.com" in client.get("/admin/accounts/user/?role__exact=vendor").content
    assert b"alice@example.com" not in client.get("/admin/accounts/user/?role__exact=vendor").content
    assert b"bob@example.com" in client.get("/admin/accounts/user/?q=bob").content
    client.post("/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [bob.pk]})

    bob.refresh_from_db()
    alice.refresh_from_db()
    assert (bob.is_active, alice.is_active) == (False, True)


@pytest.mark.parametrize(
    ("permissions", "deactivated"), [(("view_user",), False), (("view_user", "change_user"), True)]
)
def test_deactivating_asks_the_change_permission(client, stan, alice, permissions, deactivated):
    """Staff who may only look at the users' list neither see nor run the deactivate action."""
    client.force_login(grant(stan, *(f"accounts.{permission}" for permission in permissions)))

    page = client.get("/admin/accounts/user/")
    client.post("/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [alice.pk]})

    assert page.status_code == 200
    assert (b"deactivate_users" in page.content) is deactivated
    alice.refresh_from_db()
    assert alice.is_active is not deactivated


def test_users_cannot_reach_the_admin(client, alice):
    client.force_login(alice)

    assert client.get(ADD).status_code == 302
