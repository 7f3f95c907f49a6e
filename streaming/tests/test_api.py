"""The sessions API: roles, ownership (an outsider always gets 404), validation, idempotency."""

from __future__ import annotations

import pytest

from conftest import grant
from streaming.models import SessionStatus, StreamingSession
from streaming.tests.conftest import USDC, fresh, start
from wallets.tests.conftest import balance_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(alice, fund, make_service):
    fund(alice, 10 * USDC)
    return start(alice, make_service("per_minute", rate=USDC))


def test_start_as_user(api, alice, fund, make_service):
    fund(alice, 10 * USDC)
    service = make_service("per_minute", rate=USDC)

    response = api(alice).post(
        "/api/v1/streams/start", {"serviceId": service.pk, "device": {"name": "Pixel 9"}, "maxCost": "5"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["userRole"] == "user"
    assert body["session"]["status"] == "active"
    assert body["session"]["rate"] == "1.000000"
    assert body["session"]["maxCost"] == "5.000000"
    assert body["session"]["held"] == "1.000000"
    assert body["session"]["device"] == {"name": "Pixel 9"}
    assert balance_of(alice) == 10 * USDC  # held, not charged


@pytest.mark.parametrize("who", ["victor", "wanda", "olga"])
def test_vendors_and_admins_cannot_start(api, request, fund, make_service, who):
    caller = request.getfixturevalue(who)
    fund(caller, 10 * USDC)

    response = api(caller).post("/api/v1/streams/start", {"serviceId": make_service().pk}, format="json")

    assert response.status_code == 403
    assert not StreamingSession.objects.exists()


def test_start_needs_a_token(anon, make_service):
    assert anon.post("/api/v1/streams/start", {"serviceId": make_service().pk}, format="json").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "serviceId"),
        ({"serviceId": 999_999}, "serviceId"),
        ({"serviceId": "abc"}, "serviceId"),
        ({"serviceId": 10**20}, "serviceId"),
        ({"serviceId": "SERVICE", "maxCost": "-1"}, "maxCost"),
        ({"serviceId": "SERVICE", "maxCost": "NaN"}, "maxCost"),
        ({"serviceId": "SERVICE", "maxCost": "0.0000001"}, "maxCost"),
        ({"serviceId": "SERVICE", "device": [1, 2]}, "device"),
    ],
)
def test_start_bad_input_is_400_and_moves_nothing(api, alice, fund, make_service, body, field):
    fund(alice, 10 * USDC)
    service = make_service()
    body = {k: (service.pk if v == "SERVICE" else v) for k, v in body.items()}

    response = api(alice).post("/api/v1/streams/start", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not StreamingSession.objects.exists()
    assert balance_of(alice) == 10 * USDC


def test_a_devices_keys_go_in_and_come_out_as_the_client_wrote_them(api, alice, victor, fund, make_service):
    """The device is the client's own JSON: renamed to snake_case on the way in, "OS" came back
    "os", and of "userAgent" and "user_agent" one was lost."""
    fund(alice, 20 * USDC)
    device = {"OS": "iOS", "screen_width": 1170, "userAgent": "A", "user_agent": "B"}

    started = api(alice).post(
        "/api/v1/streams/start", {"serviceId": make_service().pk, "device": device}, format="json"
    )
    session_id = started.json()["session"]["sessionId"]

    assert started.status_code == 201
    assert started.json()["session"]["device"] == device
    assert api(victor).get(f"/api/v1/streams/{session_id}").json()["session"]["device"] == device


@pytest.mark.parametrize(
    "device",
    ["Pixel\u00009", {"name": "Pixel\u00009"}, {"na\u0000me": "Pixel"}, {"screens": [{"size": ["6", "\u0000"]}]}],
)
def test_start_with_a_device_holding_nul_is_400_and_moves_nothing(api, alice, fund, make_service, device):
    fund(alice, 10 * USDC)

    response = api(alice).post(
        "/api/v1/streams/start", {"serviceId": make_service().pk, "device": device}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {"device": ["Must not contain the NUL character."]}
    assert not StreamingSession.objects.exists()
    assert balance_of(alice) == 10 * USDC


@pytest.mark.parametrize("device", ['"Pixel\\ud800"', '{"name": {"\\udfff": 1}}'])
def test_start_with_a_device_holding_a_lone_surrogate_is_400(api, alice, fund, make_service, device):
    fund(alice, 10 * USDC)
    raw = f'{{"serviceId": {make_service().pk}, "device": {device}}}'

    response = api(alice).post("/api/v1/streams/start", data=raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "lone_surrogate"  # the body's (paygo/tests/test_lone_surrogates.py)
    assert not StreamingSession.objects.exists()
    assert balance_of(alice) == 10 * USDC


def test_start_on_a_service_off_sale_is_400_as_on_none(api, alice, fund, make_service):
    """Inactive or retired, a service is unknown to a user, as its page is (404): "not available"
    told him that it existed."""
    from marketplace.services import service_delete, service_set_active

    fund(alice, 10 * USDC)
    inactive = service_set_active(service=make_service(), is_active=False)
    retired = service_delete(service=make_service())

    answers = [
        api(alice).post("/api/v1/streams/start", {"serviceId": service_id}, format="json")
        for service_id in (inactive.pk, retired.pk, 10**12)
    ]

    assert [answer.status_code for answer in answers] == [400, 400, 400]
    assert len({str(answer.json()) for answer in answers}) == 1
    assert answers[0].json()["errors"]["serviceId"] == ["No such service."]


@pytest.mark.parametrize("max_cost", [None, "5"])
def test_start_on_a_service_whose_token_staff_deactivated_is_400(api, alice, fund, make_service, max_cost):
    from wallets.models import Asset

    fund(alice, 10 * USDC, "USDT")
    service = make_service(token="USDT")
    Asset.objects.filter(code="USDT").update(is_active=False)  # was a 500: the asset looked up was gone
    body = {"serviceId": service.pk, **({"maxCost": max_cost} if max_cost else {})}

    response = api(alice).post("/api/v1/streams/start", body, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["serviceId"] == ["This service is not available."]
    assert not StreamingSession.objects.exists()


def test_a_start_refused_for_want_of_funds_opens_no_account(api, alice, make_service):
    from wallets.models import Account

    service = make_service()
    before = Account.objects.count()

    response = api(alice).post("/api/v1/streams/start", {"serviceId": service.pk}, format="json")

    assert response.status_code == 402
    assert Account.objects.count() == before


def test_start_with_idempotency_key_opens_one_session(api, alice, fund, make_service):
    fund(alice, 10 * USDC)
    client = api(alice)
    body = {"serviceId": make_service().pk}

    first = client.post("/api/v1/streams/start", body, format="json", HTTP_IDEMPOTENCY_KEY="s-1")
    second = client.post("/api/v1/streams/start", body, format="json", HTTP_IDEMPOTENCY_KEY="s-1")

    assert first.json()["session"]["sessionId"] == second.json()["session"]["sessionId"]
    assert StreamingSession.objects.count() == 1


def test_a_money_path_spelled_longer_than_the_key_record_keeps_stops_once_not_a_500(api, alice, fund, make_service):
    """The routes take an id in spellings of any length (uuid.UUID drops every "urn:"); recorded
    with an Idempotency-Key, a path over the record's 300 characters failed its insert (a 500)."""
    fund(alice, 10 * USDC)
    session = start(alice, make_service())
    spelled = "urn:" * 80 + str(session.session_id)

    first = api(alice).patch(f"/api/v1/streams/{spelled}/stop", {}, format="json", HTTP_IDEMPOTENCY_KEY="stop-1")
    again = api(alice).patch(f"/api/v1/streams/{spelled}/stop", {}, format="json", HTTP_IDEMPOTENCY_KEY="stop-1")

    assert (first.status_code, again.status_code) == (200, 200)
    assert again["Idempotent-Replayed"] == "true"
    assert fresh(session).status == "completed"  # the user ended it


@pytest.mark.parametrize(
    ("who", "status"), [("alice", 200), ("victor", 200), ("olga", 200), ("bob", 404), ("wanda", 404), ("stan", 404)]
)
def test_detail_matrix(api, request, session, who, status):
    response = api(request.getfixturevalue(who)).get(f"/api/v1/streams/{session.session_id}")

    assert response.status_code == status
    if status == 200:
        assert response.json()["session"]["sessionId"] == str(session.session_id)


def test_unknown_or_malformed_session_is_404(api, alice):
    assert api(alice).get("/api/v1/streams/not-a-uuid").status_code == 404
    assert api(alice).get("/api/v1/streams/00000000-0000-0000-0000-000000000000").status_code == 404


@pytest.mark.parametrize(
    ("who", "status", "reason"),
    [
        ("alice", 200, "user"),
        ("victor", 200, "vendor"),
        ("olga", 200, "staff"),
        ("bob", 404, None),
        ("wanda", 404, None),
        ("stan", 404, None),
    ],
)
def test_stop_matrix(api, request, session, who, status, reason):
    response = api(request.getfixturevalue(who)).patch(f"/api/v1/streams/{session.session_id}/stop")

    assert response.status_code == status
    session.refresh_from_db()
    if reason:
        assert session.stop_reason == reason
        assert session.status == (SessionStatus.COMPLETED if reason == "user" else SessionStatus.STOPPED)
    else:
        assert session.status == SessionStatus.ACTIVE


@pytest.mark.parametrize("key", [None, "stop-1"])
@pytest.mark.parametrize("body", ["null", "[1]", "{broken"])
def test_a_stop_with_a_body_that_is_no_object_is_400_with_a_key_or_without(api, alice, session, key, body):
    """A stop takes no body: it read one only for its Idempotency-Key's fingerprint, so the same
    request was a 400 with a key and stopped the session without one (review r21)."""
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = api(alice).patch(
        f"/api/v1/streams/{session.session_id}/stop", body, content_type="application/json", **headers
    )

    assert response.status_code == 400, response.content
    session.refresh_from_db()
    assert session.status == SessionStatus.ACTIVE


@pytest.mark.parametrize(
    ("unit", "rate", "per_minute"),
    [
        ("per_hour", 3_599_999, "0.060000"),  # 59,999.98 minor a minute: was shown 0.059999
        ("per_hour", 3_599_970, "0.060000"),  # 59,999.5: a half goes up
        ("per_hour", 3_599_969, "0.059999"),  # 59,999.48
        ("per_hour", 30, "0.000001"),  # half a minor unit
        ("per_hour", 29, "0.000000"),
        ("per_second", 7_777, "0.466620"),  # exact
        ("per_minute", 1_234_567, "1.234567"),
        ("per_request", 1_000, None),  # not time-metered
    ],
)
def test_the_stops_rate_per_minute_is_rounded_half_up_at_the_tokens_decimals(
    api, alice, fund, make_service, unit, rate, per_minute
):
    fund(alice, 10 * USDC)
    session = start(alice, make_service(unit, rate=rate))

    stopped = api(alice).patch(f"/api/v1/streams/{session.session_id}/stop")

    assert stopped.status_code == 200
    assert stopped.json()["ratePerMinute"] == per_minute


@pytest.mark.parametrize(
    ("who", "status"), [("alice", 200), ("victor", 404), ("olga", 404), ("bob", 404), ("stan", 404)]
)
def test_metrics_matrix(api, request, session, who, status):
    response = api(request.getfixturevalue(who)).patch(
        f"/api/v1/streams/{session.session_id}/metrics",
        {"bitrate": 4500, "latency": 38.5, "frameDrops": 0},
        format="json",
    )

    assert response.status_code == status
    session.refresh_from_db()
    assert len(session.quality_metrics) == (1 if status == 200 else 0)


@pytest.mark.parametrize(
    "body", [{"bitrate": -1}, {"latency": "NaN"}, {"frameDrops": "Infinity"}, {}, {"bitrate": "fast"}]
)
def test_bad_metrics_are_400(api, alice, session, body):
    response = api(alice).patch(f"/api/v1/streams/{session.session_id}/metrics", body, format="json")

    assert response.status_code == 400
    session.refresh_from_db()
    assert session.quality_metrics == []


def test_metrics_keep_the_newest_samples(api, alice, session, settings):
    settings.SESSION_METRICS_KEPT = 3
    client = api(alice)
    for n in range(5):
        client.patch(f"/api/v1/streams/{session.session_id}/metrics", {"bitrate": n}, format="json")

    session.refresh_from_db()
    assert [sample["bitrate"] for sample in session.quality_metrics] == [2, 3, 4]


def test_metrics_are_published_on_the_sessions_socket_once_committed(
    alice, session, monkeypatch, django_capture_on_commit_callbacks
):
    """metrics.updated goes out when the sample is committed, never for one rolled back."""
    from streaming import live, services

    sent = []
    monkeypatch.setattr(live, "send", lambda session_id, message: sent.append((session_id, message)))
    with django_capture_on_commit_callbacks() as callbacks:
        recorded = services.session_metrics_record(session=session, sample={"bitrate": 7.5})
        assert sent == []

    for callback in callbacks:
        callback()
    sample = recorded.quality_metrics[-1]
    assert sent == [
        (
            session.session_id,
            {"type": "metrics.updated", "sessionId": str(session.session_id), "metrics": sample, "at": sample["at"]},
        )
    ]


@pytest.mark.parametrize(
    ("who", "status"),
    [("victor", 201), ("alice", 403), ("olga", 404), ("bob", 404), ("wanda", 404), ("stan", 404)],
)
def test_usage_matrix(api, request, alice, fund, make_service, who, status):
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_request", rate=1_000))

    response = api(request.getfixturevalue(who)).post(
        f"/api/v1/streams/{session.session_id}/usage", {"eventId": "req-1", "quantity": 3}, format="json"
    )

    assert response.status_code == status
    session.refresh_from_db()
    assert session.usage_quantity == (3 if status == 201 else 0)


def test_usage_on_a_time_metered_session_is_400(api, victor, session):
    response = api(victor).post(
        f"/api/v1/streams/{session.session_id}/usage", {"eventId": "e", "quantity": 1}, format="json"
    )

    assert response.status_code == 400


def test_my_sessions_and_active(api, alice, bob, victor, olga, stan, fund, make_service):
    fund(alice, 10 * USDC)
    fund(bob, 10 * USDC)
    service = make_service()
    mine = start(alice, service)
    start(bob, service)
    finished = start(alice, service)
    api(alice).patch(f"/api/v1/streams/{finished.session_id}/stop")

    my = api(alice).get("/api/v1/streams/my-sessions").json()
    active_only = api(alice).get("/api/v1/streams/my-sessions?status=active").json()

    assert my["count"] == 2
    assert set(my) == {"sessions", "count", "page", "totalPages", "next", "previous"}  # as every list
    assert [s["sessionId"] for s in active_only["sessions"]] == [str(mine.session_id)]
    assert api(alice).get("/api/v1/streams/active").json()["count"] == 1
    assert api(victor).get("/api/v1/streams/active").json()["count"] == 2
    assert api(olga).get("/api/v1/streams/active").json()["count"] == 2
    assert api(stan).get("/api/v1/streams/active").json()["count"] == 0  # staff without permissions: his own
    assert api(grant(stan, "streaming.view_streamingsession")).get("/api/v1/streams/active").json()["count"] == 2
    assert api(bob).get("/api/v1/streams/my-sessions?status=bogus").status_code == 400


def test_session_lists_have_a_constant_query_count(api, alice, fund, make_service, django_assert_num_queries):
    fund(alice, 100 * USDC)
    service = make_service()
    client = api(alice)
    start(alice, service)
    with django_assert_num_queries(4):  # the user, the count, the page, its payers' wallets
        client.get("/api/v1/streams/my-sessions")
    for _ in range(15):
        start(alice, service)
    with django_assert_num_queries(4):
        assert client.get("/api/v1/streams/my-sessions").json()["count"] == 16


@pytest.mark.parametrize(("who", "sees_funds"), [("alice", True), ("olga", True), ("victor", False)])
def test_only_the_payer_and_staff_see_what_gives_the_balance_away(
    api, request, alice, fund, make_service, who, sees_funds
):
    """`stopAt` (when the payer's wallet runs out) and `held` (all it has left, when it cannot
    cover a period) give the payer's balance away: not to the vendor."""
    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_minute", rate=USDC))
    StreamingSession.objects.filter(pk=session.pk).update(stop_at=session.start_time)
    client = api(request.getfixturevalue(who))

    detail = client.get(f"/api/v1/streams/{session.session_id}").json()["session"]
    [listed] = client.get("/api/v1/streams/active").json()["sessions"]
    stopped = client.patch(f"/api/v1/streams/{session.session_id}/stop").json()["session"]

    for shown in (detail, listed, stopped):
        assert ("stopAt" in shown, "held" in shown) == (sees_funds, sees_funds)
    assert detail["totalCost"] and listed["rate"]  # the session's own figures, for everyone


# --- staff: the permissions the admin asks --------------------------------------------------------


def test_staff_who_may_view_sessions_see_one_but_may_not_stop_it(api, stan, session):
    staff = api(grant(stan, "streaming.view_streamingsession"))

    assert staff.get(f"/api/v1/streams/{session.session_id}").status_code == 200
    response = staff.patch(f"/api/v1/streams/{session.session_id}/stop")

    assert response.status_code == 403
    session.refresh_from_db()
    assert session.status == SessionStatus.ACTIVE


@pytest.mark.parametrize(
    "permissions",
    [("streaming.change_streamingsession",), ("streaming.view_streamingsession", "streaming.change_streamingsession")],
)
def test_staff_who_may_change_sessions_stop_one(api, stan, session, permissions):
    """As in the admin, where the change permission shows the sessions and lets one stop them."""
    response = api(grant(stan, *permissions)).patch(f"/api/v1/streams/{session.session_id}/stop")

    assert response.status_code == 200
    session.refresh_from_db()
    assert (session.status, session.stop_reason) == (SessionStatus.STOPPED, "staff")


@pytest.mark.parametrize(
    ("permissions", "sees_funds"),
    [
        (("streaming.view_streamingsession",), False),
        (("streaming.view_streamingsession", "wallets.view_account"), True),
    ],
)
def test_staff_see_the_payers_funds_only_with_the_view_permission_on_wallets(
    api, stan, session, permissions, sees_funds
):
    shown = api(grant(stan, *permissions)).get(f"/api/v1/streams/{session.session_id}").json()["session"]

    assert ("stopAt" in shown, "held" in shown) == (sees_funds, sees_funds)


def test_every_instant_an_answer_writes_is_spelled_as_its_serializers_write_them(
    api, alice, victor, fund, make_service, clock
):
    """A usage report's createdAt, a metrics sample's at, a charge's billedFrom/billedUntil were
    datetime.isoformat() ("+00:00") beside the serializers' "Z" in the same answers (review r18)."""
    from streaming.sweep import sweep

    fund(alice, 10 * USDC)
    session = start(alice, make_service("per_request", rate=1_000))
    usage = api(victor).post(
        f"/api/v1/streams/{session.session_id}/usage", {"eventId": "e-1", "quantity": 3}, format="json"
    )
    metrics = api(alice).patch(f"/api/v1/streams/{session.session_id}/metrics", {"bitrate": 1}, format="json")
    clock.move(seconds=90)
    sweep()
    history = api(alice).get("/api/v1/wallet/transactions").json()
    charges = [row["metadata"] for row in history["transactions"] if "billedFrom" in row["metadata"]]

    instants = [
        usage.json()["event"]["createdAt"],
        metrics.json()["qualityMetrics"]["at"],
        *(charge[name] for charge in charges for name in ("billedFrom", "billedUntil")),
    ]
    assert len(instants) == 4, (usage.json(), metrics.json(), history)
    assert all(value.endswith("Z") and "+00:00" not in value for value in instants), instants
