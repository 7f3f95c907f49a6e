"""The OpenAPI schema tells the truth: every error an operation gives, in the error format; lists as
the pages they answer; profiles in the envelope they come in. (Schemathesis checks the same against
the running server, test_api_contract.py; these name the rules.)"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from streaming.tests.conftest import make_service  # noqa: F401

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def schema(anon) -> dict:
    return anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _body(schema: dict, method: str, path: str, status: str) -> dict:
    response = schema["paths"][path][method]["responses"][status]
    return _resolve(schema, response["content"]["application/json"]["schema"])


def test_the_schema_is_generated_without_warnings_and_is_valid_openapi():
    call_command("spectacular", "--fail-on-warn", "--validate", stdout=io.StringIO())


def test_every_operation_documents_the_errors_its_kind_of_view_gives(schema):
    for method, path, operation in _operations(schema):
        statuses = set(operation["responses"])
        where = (method, path, sorted(statuses))
        if any("jwtAuth" in requirement for requirement in operation.get("security", [])):
            assert "401" in statuses, where  # a token that is sent is checked
        if "requestBody" in operation:
            assert {"400", "413"} <= statuses, where
        if any(parameter["in"] == "path" for parameter in operation.get("parameters", [])):
            assert "404" in statuses, where
        if any(parameter["name"] == "Idempotency-Key" for parameter in operation.get("parameters", [])):
            assert "409" in statuses, where  # the same key with another request


def test_the_idempotency_key_header_says_how_long_a_key_replays(schema):
    """A client retrying after the retention gets a new request, not a replay: the schema says so."""
    from wallets.idempotency import KEY_RETENTION

    described = {
        parameter["description"]
        for _, _, operation in _operations(schema)
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "Idempotency-Key"
    }

    (description,) = described
    assert f"{KEY_RETENTION.days} days" in description
    assert "new request" in description


def test_errors_are_documented_in_the_error_format(schema):
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"message", "statusCode", "code"}
    assert "errors" in error["properties"]
    for method, path, operation in _operations(schema):
        for status, response in operation["responses"].items():
            if status.startswith("4"):
                # The error format, or the error format and the fields some of its codes carry.
                body = _resolve(schema, response["content"]["application/json"]["schema"])
                assert body["properties"].items() >= error["properties"].items(), (method, path, status)
                assert set(body["required"]) >= set(error["required"]), (method, path, status)


def test_errors_their_services_raise_are_documented(schema):
    def statuses(method, path):
        return set(schema["paths"][path][method]["responses"])

    assert {"401", "429"} <= statuses("post", "/api/v1/auth/login")
    assert {"409", "429"} <= statuses("post", "/api/v1/auth/register")
    assert {"401", "429"} <= statuses("post", "/api/v1/auth/refresh")  # used, ended, invalid or expired
    assert {"401", "429"} <= statuses("post", "/api/v1/auth/logout")
    assert "402" in statuses("post", "/api/v1/streams/start")
    assert "503" in statuses("post", "/api/v1/wallet/deposit")
    assert "401" in statuses("post", "/api/v1/wallet/webhooks/chipi")  # a bad signature
    assert "404" in statuses("get", "/api/v1/profiles/my-profile")  # none made yet
    assert _body(schema, "get", "/api/v1/health", "503") == _body(schema, "get", "/api/v1/health", "200")


def test_every_operation_documents_the_503_of_a_busy_database(schema):
    for method, path, operation in _operations(schema):
        busy = operation["responses"]["503"]
        assert "Retry-After" in busy["headers"], (method, path)
        if path != "/api/v1/health":  # its 503 is its report, with every check's state
            assert busy["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_every_operation_documents_the_proxys_answers_whose_outcome_is_unknown(schema):
    """Behind `make prod`'s nginx, a request a server took and never answered is a 502 or a 504 with
    code outcome_unknown (deploy/nginx.conf), and one nginx failed on after it reached a server a
    500: a client must know not to send it again blindly."""
    for method, path, operation in _operations(schema):
        for status in ("500", "502", "504"):
            answer = operation["responses"][status]
            assert "outcome_unknown" in answer["description"], (method, path, status)
            assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/api/v1/service", "services"),
        ("/api/v1/wallet/transactions", "transactions"),
        ("/api/v1/wallet/withdrawals", "withdrawals"),
        ("/api/v1/streams/active", "sessions"),
        ("/api/v1/streams/my-sessions", "sessions"),
        ("/api/v1/dashboard/user/sessions", "sessions"),
        ("/api/v1/vendorprofiles/all", "profiles"),
    ],
)
def test_lists_are_documented_as_the_pages_they_answer(schema, api, alice, path, key):
    page = _body(schema, "get", path, "200")
    answer = api(alice).get(path).json()

    assert page["type"] == "object"
    assert set(page["required"]) == {key, "count", "page", "totalPages", "next", "previous"}
    assert set(answer) == set(page["properties"])
    parameters = {p["name"]: p["schema"] for p in schema["paths"][path]["get"]["parameters"]}
    assert parameters["pageSize"] == {"type": "integer", "minimum": 1, "maximum": 100}


def test_every_paginated_operation_documents_its_paging_parameters_and_their_bounds(schema):
    """The lists that page (test_pagination.LISTS, and a consultation's messages beside it) say how:
    `page` from 1 or "last", `pageSize` from 1 to 100; and nothing else (`limit` is refused)."""
    from paygo.tests.test_pagination import LISTS

    paginated = {path.replace("{consultation}", "{consultation_id}") for path, _ in LISTS}
    paginated |= {"/api/v1/consultations/{consultation_id}"}  # its messages
    paging = {
        path: {p["name"]: p["schema"] for p in operation.get("parameters", []) if p["in"] == "query"}
        for method, path, operation in _operations(schema)
        if method == "get"
    }

    assert {path for path, query in paging.items() if "page" in query} >= paginated
    for path, query in paging.items():
        if "page" in query or "pageSize" in query or "limit" in query:
            assert "limit" not in query, path
            assert query["pageSize"] == {"type": "integer", "minimum": 1, "maximum": 100}, path
            assert query["page"] == {
                "oneOf": [
                    {"type": "integer", "minimum": 1, "maximum": 10**18 - 1},
                    {"type": "string", "enum": ["last"]},
                ]
            }, path


def test_a_consultations_calls_are_documented_as_the_pages_they_answer(schema, api, alice, make_service):  # noqa: F811
    from consultations.services import consultation_create

    service = make_service()
    consultation, _ = consultation_create(
        user=alice, vendor_id=service.vendor_id, service_id=service.pk, initial_message="Hi"
    )
    path = "/api/v1/consultations/{consultation_id}/calls"

    page = _body(schema, "get", path, "200")
    answer = api(alice).get(path.format(consultation_id=consultation.pk)).json()

    assert set(page["required"]) == {"calls", "count", "page", "totalPages", "next", "previous"}
    assert set(answer) == set(page["properties"])
    assert page["properties"]["calls"]["items"] == {"$ref": "#/components/schemas/Call"}
    detail = schema["components"]["schemas"]["ConsultationDetail"]
    assert {"calls", "callCount"} <= set(detail["required"])


@pytest.mark.parametrize(
    ("prefix", "who", "profile"),
    [("profiles", "alice", "Profile"), ("vendorprofiles", "victor", "VendorProfile")],
)
def test_profiles_are_documented_in_the_envelope_they_come_in(schema, api, alice, victor, prefix, who, profile):
    client = api({"alice": alice, "victor": victor}[who])
    created = client.post(f"/api/v1/{prefix}/create", {"bio": "Hello", "businessName": "Victor's"}, format="json")
    mine = client.get(f"/api/v1/{prefix}/my-profile")

    documented_created = _body(schema, "post", f"/api/v1/{prefix}/create", "201")
    documented_mine = _body(schema, "get", f"/api/v1/{prefix}/my-profile", "200")
    assert created.status_code == 201, created.content
    assert set(created.json()) == set(documented_created["properties"]) == {"message", "profile"}
    assert set(mine.json()) == set(documented_mine["properties"]) == {"profile"}
    assert documented_mine["properties"]["profile"] == {"$ref": f"#/components/schemas/{profile}"}


def test_fields_shown_to_the_payer_only_are_not_required_of_a_session(schema):
    session = schema["components"]["schemas"]["Session"]

    assert {"held", "stopAt"} <= set(session["properties"])
    assert not {"held", "stopAt"} & set(session["required"])


@pytest.mark.parametrize("path", ["/api/v1/streams/start", "/api/v1/consultations/{consultation_id}/call/start"])
def test_a_start_takes_the_price_version_shown_and_documents_the_409_of_a_changed_price(schema, path):
    operation = schema["paths"][path]["post"]
    body = _resolve(schema, operation["requestBody"]["content"]["application/json"]["schema"])

    assert "priceVersion" in body["properties"] and "priceVersion" not in body.get("required", [])
    assert "price_changed" in operation["responses"]["409"]["description"]
    conflict = _body(schema, "post", path, "409")
    assert {"serviceId", "priceVersion", "rate", "unit", "token", "maxSessionCost"} <= set(conflict["properties"])


def test_every_service_shows_its_price_version(schema):
    for name in ("Service", "ServiceBrief"):
        shown = schema["components"]["schemas"][name]
        assert "priceVersion" in shown["properties"] and "priceVersion" in shown["required"], name
        assert shown["properties"]["priceVersion"]["type"] == "integer"


@pytest.mark.parametrize("prefix", ["profiles", "vendorprofiles", "adminprofiles"])
def test_a_profile_put_is_documented_as_the_partial_change_it_is(schema, prefix):
    # The view changes only the fields it is sent, for PUT as for PATCH: nothing is required.
    put = schema["paths"][f"/api/v1/{prefix}/update"]["put"]["requestBody"]
    patch = schema["paths"][f"/api/v1/{prefix}/update"]["patch"]["requestBody"]

    assert put == patch
    assert not put.get("required")


@pytest.fixture
def generations(monkeypatch) -> list:
    """Every generation of the document from here on (drf-spectacular's generator, still called)."""
    from drf_spectacular.generators import SchemaGenerator

    from paygo.api import views

    views._SCHEMAS.clear()
    calls: list = []
    generate = SchemaGenerator.get_schema

    def counted(self, *args, **kwargs):
        calls.append(self)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counted)
    return calls


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("*/*", "application/vnd.oai.openapi"),  # YAML, the default
        ("application/vnd.oai.openapi+json", "application/vnd.oai.openapi+json"),
        ("application/json", "application/json"),
    ],
)
def test_the_document_is_generated_once_and_served_the_same_again(anon, generations, accept, content_type):
    first = anon.get("/api/v1/schema/", HTTP_ACCEPT=accept)
    again = anon.get("/api/v1/schema/", HTTP_ACCEPT=accept)

    assert len(generations) == 1
    assert first.status_code == again.status_code == 200
    assert first["Content-Type"] == again["Content-Type"]
    assert first["Content-Type"].split(";")[0] == content_type
    assert first["Content-Disposition"] == again["Content-Disposition"]
    assert first["Vary"] == again["Vary"] and "Accept" in again["Vary"]
    assert first.content == again.content
    assert b"/api/v1/wallet/balance" in again.content


