"""Health, schema and docs, camelCase, pagination shape and amount parsing."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from paygo.api.amounts import AmountError, format_minor, to_minor

pytestmark = pytest.mark.django_db


def test_health_reports_each_part(anon):
    response = anon.get("/api/v1/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "cache": "ok", "channelLayer": "ok"}


def test_schema_and_docs(anon):
    schema = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = anon.get("/api/v1/docs/")

    assert schema.status_code == 200
    assert "/api/v1/auth/register" in schema.json()["paths"]
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


def test_every_duration_in_the_schema_states_its_unit(anon):
    """A client reads a number of seconds as seconds only if the schema says so (issue 19)."""
    schema = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    durations = re.compile(r"(Seconds|Minutes|Length|Duration|UsageTime)$|^usage$")

    found = {
        f"{name}.{field}": spec.get("description", "")
        for name, component in schema["components"]["schemas"].items()
        for field, spec in component.get("properties", {}).items()
        if durations.search(field) and spec.get("type") in ("integer", "number")
    }

    assert {"WalletAnalytics.avgUsageTime", "UsageDay.usage", "UserOverviewFigures.averageSessionLength"} <= set(found)
    assert {field for field, text in found.items() if not re.search(r"\bin (seconds|minutes)\b", text)} == set()


def test_camel_case_out(api, alice):
    body = api(alice).get("/api/v1/auth/me").json()

    assert "walletAddress" in body["user"]
    assert "wallet_address" not in body["user"]


@pytest.mark.parametrize(
    ("value", "decimals", "minor"),
    [
        ("12.5", 6, 12_500_000),
        (12.5, 6, 12_500_000),
        ("0.000001", 6, 1),
        (1, 18, 10**18),
        ("1e2", 6, 100_000_000),
        ("0.1", 6, 100_000),
        (0.1, 6, 100_000),
        ("999999999999.999999", 6, 999_999_999_999_999_999),
    ],
)
def test_to_minor(value, decimals, minor):
    assert to_minor(value, decimals) == minor


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "Must not be negative."),
        ("0", "Must be greater than zero."),
        ("NaN", "Must be a finite number."),
        ("Infinity", "Must be a finite number."),
        ("-inf", "Must be a finite number."),
        ("abc", "Must be a number or a decimal string."),
        ("", "Must be a number or a decimal string."),
        (None, "Must be a number or a decimal string."),
        (True, "Must be a number or a decimal string."),
        ([1], "Must be a number or a decimal string."),
        ("0.0000001", "Must have at most 6 decimal places."),
        ("1e12", "Must be less than 1,000,000,000,000."),
        ("1" * 70, "Must be a number or a decimal string."),
    ],
)
def test_to_minor_refuses(value, message):
    with pytest.raises(AmountError, match=message.replace(".", r"\.")):
        to_minor(value, 6)


def test_zero_allowed_when_asked():
    assert to_minor("0", 6, allow_zero=True) == 0


@pytest.mark.parametrize(
    ("minor", "decimals", "text"),
    [
        (12_500_000, 6, "12.500000"),
        (1, 6, "0.000001"),
        (0, 6, "0.000000"),
        (-1, 6, "-0.000001"),
        (10**18, 18, "1.000000000000000000"),
        (5, 0, "5"),
    ],
)
def test_format_minor(minor, decimals, text):
    assert format_minor(minor, decimals) == text
    if minor > 0:
        assert to_minor(Decimal(text), decimals) == minor
