"""Ids beyond what the database holds are a 404 (or 400), never a 500."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

HUGE = "9" * 25


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"/api/v1/service/{HUGE}"),
        ("patch", f"/api/v1/service/{HUGE}/toggle-status"),
        ("get", f"/api/v1/consultations/{HUGE}"),
        ("get", f"/api/v1/consultations/{HUGE}/calls"),
        ("patch", f"/api/v1/notifications/{HUGE}"),
        ("delete", f"/api/v1/notifications/{HUGE}"),
        ("get", f"/api/v1/images/{HUGE}"),
        ("get", f"/api/v1/streams/{HUGE}"),
        ("get", f"/api/v1/wallet/withdrawals/{HUGE}"),
        ("get", f"/api/v1/dashboard/user/sessions/{HUGE}"),
    ],
)
def test_huge_ids_are_not_found(api, alice, method, path):
    response = getattr(api(alice), method)(path, {}, format="json")

    assert response.status_code in (400, 403, 404)  # 403: a role check before any lookup
    assert response.json()["statusCode"] == response.status_code
