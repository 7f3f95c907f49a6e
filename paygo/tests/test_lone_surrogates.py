"""A lone surrogate (U+D800 to U+DFFF) is not text: JSON can spell one with an escape ("\\ud800"),
and wherever it appears in a body, a value or a key, the body is refused with one 400 before any
field reads it. Fields that repeat a client's value in their error (choices), and the sign-up's rate
limit keyed on the email, used to answer a 500: the error could not be encoded as UTF-8.

Only a JSON escape can carry one (a body, query string or form is decoded from UTF-8, which has
none): the API's bodies, Chipi's webhook and WebSocket frames all read JSON with the one reader
(paygo.api.parsers.json_loads); the frames are tested in test_websocket_frames.py.
"""

from __future__ import annotations

import json

import pytest

from accounts.models import User
from consultations.models import Consultation
from marketplace.models import Service
from marketplace.tests.conftest import make_service  # noqa: F401 (a fixture)
from notifications.models import Notification
from paygo.api.parsers import JSONNotText, json_loads
from wallets.chipi import sign_webhook

pytestmark = pytest.mark.django_db


def assert_refused(response, surrogate: str = "D800") -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "lone_surrogate"
    assert body["statusCode"] == 400
    assert body["message"].startswith(f"The JSON holds a lone surrogate (U+{surrogate}), which is not a character")


def send(client, method: str, path: str, raw: str):
    return getattr(client, method)(path, data=raw, content_type="application/json")


def test_a_choice_field_repeats_no_surrogate_in_a_500(api, victor):
    raw = '{"name": "n", "category": "Time-Based", "rate": "1", "unit": "\\ud800"}'

    assert_refused(send(api(victor), "post", "/api/v1/service", raw))
    assert not Service.objects.exists()


def test_a_consultations_status(api, alice, victor, make_service):  # noqa: F811 (the fixture imported above)
    from consultations.services import consultation_create

    consultation, _ = consultation_create(
        user=alice, vendor_id=victor.pk, service_id=make_service(victor).pk, initial_message="Hello"
    )

    response = send(api(victor), "patch", f"/api/v1/consultations/{consultation.pk}/status", '{"status": "\\udfff"}')

    assert_refused(response, "DFFF")
    assert Consultation.objects.get().status == consultation.status


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "x", "email": "x@example.com", "password": "Sup3r-secret-pass!", "role": "\\ud800"}',
        # The rate limit keyed on the email reads it before any field does.
        '{"name": "x", "email": "\\ud800@example.com", "password": "Sup3r-secret-pass!"}',
    ],
)
def test_a_sign_up(anon, raw):
    assert_refused(send(anon, "post", "/api/v1/auth/register", raw))
    assert not User.objects.exists()


def test_a_notifications_type_and_a_key_of_its_data(api, olga, alice):
    for raw in (
        f'{{"userId": {alice.pk}, "title": "t", "message": "m", "type": "\\ud800"}}',
        f'{{"userId": {alice.pk}, "title": "t", "message": "m", "data": {{"\\ud800": 1}}}}',
    ):
        assert_refused(send(api(olga), "post", "/api/v1/notifications", raw))
    assert not Notification.objects.exists()


def test_a_signed_webhook(anon):
    raw = b'{"event": "payment.completed", "walletAddress": "0x\\ud800"}'

    signature = sign_webhook(raw)

    response = anon.post(
        "/api/v1/wallet/webhooks/chipi", data=raw, content_type="application/json", HTTP_CHIPI_SIGNATURE=signature
    )

    assert_refused(response)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a pair is one character beyond U+FFFF
        ('"\\\\ud800"', "\\ud800"),  # an escaped backslash: the six characters, not an escape
        ('{"\\u00e9": "\\u20ac"}', {"é": "€"}),
        ('"😀"', "\U0001f600"),
    ],
)
def test_what_is_text_is_read(raw, value):
    assert json_loads(raw) == value


@pytest.mark.parametrize("raw", ['"\\ud800"', '"\\ude00\\ud83d"', '["ok", {"k": "a\\udbff"}]', '{"\\udc00": 1}'])
def test_what_is_not_text_is_refused(raw):
    with pytest.raises(JSONNotText):
        json_loads(raw)


def test_a_valid_pair_is_kept_as_the_character(api, victor):
    raw = json.dumps({"name": "Smile", "category": "Time-Based", "rate": "1", "unit": "per_minute"}).replace(
        "Smile", "Smile \\ud83d\\ude00"
    )

    response = send(api(victor), "post", "/api/v1/service", raw)

    assert response.status_code == 201, response.content
    assert Service.objects.get().name == "Smile \U0001f600"
