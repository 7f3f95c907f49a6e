"""Whole numbers the API takes (paygo.api.validators.WholeNumberField): a JSON integer, or a string
of ASCII digits, as amounts are ASCII decimals (paygo.api.amounts). DRF's IntegerField reads
int(str(x)), which takes other scripts' digits (Arabic-Indic one, zero counted as 10 requests), "1_000", spaces
around, 10.0, and a sign ("+1" was staff's look at user 1's dashboard)."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from consultations.models import Consultation
from marketplace.models import Service
from marketplace.tests.test_service_api import body as service_body
from notifications.models import Notification
from paygo.api.parsers import JSONNumber
from paygo.api.validators import WholeNumberField
from streaming.models import StreamingSession
from streaming.tests.conftest import USDC, make_service  # noqa: F401 (a fixture)
from wallets.tests.conftest import balance_of

pytestmark = pytest.mark.django_db

ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x0660 + digit) for digit in range(10)))


def in_other_digits(number: int) -> str:
    return str(number).translate(ARABIC_INDIC)


@pytest.mark.parametrize(("data", "value"), [(10, 10), ("10", 10), ("010", 10), (-3, -3), (10**30, 10**30)])
def test_a_json_integer_or_ascii_digits_is_a_whole_number(data, value):
    assert WholeNumberField().run_validation(data) == value


@pytest.mark.parametrize(
    "data",
    [
        "\u0661\u0660",  # Arabic-Indic
        "\uff11\uff10",  # full-width
        "\u06f1\u06f0",  # Extended Arabic-Indic (Persian)
        "\u0967\u0966",  # Devanagari
        "1_0",
        "+10",  # every whole number the API takes is a count or an id, none signed: a sign is a typo
        "-3",
        "+0",
        " 10",
        "10\n",
        "10.0",
        "1e1",
        "1e0",
        "",
        10.0,
        JSONNumber("1e1"),
        JSONNumber("10.0"),
        True,
        None,
        [10],
    ],
)
def test_anything_else_is_refused(data):
    with pytest.raises(serializers.ValidationError) as refused:
        WholeNumberField(allow_null=False).run_validation(data)

    assert refused.value.detail == (
        ["This field may not be null."] if data is None else ["A valid integer is required."]
    )


# Two ways of writing a number that int() reads and no client means: another script's digits, a sign.
SPELLINGS = {"other scripts' digits": in_other_digits, "a sign": lambda number: f"+{number}"}


@pytest.mark.parametrize("spell", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_every_integer_the_api_takes_refuses_what_no_client_means(
    api,
    alice,
    bob,
    victor,
    olga,
    fund,
    make_service,  # noqa: F811 (the fixture imported above)
    spell,
):
    """Each integer a client sends, in a body or a query: 400 naming the field, nothing written."""
    fund(alice, 10 * USDC)
    usage_metered = make_service("per_request", rate=1_000, max_session_cost=USDC, max_event_quantity=100)
    timed = make_service("per_minute", rate=USDC)
    session = api(alice).post("/api/v1/streams/start", {"serviceId": usage_metered.pk}, format="json").json()
    before = {
        "sessions": StreamingSession.objects.count(),
        "services": Service.objects.count(),
        "consultations": Consultation.objects.count(),
        "notifications": Notification.objects.count(),
        "balances": (balance_of(alice), balance_of(bob)),
    }
    start = "/api/v1/streams/start"
    asks = {
        "quantity": (
            victor,
            "post",
            f"/api/v1/streams/{session['session']['id']}/usage",
            {"eventId": "e", "quantity": spell(10)},
        ),
        "serviceId": (alice, "post", start, {"serviceId": spell(timed.pk)}),
        "priceVersion": (alice, "post", start, {"serviceId": timed.pk, "priceVersion": spell(1)}),
        "recipientId": (alice, "post", "/api/v1/wallet/transfer", {"amount": "1", "recipientId": spell(bob.pk)}),
        "vendorId": (
            alice,
            "post",
            "/api/v1/consultations",
            {"vendorId": spell(victor.pk), "serviceId": timed.pk, "initialMessage": "Hello"},
        ),
        "freeSeconds": (victor, "post", "/api/v1/service", service_body(freeSeconds=spell(60))),
        "maxEventQuantity": (
            victor,
            "post",
            "/api/v1/service",
            service_body(name="Requests", unit="per_request", freeSeconds=0, maxEventQuantity=spell(5)),
        ),
        "userId": (
            olga,
            "post",
            "/api/v1/notifications",
            {"userId": spell(alice.pk), "title": "Hi", "message": "Hello"},
        ),
    }
    answers = {
        field: getattr(api(user), method)(path, data, format="json")
        for field, (user, method, path, data) in asks.items()
    }
    queries = {
        "vendorId (services)": (alice, "/api/v1/service", "vendorId", victor.pk),
        "userId (dashboard)": (olga, "/api/v1/dashboard/user/overview", "userId", alice.pk),
        "vendorId (dashboard)": (olga, "/api/v1/dashboard/vendor/earnings", "vendorId", victor.pk),
    }
    for what, (user, path, name, number) in queries.items():
        answers[what] = api(user).get(path, {name: spell(number)})

    refused = {field: (answer.status_code, list(answer.json().get("errors", {}))) for field, answer in answers.items()}
    assert refused == {
        **{field: (400, [field]) for field in asks},
        **{what: (400, [name]) for what, (_, _, name, _) in queries.items()},
    }
    assert {
        "sessions": StreamingSession.objects.count(),
        "services": Service.objects.count(),
        "consultations": Consultation.objects.count(),
        "notifications": Notification.objects.count(),
        "balances": (balance_of(alice), balance_of(bob)),
    } == before
