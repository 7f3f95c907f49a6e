"""staff_has: the one rule for what staff may do through the API, the admin's."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from conftest import grant
from paygo.api.permissions import staff_has

pytestmark = pytest.mark.django_db


def test_staff_hold_only_the_permissions_given_to_them(stan):
    assert not staff_has(stan, "marketplace.view_service")

    stan = grant(stan, "marketplace.view_service", "streaming.view_streamingsession")

    assert staff_has(stan, "marketplace.view_service")
    assert staff_has(stan, "marketplace.view_service", "streaming.view_streamingsession")
    assert not staff_has(stan, "marketplace.view_service", "marketplace.change_service")


def test_as_in_the_admin_the_change_permission_lets_one_view_but_not_the_reverse(stan):
    changer = grant(stan, "marketplace.change_service")

    assert staff_has(changer, "marketplace.view_service")
    assert not staff_has(changer, "marketplace.delete_service")
    assert not staff_has(grant(stan, "streaming.view_streamingsession"), "streaming.change_streamingsession")


def test_superusers_hold_them_all_and_non_staff_none(olga, alice):
    assert staff_has(olga, "marketplace.delete_service", "dashboards.view_platform_overview")
    alice = grant(alice, "marketplace.view_service")  # not staff: the admin would not let her in

    assert not staff_has(alice, "marketplace.view_service")
    assert not staff_has(AnonymousUser(), "marketplace.view_service")
    assert not staff_has(None, "marketplace.view_service")
