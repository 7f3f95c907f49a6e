"""A JSON object names each member once (I-JSON, RFC 7493, section 2.3): Python's json keeps the
last of two equal names, so {"amount": "1", ..., "amount": "2"} moved 2 where anything reading the
first (a gateway, an audit log, the client's own checks) saw 1. The API's bodies, Chipi's webhook and
WebSocket frames are read by the one reader (paygo.api.parsers.json_loads), which refuses such JSON;
the API's bodies also refuse two names that are one field once camelCase is read as snake_case
("recipientId" and "recipient_id")."""

from __future__ import annotations

import pytest

from paygo.api.parsers import JSONDuplicateName, json_loads
from wallets.tests.conftest import balance_of

pytestmark = pytest.mark.django_db

USDC = 1_000_000


def assert_refused(response) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert (body["code"], body["statusCode"]) == ("duplicate_name", 400)
    assert "names a member twice" in body["message"]


@pytest.mark.parametrize(
    "raw",
    [
        '{"amount": "1", "recipientId": %(bob)d, "amount": "2"}',
        '{"amount": "1", "recipientId": %(bob)d, "recipient_id": %(bob)d}',
        '{"amount": "1", "recipientId": %(bob)d, "metadata": {"a": 1, "a": 2}}',
    ],
    ids=["the same name", "one field in both cases", "in a nested object"],
)
def test_a_money_request_naming_a_member_twice_is_refused_and_moves_nothing(api, alice, bob, fund, raw):
    fund(alice, 10 * USDC)

    response = api(alice).post("/api/v1/wallet/transfer", data=raw % {"bob": bob.pk}, content_type="application/json")

    assert_refused(response)
    assert (balance_of(alice), balance_of(bob)) == (10 * USDC, 0)


def test_the_reader_refuses_equal_names_at_any_depth_and_keeps_distinct_ones():
    assert json_loads('{"a": {"b": 1, "B": 2}, "c": [{"d": 1}, {"d": 2}]}') == {
        "a": {"b": 1, "B": 2},
        "c": [{"d": 1}, {"d": 2}],
    }
    for raw in ('{"a": 1, "a": 1}', '[{"x": {"y": 1, "y": 2}}]', '{"\\u0061": 1, "a": 2}'):
        with pytest.raises(JSONDuplicateName):
            json_loads(raw)
