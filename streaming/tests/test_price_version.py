"""A session starts on the price its user was shown, or not at all: a start that names the service's
priceVersion it saw is refused (409 price_changed, nothing held, charged or created) when the
vendor changed the price since; decided under the service row's lock that fixes the terms the
session copies, so a change racing a start comes either before it (409) or after it (the session
keeps the terms accepted)."""

from __future__ import annotations

import pytest

from accounts.models import User
from accounts.tests.conftest import while_writing
from conftest import client_for, money_db
from marketplace.models import Service
from marketplace.services import service_delete, service_set_active, service_update
from paygo.api.errors import Conflict
from streaming.models import StreamingSession
from streaming.services import session_start
from streaming.tests.conftest import USDC, start
from wallets.models import Account, Asset, Entry, Hold, IdempotencyKey, LedgerTransaction
from wallets.tests.conftest import balance_of, fund_wallet

pytestmark = pytest.mark.django_db

START = "/api/v1/streams/start"


def money_state() -> dict:
    """Everything a start may hold, charge or create."""
    return {
        "accounts": sorted(Account.objects.values_list("pk", "balance", "held")),
        "holds": sorted(Hold.objects.values_list("pk", "amount", "status")),
        "sessions": StreamingSession.objects.count(),
        "transactions": LedgerTransaction.objects.count(),
        "entries": Entry.objects.count(),
    }


def reprice(service, **change) -> Service:
    """The vendor changes the price (PUT /api/v1/service/:id's write path)."""
    return service_update(service=Service.objects.get(pk=service.pk), **change)


