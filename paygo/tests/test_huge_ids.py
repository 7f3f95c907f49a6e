"""Ids beyond what the database holds are a 404, never a 500."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

HUGE = "9" * 25


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", f"/api/v1/service/{HUGE}", 404),
        ("patch", f"/api/v1/service/{HUGE}/toggle-status", 403),  # a vendor's action: the role is checked first
        ("get", f"/api/v1/consultations/{HUGE}", 404),
        ("get", f"/api/v1/consultations/{HUGE}/calls", 404),
        ("patch", f"/api/v1/notifications/{HUGE}", 404),
        ("delete", f"/api/v1/notifications/{HUGE}", 404),
        ("get", f"/api/v1/images/{HUGE}", 404),
        ("get", f"/api/v1/streams/{HUGE}", 404),
        ("get", f"/api/v1/wallet/withdrawals/{HUGE}", 404),
        ("get", f"/api/v1/dashboard/user/sessions/{HUGE}", 404),
    ],
)
def test_huge_ids_are_not_found(api, alice, method, path, status):
    response = getattr(api(alice), method)(path, {}, format="json")

    assert response.status_code == status
    assert response.json()["statusCode"] == status


def test_a_huge_id_a_vendor_toggles_is_not_found(api, victor):
    """The vendor passes the role check that stops a user above: the lookup itself answers 404."""
    response = api(victor).patch(f"/api/v1/service/{HUGE}/toggle-status", {}, format="json")

    assert response.status_code == 404
    assert response.json()["statusCode"] == 404
