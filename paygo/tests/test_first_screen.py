"""What a newcomer meets first: the landing page, the API's index, offline docs, the favicon, and
a refusal (not a 500) for a WebSocket path that does not exist."""

from __future__ import annotations

import re

import pytest
from channels.testing import WebsocketCommunicator

from paygo.asgi import application

pytestmark = pytest.mark.django_db


def test_landing_page_links_to_docs_admin_health_and_live_cost(anon):
    response = anon.get("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    for href in ('href="/api/v1/docs/"', 'href="/admin/"', 'href="/api/v1/health"', 'href="/live/"'):
        assert href in page, href
    assert "paygo-demo-2026" not in page  # no demo data, no demo logins


def test_landing_page_shows_demo_logins_when_demo_data_is_there(anon):
    from accounts.models import Role
    from accounts.services import user_create
    from dashboards import demo

    user_create(email=demo.STAFF_EMAIL, password=demo.PASSWORD, name="Demo Staff", role=Role.ADMIN)
    user_create(email=f"user1@{demo.DOMAIN}", password=demo.PASSWORD, name="Demo User 1", role=Role.USER)

    page = anon.get("/").content.decode()

    assert demo.STAFF_EMAIL in page
    assert f"user1@{demo.DOMAIN}" in page
    assert demo.PASSWORD in page


def test_api_root_is_a_json_index_of_its_sections(anon):
    response = anon.get("/api/v1/")

    assert response.status_code == 200
    body = response.json()
    assert body["docs"] == "/api/v1/docs/"
    assert body["schema"] == "/api/v1/schema/"
    sections = body["sections"]
    for name in ("auth", "wallet", "streams", "services", "consultations", "notifications", "dashboard", "health"):
        assert name in sections, name
    # Every section's address answers something other than "no such endpoint".
    for name, section in sections.items():
        assert section["path"].startswith("/api/v1/"), name
    assert {socket["path"] for socket in body["websockets"]} == {"/ws/streams/<sessionId>/", "/ws/notifications/"}


def test_docs_are_served_from_the_app_not_a_cdn(anon):
    page = anon.get("/api/v1/docs/").content.decode()

    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    assert all(asset.startswith("/") and not asset.startswith("//") for asset in assets), assets
    for asset in assets:
        assert anon.get(asset).status_code == 200, asset


def test_docs_describe_the_websockets(anon):
    schema = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    description = schema["info"]["description"]
    for message in (
        "cost.tick",
        "cost.charged",
        "balance.low",
        "session.stopped",
        "metrics.updated",
        "pong",
        "notification",
    ):
        assert f"`{message}`" in description, message
    for code in ("4401", "4403", "4404"):
        assert code in description, code


def test_favicon_is_served(anon):
    response = anon.get("/favicon.ico")

    assert response.status_code == 200
    assert response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO header


async def test_unknown_websocket_path_is_refused_with_a_close_code():
    communicator = WebsocketCommunicator(application, "/ws/nope/")

    connected, _ = await communicator.connect()

    assert connected  # accepted only so that the client sees why it is closed
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4404}
    await communicator.disconnect()


# The endpoints that documented made-up responses: 200, 201 and 202, each a free-form object.
DOCUMENTED = {
    ("post", "/api/v1/streams/start"): {"201"},
    ("patch", "/api/v1/streams/{session_id}/metrics"): {"200"},
    ("patch", "/api/v1/streams/{session_id}/stop"): {"200"},
    ("get", "/api/v1/streams/{session_id}"): {"200"},
    ("post", "/api/v1/streams/{session_id}/usage"): {"200", "201"},
    ("post", "/api/v1/wallet/deposit"): {"200", "201"},
    ("post", "/api/v1/wallet/withdraw"): {"202"},
    ("get", "/api/v1/wallet/balance"): {"200"},
    ("post", "/api/v1/wallet/transfer"): {"201"},
    ("get", "/api/v1/wallet/address"): {"200"},
    ("get", "/api/v1/wallet/supported-tokens"): {"200"},
    ("post", "/api/v1/wallet/swap"): {"201"},
    ("post", "/api/v1/wallet/webhooks/chipi"): {"200"},
}


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_those_endpoints_document_the_responses_they_give(anon):
    schema = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    for (method, path), codes in DOCUMENTED.items():
        responses = schema["paths"][path][method]["responses"]
        success = {code for code in responses if code.startswith("2")}
        assert success == codes, (method, path, success)
        for code in codes:
            body = _resolve(schema, responses[code]["content"]["application/json"]["schema"])
            assert body.get("properties"), (method, path, code, body)  # a real shape, not additionalProp1


def test_the_schema_of_a_session_start_is_what_it_answers(api, alice, victor, fund):
    from marketplace.models import Category
    from marketplace.services import service_create

    fund(alice, 5_000_000)
    service = service_create(
        vendor=victor,
        name="Minutes",
        category=Category.objects.filter(parent__isnull=True).first(),
        rate=1000,
        unit="per_minute",
    )
    schema = api(alice).get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    body = api(alice).post("/api/v1/streams/start", {"serviceId": service.pk}, format="json").json()

    documented = _resolve(
        schema,
        schema["paths"]["/api/v1/streams/start"]["post"]["responses"]["201"]["content"]["application/json"]["schema"],
    )
    assert set(body) == set(documented["properties"])
    session = _resolve(schema, documented["properties"]["session"])
    assert set(body["session"]) <= set(session["properties"])