def test_each_format_is_kept_apart(anon, generations):
    yaml = anon.get("/api/v1/schema/")
    json = anon.get("/api/v1/schema/?format=json")

    assert json.json()["paths"]
    assert not yaml.content.startswith(b"{")
    assert anon.get("/api/v1/schema/").content == yaml.content
    assert anon.get("/api/v1/schema/?format=json").content == json.content
    assert len(generations) == 2


def test_a_format_the_schema_has_not_is_ignored_as_elsewhere(anon, generations):
    yaml = anon.get("/api/v1/schema/")

    unknown = anon.get("/api/v1/schema/?format=csv")

    assert unknown.status_code == 200
    assert unknown.content == yaml.content
    assert anon.get("/api/v1/schema/?format=json").json()["paths"]


def test_what_does_not_change_the_document_is_answered_from_what_is_kept(anon, generations):
    from paygo.api import views

    anon.get("/api/v1/schema/?format=json")
    answers = [
        anon.get("/api/v1/schema/?format=json&_=1"),  # a cache-buster
        anon.get("/api/v1/schema/?version=anything&format=json"),  # one version of the API
        anon.get("/api/v1/schema/", HTTP_ACCEPT="text/html,application/vnd.oai.openapi+json;q=0.9"),  # a browser's
        anon.get("/api/v1/schema/", HTTP_ACCEPT="application/json;q=1.0"),
    ]

    assert [answer.status_code for answer in answers] == [200] * 4
    assert answers[0].content == answers[1].content
    assert answers[2].json() == answers[3].json() == answers[0].json()
    # ?format=json and the openapi+json media type are one renderer, application/json the other
    assert len(generations) == 2
    assert len(views._SCHEMAS) == 2


