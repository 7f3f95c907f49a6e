"""API answers carry tokens and money: no cache (browser, proxy, CDN) may keep them."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from conftest import PASSWORD
from paygo import urls as paygo_urls

pytestmark = pytest.mark.django_db


def test_tokens_are_not_cached(anon, alice):
    register = anon.post(
        "/api/v1/auth/register",
        {"name": "Carol", "email": "carol@example.com", "password": PASSWORD, "role": "user"},
        format="json",
    )
    login = anon.post("/api/v1/auth/login", {"email": "alice@example.com", "password": PASSWORD}, format="json")
    refresh = anon.post("/api/v1/auth/refresh", {"refreshToken": login.json()["refreshToken"]}, format="json")

    assert (register.status_code, login.status_code, refresh.status_code) == (201, 200, 200)
    for response in (register, login, refresh):
        assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "url", ["/api/v1/wallet/balance", "/api/v1/wallet/transactions", "/api/v1/auth/me", "/api/v1/notifications"]
)
def test_money_and_personal_data_are_not_cached(api, alice, url):
    response = api(alice).get(url)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("url", "status"), [("/api/v1/auth/me", 401), ("/api/v1/nothing-here", 404), ("/api/v1/service", 200)]
)
def test_every_api_answer_is_not_cached(anon, url, status):
    response = anon.get(url)

    assert response.status_code == status
    assert response["Cache-Control"] == "no-store"


@api_view(["GET"])
@permission_classes([AllowAny])
def _cacheable(request):
    return Response({"public": True}, headers={"Cache-Control": "public, max-age=60"})


@override_settings(
    ROOT_URLCONF=type("urls", (), {"urlpatterns": [path("api/v1/cacheable", _cacheable), *paygo_urls.urlpatterns]})
)
def test_a_view_that_says_how_to_cache_it_is_believed(anon):
    assert anon.get("/api/v1/cacheable")["Cache-Control"] == "public, max-age=60"


def test_pages_outside_the_api_are_left_alone(anon):
    assert "no-store" not in anon.get("/static/admin/css/base.css").get("Cache-Control", "")
