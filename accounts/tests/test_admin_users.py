"""Operators create vendors and admins in the admin, search and filter users, deactivate them."""

from __future__ import annotations

import pytest

from accounts.models import User

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


def test_search_filter_and_deactivate(client, olga, alice, bob, victor):
    client.force_login(olga)

    assert b"victor@example.com" in client.get("/admin/accounts/user/?role__exact=vendor").content
    assert b"alice@example.com" not in client.get("/admin/accounts/user/?role__exact=vendor").content
    assert b"bob@example.com" in client.get("/admin/accounts/user/?q=bob").content
    client.post("/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [bob.pk]})

    bob.refresh_from_db()
    alice.refresh_from_db()
    assert (bob.is_active, alice.is_active) == (False, True)


def test_users_cannot_reach_the_admin(client, alice):
    client.force_login(alice)

    assert client.get(ADD).status_code == 302