def test_a_start_on_the_price_shown_opens_the_session(api, alice, fund, make_service):
    fund(alice, 10 * USDC)
    service = make_service("per_minute", rate=USDC)

    response = api(alice).post(START, {"serviceId": service.pk, "priceVersion": 1}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["session"]["rate"] == "1.000000"


def test_a_start_on_a_price_changed_since_it_was_shown_is_409_and_moves_nothing(api, alice, fund, make_service):
    fund(alice, 10 * USDC)
    service = make_service("per_minute", rate=USDC)
    reprice(service, rate=3 * USDC, minimum_charge=USDC // 2)
    before = money_state()

    response = api(alice).post(START, {"serviceId": service.pk, "priceVersion": 1}, format="json")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "price_changed"
    assert body["statusCode"] == 409
    assert "price" in body["message"] and "changed" in body["message"]
    assert {k: body[k] for k in ("serviceId", "priceVersion", "rate", "unit", "token", "minimumCharge")} == {
        "serviceId": service.pk,
        "priceVersion": 2,
        "rate": "3.000000",
        "unit": "per_minute",
        "token": "USDC",
        "minimumCharge": "0.500000",
    }
    assert (body["freeSeconds"], body["maxSessionCost"], body["maxEventQuantity"]) == (0, None, None)
    assert money_state() == before
    assert balance_of(alice) == 10 * USDC


@pytest.mark.parametrize(
    ("unit", "change"),
    [
        ("per_minute", {"unit": "per_second"}),
        ("per_minute", {"token": "USDT", "rate": USDC}),
        ("per_minute", {"free_seconds": 10}),
        ("per_request", {"max_session_cost": 50 * USDC}),
        ("per_request", {"max_event_quantity": 5}),
    ],
    ids=["unit", "token", "free_seconds", "max_session_cost", "max_event_quantity"],
)
def test_any_change_of_the_terms_refuses_a_start_on_the_old_ones(alice, make_service, unit, change):
    fund_wallet(alice, 10 * USDC)
    fund_wallet(alice, 10 * USDC, "USDT")
    service = make_service(unit, rate=USDC)
    reprice(service, **change)
    before = money_state()

    with pytest.raises(Conflict) as refused:
        start(alice, Service.objects.get(pk=service.pk), price_version=1)

    assert refused.value.detail["code"] == "price_changed"
    assert money_state() == before


def test_a_start_that_names_no_version_starts_on_the_current_price_as_before(api, alice, fund, make_service):
    """Compatibility: clients that do not send priceVersion start as they did (the README asks them to)."""
    fund(alice, 10 * USDC)
    service = make_service("per_minute", rate=USDC)
    reprice(service, rate=2 * USDC)

    response = api(alice).post(START, {"serviceId": service.pk}, format="json")
    unnamed = api(alice).post(START, {"serviceId": service.pk, "priceVersion": None}, format="json")

    assert (response.status_code, unnamed.status_code) == (201, 201)
    assert response.json()["session"]["rate"] == unnamed.json()["session"]["rate"] == "2.000000"


@pytest.mark.parametrize("version", [0, -1, "abc", 1.5, 2**31])
def test_a_malformed_version_is_400_and_moves_nothing(api, alice, fund, make_service, version):
    fund(alice, 10 * USDC)
    service = make_service()
    before = money_state()

    response = api(alice).post(START, {"serviceId": service.pk, "priceVersion": version}, format="json")

    assert response.status_code == 400
    assert "priceVersion" in response.json()["errors"]
    assert money_state() == before


def test_the_outsider_rule_holds_a_service_off_sale_is_unknown_whatever_version_is_named(
    api, alice, fund, make_service
):
    """A stale version on a service nobody may buy is answered as any start on it (400, no such
    service): the 409 shows a service's terms, which its page no longer shows to a user."""
    fund(alice, 10 * USDC)
    inactive, retired = make_service(), make_service()
    for service in (inactive, retired):
        reprice(service, rate=2 * USDC)
    service_set_active(service=Service.objects.get(pk=inactive.pk), is_active=False)
    service_delete(service=Service.objects.get(pk=retired.pk))
    before = money_state()

    answers = [
        api(alice).post(START, {"serviceId": service.pk, "priceVersion": 1}, format="json")
        for service in (inactive, retired)
    ]

    assert [answer.status_code for answer in answers] == [400, 400]
    assert [answer.json()["errors"]["serviceId"] for answer in answers] == [["No such service."]] * 2
    assert money_state() == before


# --- Idempotency-Key ---------------------------------------------------------------------------------


def test_a_refused_start_is_not_kept_as_an_answer_to_its_key(api, alice, fund, make_service):
    """A 409 rolls its key back (wallets/idempotency.py keeps successes only): the same key, sent
    again with the version now shown, starts the session."""
    fund(alice, 10 * USDC)
    service = make_service("per_minute", rate=USDC)
    reprice(service, rate=2 * USDC)
    client = api(alice)

    refused = client.post(START, {"serviceId": service.pk, "priceVersion": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    again = client.post(START, {"serviceId": service.pk, "priceVersion": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    accepted = client.post(START, {"serviceId": service.pk, "priceVersion": 2}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert (refused.status_code, again.status_code, accepted.status_code) == (409, 409, 201)
    assert "Idempotent-Replayed" not in again
    assert again.json()["code"] == "price_changed"
    assert accepted.json()["session"]["rate"] == "2.000000"
    assert StreamingSession.objects.count() == IdempotencyKey.objects.count() == 1


def test_a_started_session_is_replayed_to_its_key_after_the_price_changed(api, alice, fund, make_service):
    fund(alice, 10 * USDC)
    service = make_service("per_minute", rate=USDC)
    client = api(alice)
    body = {"serviceId": service.pk, "priceVersion": 1}

    first = client.post(START, body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    reprice(service, rate=2 * USDC)
    after = money_state()
    replayed = client.post(START, body, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert (first.status_code, replayed.status_code) == (201, 201)
    assert replayed["Idempotent-Replayed"] == "true"
    assert replayed.json() == first.json()
    assert money_state() == after
    assert StreamingSession.objects.get().rate == USDC


# --- A change racing a start (real concurrency: each on its own connection) ----------------------------


def _start_as_a_request_does(user, service, **extra):
    # The request reads the service (its view), then starts: the read sees only what has committed.
    return session_start(
        user=User.objects.get(pk=user.pk), service=Service.objects.select_related("vendor").get(pk=service.pk), **extra
    )


@money_db
def test_a_price_change_that_commits_while_a_start_waits_for_the_service_refuses_the_start(alice, victor, make_service):
    """The change holds the service's row; the start read the old price (and version) and waits for
    the row: once the change commits, the start sees the new version under the lock and is refused.
    Checked on the copy read before the lock, the start went through on a price that was gone."""
    service = make_service("per_minute", rate=USDC)
    fund_wallet(alice, 10 * USDC)
    before = money_state()

    refused = while_writing(
        lambda: reprice(service, rate=3 * USDC), lambda: _start_as_a_request_does(alice, service, price_version=1)
    )

    assert isinstance(refused, Conflict), refused
    assert refused.detail["code"] == "price_changed"
    assert refused.extra["priceVersion"] == 2  # the terms it now holds
    assert money_state() == before


@money_db
def test_a_session_started_on_a_stale_copy_without_a_version_is_billed_by_the_row_it_locked(
    alice, victor, make_service
):
    """Without a version, the start bills by the terms it reads under the lock, never by the copy read
    before: the session's terms and its hold agree with the service as it was when it started."""
    service = make_service("per_minute", rate=USDC)
    fund_wallet(alice, 10 * USDC)

    started = while_writing(lambda: reprice(service, rate=3 * USDC), lambda: _start_as_a_request_does(alice, service))

    assert isinstance(started, StreamingSession), started
    assert (started.rate, started.hold.amount) == (3 * USDC, 3 * USDC)


@money_db
def test_a_price_change_that_comes_while_a_start_holds_the_service_waits_and_leaves_the_session_alone(
    alice, victor, make_service
):
    """The start holds the service's row (shared) until it commits: the vendor's change waits for it,
    and the session keeps the terms the user accepted."""
    service = make_service("per_minute", rate=USDC)
    fund_wallet(alice, 10 * USDC)

    changed = while_writing(
        lambda: _start_as_a_request_does(alice, service, price_version=1), lambda: reprice(service, rate=3 * USDC)
    )

    assert isinstance(changed, Service), changed
    session = StreamingSession.objects.select_related("hold").get()
    assert (session.rate, session.hold.amount) == (USDC, USDC)
    assert Service.objects.values_list("rate", "price_version").get(pk=service.pk) == (3 * USDC, 2)


# --- maxCost is in the token of the terms the start locked ---------------------------------------------


def eth_priced_service(make_service) -> Service:
    """0.001 ETH a second; ETH enabled by staff (in the admin). Its vendor then moves it to USDC."""
    Asset.objects.filter(code="ETH").update(is_active=True)
    return make_service("per_second", rate=10**15, token="ETH")


def reprice_in_usdc(service) -> Service:
    return reprice(service, token="USDC", rate=1_000)  # 0.001 USDC a second


@money_db
def test_max_cost_is_read_in_the_token_of_the_terms_the_start_locked(alice, victor, make_service):
    """The view turned maxCost into minor units with the decimals of the token it read before the
    service's lock (ETH, 18), and the session opened in the token the locked terms named (USDC, 6):
    0.01 became 10^16 minor USDC, ten billion USDC, the cap gone."""
    service = eth_priced_service(make_service)
    fund_wallet(alice, 10 * USDC)
    client = client_for(alice)

    response = while_writing(
        lambda: reprice_in_usdc(service),
        lambda: client.post(START, {"serviceId": service.pk, "maxCost": "0.01"}, format="json"),
    )

    assert response.status_code == 201, response.json()
    session = StreamingSession.objects.select_related("asset", "hold").get()
    assert (session.asset.code, session.max_cost, session.hold.amount) == ("USDC", 10_000, 10_000)
    assert response.json()["session"]["maxCost"] == "0.010000"


@money_db
def test_max_cost_too_precise_for_the_token_the_start_locked_is_400_and_moves_nothing(alice, victor, make_service):
    """0.0000001 fits ETH's 18 decimals, not USDC's 6: refused as maxCost's precision always is, once
    the locked terms say USDC (it became 10^11 minor USDC: a hundred thousand USDC)."""
    service = eth_priced_service(make_service)
    fund_wallet(alice, 10 * USDC)
    client = client_for(alice)
    before = money_state()

    response = while_writing(
        lambda: reprice_in_usdc(service),
        lambda: client.post(START, {"serviceId": service.pk, "maxCost": "0.0000001"}, format="json"),
    )

    assert response.status_code == 400
    assert response.json() == {
        "message": "maxCost: Must have at most 6 decimal places.",
        "statusCode": 400,
        "code": "invalid",
        "errors": {"maxCost": ["Must have at most 6 decimal places."]},
    }
    assert money_state() == before