def test_a_rendering_a_client_chooses_is_answered_but_not_kept(anon, generations):
    from paygo.api import views

    answer = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/json; indent=4")

    assert answer.status_code == 200
    assert answer.content.startswith(b'{\n    "openapi"')  # drf-spectacular's own answer, indented
    assert len(generations) == 1
    assert views._SCHEMAS == {}


@pytest.mark.parametrize("lang", ["fr", "a%0Ab", "zz-ZZ", "%FF", "a" * 500])
def test_a_language_asked_for_is_ignored_the_kept_document_answers(anon, generations, lang):
    """The API speaks one language: any ?lang= gets the document that is kept (drf-spectacular
    generated it anew for each, 0.2-0.4 s of a core, and Django kept a translation per string)."""
    from paygo.api import views

    plain = anon.get("/api/v1/schema/?format=json")
    answers = [anon.get(f"/api/v1/schema/?format=json&lang={lang}") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200] * 3
    assert all(answer.content == plain.content for answer in answers)
    assert len(generations) == 1
    assert len(views._SCHEMAS) == 1


def test_the_docs_page_answers_get_and_head_and_refuses_other_methods(anon):
    """Its HTML renderer had no answer for OPTIONS: a 500 for anyone."""
    assert anon.get("/api/v1/docs/").status_code == 200
    assert anon.head("/api/v1/docs/").status_code == 200
    for method in ("options", "post", "put", "patch", "delete"):
        response = getattr(anon, method)("/api/v1/docs/")
        assert response.status_code == 405, method
        assert response.json()["statusCode"] == 405


