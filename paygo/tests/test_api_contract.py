"""Schemathesis against the API's own schema, on the real server (Daphne, PostgreSQL, Redis), as a
user, a vendor and staff: no 5xx, no answer the schema does not describe, no undocumented status.

The server runs the README's way in a subprocess (paygo/tests/conftest.py's live_daphne) on this
test's committed database, so money moves as it does in production, and the ledger checks that run
after every test (conftest's _ledger_conserved) judge what the random requests did to it.

Each caller owns real objects (a service, a session, a consultation, a notification, a withdrawal,
an image), and generated path parameters are drawn from those as well as from random values, so
that operations on objects get past their lookups. Generation is deterministic (the same requests
on every run) and bounded per operation, so that the run takes under a minute per caller;
API_CONTRACT_EXAMPLES=50 (say) fuzzes deeper, for a run by hand.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from accounts.services import image_upload, token_pair_for
from accounts.tests.conftest import picture, upload_file
from marketplace.tests.conftest import make_service  # noqa: F401 (a fixture)
from wallets.tests.conftest import fund_wallet

USDC = 1_000_000
SLOW_ANSWER_SECONDS = 120

# The coverage phase (every parameter's boundary values, missing and wrong-typed fields, other
# methods) runs once per operation, as the caller it was made for: the one who gets past its
# permission check to its validation. Everyone else fuzzes it, a few deterministic examples each.
OWNERS = {
    "vendor": r"^\w+ /api/v1/(service|vendorprofiles/|dashboard/vendor/|consultations/vendor/)"
    r"|^POST /api/v1/streams/\{session_id\}/usage$",
    "staff": r"^\w+ /api/v1/(adminprofiles/|profiles/all$|dashboard/admin/)|^POST /api/v1/notifications$",
}


def config_for(role: str) -> SchemathesisConfig:
    owned = (
        {"include-name-regex": OWNERS[role]}
        if role in OWNERS
        else {"exclude-name-regex": "|".join(f"({pattern})" for pattern in OWNERS.values())}
    )
    return SchemathesisConfig.from_dict(
        {
            "seed": 13,
            # Generous bounds on one answer: a busy machine (the whole suite in parallel beside other
            # work) made answers take over Schemathesis's default 10 s; a hung server is still caught.
            "request-timeout": SLOW_ANSWER_SECONDS,
            # The caller's token is sent with every request (the ignored_auth check tries without it).
            "generation": {
                "deterministic": True,
                "database": "none",
                "max-examples": int(os.environ.get("API_CONTRACT_EXAMPLES", 5)),
                "with-security-parameters": False,
            },
            # positive_data_acceptance wants every request the schema allows to succeed, but rules
            # beyond a schema's reach (an unknown vendor, two equal tokens) are 400s by design. Its
            # converse, negative_data_rejection (input the schema forbids is refused), stays.
            "checks": {"positive_data_acceptance": {"enabled": False}},
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
            "operations": [{**owned, "phases": {"coverage": {"enabled": True}}}],
        }
    )


def _world(alice, victor, olga, make_service) -> dict:  # noqa: F811 (the fixture imported above)
    """One of each object, committed for the server to see."""
    from consultations.services import consultation_create
    from notifications.services import notification_create
    from streaming.services import session_start
    from wallets.ledger import asset_get
    from wallets.services import withdrawal_request

    fund_wallet(alice, 1000 * USDC)
    service = make_service(victor, rate=1000)  # 0.001 USDC a minute
    session = session_start(user=alice, service=service)
    consultation, _ = consultation_create(
        user=alice, vendor_id=victor.pk, service_id=service.pk, initial_message="Hello"
    )
    notifications = [
        notification_create(user=user, type="system", title="Hi", message="Hello") for user in (alice, victor, olga)
    ]
    withdrawal = withdrawal_request(user=alice, asset=asset_get("USDC"), amount=USDC, to_address="0x00" + "ab" * 31)
    image = image_upload(owner=alice, upload=upload_file(picture()))
    return {
        "callers": {"user": alice, "vendor": victor, "staff": olga},
        # What each path parameter may name, beside what Schemathesis makes up.
        "ids": {
            "service_id": [service.pk],
            "session_id": [str(session.session_id)],
            "consultation_id": [consultation.pk],
            "notification_id": [n.pk for n in notifications],
            "id": [str(withdrawal.pk)],
            "image_id": [str(image.pk)],
        },
    }


# Object lookups each caller must get through at least once (with a 2xx): proof that the generated
# requests reach real objects rather than stopping at 404s.
REACHED = {
    "user": {
        "GET /api/v1/streams/{session_id}",
        "GET /api/v1/consultations/{consultation_id}",
        "GET /api/v1/images/{image_id}",
        "GET /api/v1/wallet/withdrawals/{id}",
    },
    "vendor": {"GET /api/v1/service/{service_id}", "GET /api/v1/consultations/{consultation_id}"},
    "staff": {"GET /api/v1/streams/{session_id}", "GET /api/v1/dashboard/user/sessions/{session_id}"},
}


@dataclass
class Caller:
    role: str
    headers: dict[str, str]
    ids: dict[str, list]
    address: tuple[str, int]
    succeeded: set[str] = field(default_factory=set)  # operations that answered a 2xx


@pytest.fixture(params=["user", "vendor", "staff"])
def caller(request, live_daphne, settings, tmp_path, alice, victor, olga, make_service):  # noqa: F811
    settings.MEDIA_ROOT = tmp_path / "media"
    # The server first: it loads (seconds of imports) while the world is built; it reads the
    # database only once requests come, after the world is committed.
    address = live_daphne(MEDIA_ROOT=str(settings.MEDIA_ROOT))
    world = _world(alice, victor, olga, make_service)
    user = world["callers"][request.param]
    caller = Caller(request.param, {"Authorization": f"Bearer {token_pair_for(user).access}"}, world["ids"], address)
    yield caller
    missed = REACHED[caller.role] - caller.succeeded
    assert not missed, f"never got past the lookup of the {caller.role}'s objects: {sorted(missed)}"


@pytest.fixture
def contract(caller):
    host, port = caller.address
    schema = schemathesis.openapi.from_url(
        f"http://{host}:{port}/api/v1/schema/?format=json", config=config_for(caller.role), timeout=SLOW_ANSWER_SECONDS
    )

    @schema.hook
    def before_add_examples(context, examples):
        # One request naming each of the caller's objects, whatever the fuzzing draws after it.
        names = re.findall(r"\{(\w+)\}", context.operation.path)
        if names and all(name in caller.ids for name in names):
            for values in itertools.product(*(caller.ids[name] for name in names)):
                examples.append(context.operation.Case(path_parameters=dict(zip(names, values, strict=True))))

    @schema.hook
    def flatmap_case(context, case):
        # A path parameter either as generated or naming one of the caller's world's objects. Set on
        # the case, so that Schemathesis judges the request anew (a valid id in a case generated to
        # be invalid makes a valid request).
        choices = [
            (name, value) for name in case.path_parameters or {} if name in caller.ids for value in caller.ids[name]
        ]
        return st.sampled_from([None, *choices]).map(lambda choice: _naming(case, choice))

    return schema


def _naming(case, choice):
    if choice is not None:
        name, value = choice
        case.path_parameters = {**case.path_parameters, name: value}
    return case


schema = schemathesis.pytest.from_fixture("contract")


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(900)  # a bound on a hung server; the run takes about a minute per caller
@schema.parametrize()
def test_the_api_answers_as_its_schema_says(case, caller):
    response = case.call_and_validate(headers=caller.headers)
    if response.status_code < 300:
        caller.succeeded.add(f"{case.method} {case.path}")
