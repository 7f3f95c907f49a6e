"""The web frontend lives on another origin: it can read every answer the API gives it, the
refusals made before a view runs included (a 413, a 400, an error page rewritten into the API's
format), and another origin can read none."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

FRONTEND = "http://localhost:3000"  # CORS_ALLOWED_ORIGINS in development


def _answers(anon, origin: str) -> dict:
    huge = {"CONTENT_LENGTH": "2000000"}  # declared over the 1 MiB limit: refused before it is read
    return {
        "preflight": anon.options("/api/v1/auth/login", HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"),
        "ok": anon.get("/api/v1/health", HTTP_ORIGIN=origin),
        "413": anon.generic("POST", "/api/v1/auth/login", b"{}", "application/json", HTTP_ORIGIN=origin, **huge),
        "400": anon.generic(
            "POST", "/api/v1/auth/login", b"{}", "application/json; charset=base64", HTTP_ORIGIN=origin
        ),
        "404": anon.get("/api/v1/no-such-thing", HTTP_ORIGIN=origin),
    }


# Whatever the origin, the API answers the same: only whether the browser lets the page read it differs.
STATUSES = {"preflight": 200, "ok": 200, "413": 413, "400": 400, "404": 404}


def test_the_frontend_reads_every_answer(anon):
    answers = _answers(anon, FRONTEND)

    assert {name: answer.status_code for name, answer in answers.items()} == STATUSES
    for name, answer in answers.items():
        assert answer.get("Access-Control-Allow-Origin") == FRONTEND, name


def test_another_origin_reads_none(anon):
    answers = _answers(anon, "https://evil.example")

    assert {name: answer.status_code for name, answer in answers.items()} == STATUSES
    for name, answer in answers.items():
        assert "Access-Control-Allow-Origin" not in answer, name