def test_a_version_asked_for_is_never_written_into_a_header(anon, generations):
    answer = anon.get("/api/v1/schema/?version=a%0Ab")

    assert answer.status_code == 200
    assert answer["Content-Disposition"] == 'inline; filename="PayGo API.yaml"'


def test_a_change_of_settings_forgets_what_was_kept(anon, generations, settings):
    from paygo.api import views

    anon.get("/api/v1/schema/")
    assert views._SCHEMAS

    settings.PLATFORM_FEE_BPS += 1  # any setting: the document is made from them
    assert views._SCHEMAS == {}
    anon.get("/api/v1/schema/")

    assert len(generations) == 2


def _told(schema: dict, method: str, path: str, response) -> list[str]:
    """What the schema does not say of an error answered: its status, its code in the status's
    description, a field of its body among the properties documented."""
    answered = schema["paths"][path][method]["responses"].get(str(response.status_code))
    if answered is None:
        return [f"status {response.status_code} undocumented"]
    body = response.json()
    documented = _resolve(schema, answered["content"]["application/json"]["schema"])
    missing = [f"field {name}" for name in body if name not in documented["properties"]]
    if f"`{body['code']}`" not in answered["description"]:
        missing.append(f"code {body['code']}")
    return missing


def test_the_errors_services_answer_are_told_with_their_codes_and_fields(
    schema,
    api,
    alice,
    bob,
    victor,
    make_service,  # noqa: F811
    anon,
    still_clock,
):
    """A frontend reads from the schema which codes it may be answered and what comes with them: the
    402 of a start carried needed, available and token, a changed price its terms, a consultation's
    refused status its status, none of them in the schema, and eight codes were named nowhere."""
    from datetime import timedelta

    from django.conf import settings

    from accounts.services import token_pair_for
    from wallets.tests.conftest import fund_wallet

    service = make_service()  # 1 USDC a minute, victor's
    fund_wallet(alice, 10_000_000)
    consultation = "/api/v1/consultations"
    opened = api(alice).post(consultation, {"vendorId": victor.pk, "serviceId": service.pk, "initialMessage": "Hi"})
    thread = f"{consultation}/{opened.json()['consultation']['id']}"
    transfer = {"amount": "1", "recipientId": victor.pk}
    api(alice).post("/api/v1/wallet/transfer", transfer, HTTP_IDEMPOTENCY_KEY="k1")
    api(alice).post("/api/v1/profiles/create", {"bio": "x"})
    session = api(alice).post("/api/v1/streams/start", {"serviceId": service.pk}).json()["session"]["sessionId"]
    api(alice).patch(f"/api/v1/streams/{session}/stop", {})
    expired = token_pair_for(alice)

    refusals = {
        ("post", "/api/v1/streams/start"): [
            api(bob).post("/api/v1/streams/start", {"serviceId": service.pk}),
            api(alice).post("/api/v1/streams/start", {"serviceId": service.pk, "priceVersion": 99}),
        ],
        ("post", "/api/v1/wallet/transfer"): [
            api(alice).post("/api/v1/wallet/transfer", {**transfer, "amount": "2"}, HTTP_IDEMPOTENCY_KEY="k1"),
            api(bob).post("/api/v1/wallet/transfer", {"amount": "5", "recipientId": alice.pk}),
        ],
        ("post", "/api/v1/wallet/withdraw"): [
            api(alice).post("/api/v1/wallet/withdraw", {"amount": "0.000001", "toAddress": "0x" + "ab" * 32}),
        ],
        ("post", "/api/v1/wallet/swap"): [
            api(alice).post("/api/v1/wallet/swap", {"amount": "1", "fromToken": "USDC", "toToken": "USDT"}),
        ],
        ("patch", "/api/v1/streams/{session_id}/metrics"): [
            api(alice).patch(f"/api/v1/streams/{session}/metrics", {"bitrate": 1}),
        ],
        ("patch", "/api/v1/consultations/{consultation_id}/status"): [
            api(victor).patch(f"{thread}/status", {"status": "completed"}),
        ],
        ("post", "/api/v1/consultations/{consultation_id}/call/start"): [api(alice).post(f"{thread}/call/start", {})],
        ("post", "/api/v1/profiles/create"): [api(alice).post("/api/v1/profiles/create", {"bio": "x"})],
        ("post", "/api/v1/auth/refresh"): [anon.post("/api/v1/auth/refresh", {"refreshToken": expired.access})],
    }
    api(victor).patch(f"{thread}/status", {"status": "rejected"})
    refusals[("post", "/api/v1/consultations/{consultation_id}/message")] = [
        api(alice).post(f"{thread}/message", {"message": "Hello?"})
    ]
    still_clock.shift(settings.JWT_LIFETIME + timedelta(seconds=1))
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {expired.access}")
    refusals[("get", "/api/v1/wallet/balance")] = [anon.get("/api/v1/wallet/balance")]

    answered = [(response.status_code, response.json()) for responses in refusals.values() for response in responses]
    assert [status for status, _ in answered] == [402, 409, 409, 400, 400, 409, 409, 409, 409, 409, 401, 409, 401], (
        answered
    )
    untold = {
        (method, path, response.json()["code"]): missing
        for (method, path), responses in refusals.items()
        for response in responses
        if (missing := _told(schema, method, path, response))
    }
    assert untold == {}
    refresh = schema["paths"]["/api/v1/auth/refresh"]["post"]["responses"]["401"]["description"]
    assert "access token" not in refresh.split("Its `code`")[0]
