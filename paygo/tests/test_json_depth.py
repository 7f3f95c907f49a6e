"""JSON nested deeper than API_JSON_MAX_DEPTH is a 400 before anything recursive reads it."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings

from paygo.api.parsers import JSONTooDeep, check_json_depth, json_loads
from wallets.chipi import sign_webhook

pytestmark = pytest.mark.django_db


def nested(depth: int, kind: str = "list") -> str:
    """A JSON text nested `depth` levels deep (the outermost container is level 1)."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


def assert_too_deep(response) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "json_too_deep"
    assert body["message"] == f"The JSON nests deeper than {settings.API_JSON_MAX_DEPTH} levels."
    assert body["statusCode"] == 400


@pytest.mark.parametrize("depth", [500, 100_000])
@pytest.mark.parametrize("kind", ["list", "object"])
def test_deep_json_on_login_is_400_and_logs_no_error(anon, caplog, depth, kind):
    with caplog.at_level(logging.WARNING):
        response = anon.post("/api/v1/auth/login", data=nested(depth, kind), content_type="application/json")

    assert_too_deep(response)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_deep_json_inside_a_field_is_400(api, alice):
    body = '{"serviceId": 1, "device": ' + nested(500, "object") + "}"

    response = api(alice).post("/api/v1/streams/start", data=body, content_type="application/json")

    assert_too_deep(response)


def test_json_at_the_limit_is_parsed(api, alice):
    """32 levels (the body itself and 31 inside it) are not refused for their depth."""
    body = '{"amount": ' + nested(settings.API_JSON_MAX_DEPTH - 1) + ', "recipientId": 1}'

    response = api(alice).post("/api/v1/wallet/transfer", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["errors"]["amount"] == ["Must be a number or a decimal string."]


def test_a_form_body_is_not_parsed_by_json_endpoints(api, alice):
    """The API speaks JSON: a form field holding JSON never reaches a JSON field (nor its recursion)."""
    response = api(alice).post("/api/v1/streams/start", {"serviceId": 1, "device": nested(5000)}, format="multipart")

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_a_deep_signed_webhook_is_400(anon):
    raw = ('{"event": "payment.completed", "data": ' + nested(500, "object") + "}").encode()

    signature = sign_webhook(raw)

    response = anon.post(
        "/api/v1/wallet/webhooks/chipi", data=raw, content_type="application/json", HTTP_CHIPI_SIGNATURE=signature
    )

    assert_too_deep(response)


# --- The check itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',  # brackets inside a string
        '["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]',  # after an escaped quote
        "[" + ",".join(["[]"] * 10_000) + "]",  # wide, not deep
        nested(32),
    ],
)
def test_what_is_not_too_deep(text):
    check_json_depth(text, 32)
    assert json_loads(text) is not None


@pytest.mark.parametrize(
    "text",
    [nested(33), nested(33, "object"), "[" * 100_000, '{"a": "x", "b": ' + nested(40) + "}", "[" * 40 + '"' + "]" * 40],
)
def test_what_is_too_deep(text):
    with pytest.raises(JSONTooDeep):
        check_json_depth(text, 32)
    with pytest.raises(JSONTooDeep):
        json_loads(text)


@pytest.mark.parametrize("text", ['"' + '\\"' * 200_000, '["' + "\\\\" * 200_000, '"' * 200_001])
def test_the_check_reads_hostile_strings_in_one_pass(text):
    check_json_depth(text, 32)  # quadratic backtracking would stop here for hours
