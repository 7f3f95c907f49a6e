"""ChipiHttpClient end to end: the real client, served by the sandbox through one fake HTTP boundary."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import pytest
import requests
import time_machine
from django.test import override_settings
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from wallets.chipi import (
    ChipiGateway,
    ChipiHttpClient,
    ChipiRateLimited,
    ChipiRejected,
    ChipiTimeout,
    ChipiUnavailable,
)
from wallets.chipi.models import SandboxTransaction

from .conftest import API_KEY, SECRET_KEY, fund

pytestmark = pytest.mark.django_db

ELSEWHERE = "0x" + "ab" * 32
UNKNOWN_HASH = "0x" + "0" * 64


def send(gateway, reference="wd-1", amount=4_000_000, token="USDC", to_address=ELSEWHERE):
    return gateway.send_transfer(reference=reference, token=token, amount=amount, to_address=to_address)


def outbound_count() -> int:
    return SandboxTransaction.objects.filter(direction="outbound").count()


def refused_connection() -> requests.ConnectionError:
    """What requests raises when nothing listens: the request never left."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(MaxRetryError(None, "/v1/transfers", reason=reason))


def dropped_connection() -> requests.ConnectionError:
    """What requests raises when the connection dies mid-request: it may have been received."""
    return requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))


# --- The same behaviour as the sandbox (each test runs against both) ------------------------------


def test_both_are_gateways(gateway):
    assert isinstance(gateway, ChipiGateway)


def test_wallets_are_unique_per_user_and_stable(gateway):
    alice = gateway.create_wallet(external_user_id="alice")
    bob = gateway.create_wallet(external_user_id="bob")

    assert alice != bob
    assert gateway.create_wallet(external_user_id="alice") == alice


def test_a_payment_is_seen_with_its_hash(gateway, sandbox):
    address = gateway.create_wallet(external_user_id="alice")
    paid = sandbox.receive_payment(to_address=address, token="ETH", amount=5 * 10**18)

    assert gateway.get_transaction(paid.tx_hash) == paid
    assert gateway.get_transaction(UNKNOWN_HASH) is None
    assert gateway.custody_balance("ETH") == 5 * 10**18


def test_a_transfer_is_sent_found_and_taken_from_custody(gateway, sandbox):
    fund(sandbox, "USDC", 10_000_000)

    sent = send(gateway)

    assert (sent.status, sent.amount, sent.to_address, sent.reference) == ("confirmed", 4_000_000, ELSEWHERE, "wd-1")
    assert gateway.find_transfer("wd-1") == sent
    assert gateway.get_transaction(sent.tx_hash) == sent
    assert gateway.custody_balance("USDC") == 6_000_000
    assert gateway.find_transfer("wd-2") is None


def test_the_same_reference_twice_is_sent_twice(gateway, sandbox):
    fund(sandbox, "USDC", 10)

    first = send(gateway, amount=3)
    send(gateway, amount=3)

    assert outbound_count() == 2
    assert gateway.custody_balance("USDC") == 4
    assert gateway.find_transfer("wd-1") == first


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"to_address": "0x1234"}, "invalid_address"),
        ({"token": "BTC"}, "unknown_token"),
        ({"amount": 11_000_000}, "insufficient_custody"),
        ({"amount": 0}, "invalid_amount"),
        ({"amount": 2.5}, "invalid_amount"),
    ],
)
def test_rejections_carry_chipis_code_and_move_nothing(gateway, sandbox, changes, code):
    fund(sandbox, "USDC", 10_000_000)

    with pytest.raises(ChipiRejected) as caught:
        send(gateway, **changes)

    assert caught.value.code == code
    assert sandbox.custody_balance("USDC") == 10_000_000
    assert outbound_count() == 0


def test_rates_are_the_sandboxs(gateway):
    assert gateway.get_rate("ETH", "USDC") == Decimal("3000")
    assert gateway.get_rate("USDT", "USDC") == Decimal("0.9998")
    assert gateway.get_rate("USDC", "STRK") == Decimal("2")


# --- On the wire -----------------------------------------------------------------------------------


def test_every_request_carries_the_keys_json_and_timeouts(http_client, adapter, sandbox):
    fund(sandbox, "USDC", 10)
    http_client.create_wallet(external_user_id="alice")
    send(http_client, amount=5)
    http_client.custody_balance("USDC")

    assert len(adapter.received) == 3
    for request in adapter.received:
        assert request.headers["x-api-key"] == API_KEY
        assert request.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert adapter.received[0].headers["Content-Type"] == "application/json"
    assert adapter.timeouts == [(5.0, 10.0)] * 3


def test_amounts_travel_as_raw_integer_strings(http_client, adapter, sandbox):
    fund(sandbox, "ETH", 50 * 10**18)

    sent = send(http_client, token="ETH", amount=12 * 10**18 + 1)

    body = json.loads(adapter.received[-1].body)
    assert body == {"reference": "wd-1", "token": "ETH", "amount": "12000000000000000001", "toAddress": ELSEWHERE}
    assert sent.amount == 12 * 10**18 + 1
    answer = http_client.session.get("https://chipi.test/v1/custody/balance", params={"token": "ETH"})
    assert answer.json() == {"token": "ETH", "balance": "37999999999999999999"}


def test_wrong_keys_are_a_rejection_never_retried(adapter, sleeps):
    client = ChipiHttpClient(api_key=API_KEY, secret_key="sk_wrong", base_url=adapter.base_url)
    client.sleep = sleeps.append
    adapter.mount_on(client)
    received_before = len(adapter.received)

    with pytest.raises(ChipiRejected) as caught:
        client.custody_balance("USDC")

    assert (caught.value.code, caught.value.status) == ("unauthorized", 401)
    assert len(adapter.received) == received_before + 1
    assert sleeps == []


def test_a_400_with_chipis_error_body_is_a_rejection_with_its_code_and_message(http_client, adapter, sleeps):
    body = {"error": "Bad Request", "message": "Address is not on Starknet mainnet", "code": "INVALID_ADDRESS"}
    adapter.script("POST", "/transfers", status=400, body=body)

    with pytest.raises(ChipiRejected) as caught:
        send(http_client)

    assert caught.value.code == "INVALID_ADDRESS"
    assert caught.value.message == "Address is not on Starknet mainnet"
    assert caught.value.status == 400
    assert len(adapter.received) == 1
    assert sleeps == []


def test_an_error_without_chipis_body_still_maps(http_client, adapter):
    adapter.script("GET", "/rates", status=422, body=b"<html>nope</html>")

    with pytest.raises(ChipiRejected) as caught:
        http_client.get_rate("ETH", "USDC")

    assert caught.value.status == 422
    assert caught.value.message == "Chipi answered HTTP 422."


@pytest.mark.parametrize("path", ["/transactions/", "/transactions"])
def test_a_404_on_a_lookup_is_none(http_client, adapter, path):
    adapter.script("GET", path, status=404)

    found = http_client.get_transaction(UNKNOWN_HASH) if path.endswith("/") else http_client.find_transfer("wd-1")

    assert found is None


@pytest.mark.parametrize("path", ["/transactions/", "/transactions"])
def test_a_404_that_is_not_chipis_is_never_taken_for_not_found(http_client, adapter, path):
    """A proxy's or a wrong base URL's 404 must not tell the outbox that a transfer was never sent."""
    adapter.script("GET", path, status=404, body=b"<html>Not Found</html>", times=10)

    with pytest.raises(ChipiUnavailable):
        http_client.get_transaction(UNKNOWN_HASH) if path.endswith("/") else http_client.find_transfer("wd-1")

    assert len(adapter.received) == 4


def test_a_404_elsewhere_is_a_rejection(http_client, adapter):
    adapter.script("GET", "/custody/balance", status=404)

    with pytest.raises(ChipiRejected):
        http_client.custody_balance("USDC")


def test_find_transfer_trusts_only_its_own_reference(http_client, adapter, sandbox):
    fund(sandbox, "USDC", 10)
    other = send(sandbox, reference="wd-other", amount=1)
    wire = {"txHash": other.tx_hash, "status": "confirmed", "token": "USDC", "amount": "1"}
    wire |= {"fromAddress": other.from_address, "toAddress": other.to_address, "reference": "wd-other"}
    adapter.script("GET", "/transactions", status=200, body={"transactions": [wire]})

    assert http_client.find_transfer("wd-1") is None


def test_malformed_input_is_refused_before_any_request(http_client, adapter):
    with pytest.raises(ChipiRejected):
        http_client.get_transaction("../custody/balance")
    with pytest.raises(ChipiRejected):
        http_client.find_transfer("")
    with pytest.raises(ChipiRejected):
        send(http_client, amount=Decimal("1.5"))

    assert adapter.received == []


# --- Faults from the sandbox, through the wire -----------------------------------------------------


def test_lost_response_on_send_is_a_timeout_and_find_transfer_finds_it(http_client, adapter, sandbox, sleeps):
    fund(sandbox, "USDC", 10_000_000)
    sandbox.inject("send_transfer", "lost_response")

    with pytest.raises(ChipiTimeout):
        send(http_client)

    assert len(adapter.received) == 1  # not resent: the transfer went out once
    assert sleeps == []
    found = http_client.find_transfer("wd-1")
    assert (found.amount, found.to_address) == (4_000_000, ELSEWHERE)
    assert sandbox.custody_balance("USDC") == 6_000_000


def test_a_timeout_before_acting_on_send_is_a_timeout_and_nothing_is_found(http_client, adapter, sandbox):
    fund(sandbox, "USDC", 10_000_000)
    sandbox.inject("send_transfer", "timeout")

    with pytest.raises(ChipiTimeout):
        send(http_client)

    assert len(adapter.received) == 1
    assert http_client.find_transfer("wd-1") is None
    assert outbound_count() == 0


def test_a_sandbox_error_on_send_is_unknown_to_the_client_and_not_retried(http_client, adapter, sandbox):
    """Over HTTP a 5xx cannot prove nothing happened, so the client reports the outcome as unknown."""
    fund(sandbox, "USDC", 10_000_000)
    sandbox.inject("send_transfer", "error")

    with pytest.raises(ChipiTimeout) as caught:
        send(http_client)

    assert caught.value.status == 503
    assert len(adapter.received) == 1
    assert outbound_count() == 0


def test_a_rate_limited_send_is_retried_and_sent_once(http_client, adapter, sandbox, sleeps):
    fund(sandbox, "USDC", 10_000_000)
    sandbox.inject("send_transfer", "rate_limited")

    sent = send(http_client)

    assert sleeps == [1.0]  # the sandbox's Retry-After
    assert len(adapter.received) == 2
    assert outbound_count() == 1
    assert http_client.find_transfer("wd-1") == sent


def test_a_rejected_read_is_not_retried(http_client, adapter, sandbox, sleeps):
    sandbox.inject("custody_balance", "reject")

    with pytest.raises(ChipiRejected) as caught:
        http_client.custody_balance("USDC")

    assert caught.value.code == "rejected"
    assert sleeps == []


@pytest.mark.parametrize("fault", ["error", "timeout", "rate_limited"])
def test_reads_are_retried_through_passing_faults(http_client, adapter, sandbox, sleeps, fault):
    sandbox.inject("get_rate", fault, times=2)

    assert http_client.get_rate("ETH", "USDC") == Decimal("3000")
    assert len(adapter.received) == 3
    assert len(sleeps) == 2


def test_create_wallet_is_retried_after_a_lost_response_without_a_second_wallet(http_client, adapter, sandbox):
    sandbox.inject("create_wallet", "lost_response")

    address = http_client.create_wallet(external_user_id="alice")

    assert len(adapter.received) == 2
    assert sandbox.create_wallet(external_user_id="alice") == address


def test_reads_give_up_after_max_retries_with_the_last_failure(http_client, adapter, sandbox, sleeps):
    sandbox.inject("get_transaction", "error", times=10)

    with pytest.raises(ChipiUnavailable) as caught:
        http_client.get_transaction(UNKNOWN_HASH)

    assert caught.value.status == 503
    assert len(adapter.received) == 4  # the first try and CHIPI_MAX_RETRIES=3 retries
    assert len(sleeps) == 3


def test_reads_that_keep_timing_out_end_in_a_timeout(http_client, adapter, sandbox):
    sandbox.inject("custody_balance", "timeout", times=10)

    with pytest.raises(ChipiTimeout):
        http_client.custody_balance("USDC")

    assert len(adapter.received) == 4


# --- HTTP-level faults -----------------------------------------------------------------------------


def test_a_429_with_retry_after_then_success_is_retried(http_client, adapter, sandbox, sleeps):
    fund(sandbox, "USDC", 10_000_000)
    adapter.script("POST", "/transfers", status=429, headers={"Retry-After": "2"})

    send(http_client)

    assert sleeps == [2.0]
    assert len(adapter.received) == 2
    assert outbound_count() == 1


def test_a_429_with_an_http_date_retry_after_is_honoured(http_client, adapter, sleeps):
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False):
        later = format_datetime(datetime(2030, 1, 1, 0, 0, 3, tzinfo=UTC), usegmt=True)
        adapter.script("GET", "/rates", status=429, headers={"Retry-After": later})

        http_client.get_rate("ETH", "USDC")

    assert sleeps == [3.0]


def test_a_429_without_retry_after_backs_off(http_client, adapter, sleeps):
    adapter.script("GET", "/rates", status=429)

    http_client.get_rate("ETH", "USDC")

    assert len(sleeps) == 1
    assert 0.25 <= sleeps[0] <= 0.5


def test_a_long_retry_after_is_handed_to_the_caller_instead_of_slept(http_client, adapter, sleeps):
    adapter.script("POST", "/transfers", status=429, headers={"Retry-After": "60"})

    with pytest.raises(ChipiRateLimited) as caught:
        send(http_client)

    assert caught.value.retry_after == 60.0
    assert len(adapter.received) == 1
    assert sleeps == []


def test_429s_that_do_not_stop_end_in_rate_limited(http_client, adapter, sleeps):
    adapter.script("GET", "/custody/balance", status=429, headers={"Retry-After": "1"}, times=10)

    with pytest.raises(ChipiRateLimited) as caught:
        http_client.custody_balance("USDC")

    assert caught.value.retry_after == 1.0
    assert len(adapter.received) == 4
    assert sleeps == [1.0, 1.0, 1.0]


def test_500_twice_then_success_on_a_get_is_retried_with_growing_backoff(http_client, adapter, sandbox, sleeps):
    address = sandbox.create_wallet(external_user_id="alice")
    paid = sandbox.receive_payment(to_address=address, token="USDC", amount=7)
    adapter.script("GET", "/transactions/", status=500, times=2)

    assert http_client.get_transaction(paid.tx_hash) == paid

    assert len(adapter.received) == 3
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


def test_backoff_is_capped(http_client):
    assert all(http_client._backoff(attempt) <= http_client.max_backoff for attempt in range(20))


def test_a_500_on_post_transfers_is_a_timeout_and_not_retried(http_client, adapter, sandbox, sleeps):
    fund(sandbox, "USDC", 10_000_000)
    adapter.script("POST", "/transfers", status=500)

    with pytest.raises(ChipiTimeout) as caught:
        send(http_client)

    assert caught.value.status == 500
    assert len(adapter.received) == 1
    assert sleeps == []
    assert outbound_count() == 0


def test_a_502_after_chipi_sent_the_transfer_is_a_timeout_and_find_transfer_finds_it(http_client, adapter, sandbox):
    fund(sandbox, "USDC", 10_000_000)
    adapter.script("POST", "/transfers", status=502, after_acting=True)

    with pytest.raises(ChipiTimeout):
        send(http_client)

    assert len(adapter.received) == 1
    assert http_client.find_transfer("wd-1").amount == 4_000_000


def test_a_read_timeout_on_send_is_a_timeout_and_not_retried(http_client, adapter, sandbox, sleeps):
    fund(sandbox, "USDC", 10_000_000)
    adapter.script("POST", "/transfers", exc=requests.ReadTimeout("read timed out"), after_acting=True)

    with pytest.raises(ChipiTimeout):
        send(http_client)

    assert len(adapter.received) == 1
    assert sleeps == []
    assert outbound_count() == 1


def test_a_dropped_connection_on_send_is_a_timeout_and_not_retried(http_client, adapter, sandbox, sleeps):
    fund(sandbox, "USDC", 10_000_000)
    adapter.script("POST", "/transfers", exc=dropped_connection())

    with pytest.raises(ChipiTimeout):
        send(http_client)

    assert len(adapter.received) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "never_sent",
    [requests.ConnectTimeout("connect timed out"), refused_connection()],
    ids=["connect-timeout", "connection-refused"],
)
def test_a_send_that_never_left_is_retried_and_sent_once(http_client, adapter, sandbox, sleeps, never_sent):
    fund(sandbox, "USDC", 10_000_000)
    adapter.script("POST", "/transfers", exc=never_sent)

    send(http_client)

    assert len(adapter.received) == 2
    assert len(sleeps) == 1
    assert outbound_count() == 1


def test_a_send_that_never_leaves_ends_unavailable(http_client, adapter, sandbox):
    adapter.script("POST", "/transfers", exc=refused_connection(), times=10)

    with pytest.raises(ChipiUnavailable):
        send(http_client)

    assert len(adapter.received) == 4
    assert outbound_count() == 0


def test_reads_are_retried_through_dropped_connections(http_client, adapter):
    adapter.script("GET", "/rates", exc=dropped_connection(), times=2)

    assert http_client.get_rate("STRK", "USDC") == Decimal("0.5")
    assert len(adapter.received) == 3


def test_an_unreadable_answer_to_a_transfer_is_a_timeout(http_client, adapter, sandbox):
    fund(sandbox, "USDC", 10_000_000)
    adapter.script("POST", "/transfers", status=201, body=b"{not json", after_acting=True)

    with pytest.raises(ChipiTimeout):
        send(http_client)

    assert http_client.find_transfer("wd-1") is not None


@pytest.mark.parametrize(
    "body", [b"{not json", {"balance": 12.5}, {"balance": "-1"}, {"nothing": "here"}, ["a", "list"]]
)
def test_an_unreadable_answer_to_a_read_is_unavailable(http_client, adapter, body):
    adapter.script("GET", "/custody/balance", status=200, body=body)

    with pytest.raises(ChipiUnavailable):
        http_client.custody_balance("USDC")


@pytest.mark.parametrize("rate", ["NaN", "-1", "0", "Infinity", "abc"])
def test_a_nonsense_rate_is_unavailable(http_client, adapter, rate):
    adapter.script("GET", "/rates", status=200, body={"from": "ETH", "to": "USDC", "rate": rate})

    with pytest.raises(ChipiUnavailable):
        http_client.get_rate("ETH", "USDC")


def test_a_redirect_is_not_followed(http_client, adapter):
    adapter.script("GET", "/rates", status=302, headers={"Location": "https://elsewhere.test/"})

    with pytest.raises(ChipiUnavailable):
        http_client.get_rate("ETH", "USDC")

    assert len(adapter.received) == 1


# --- Our own rate limit ----------------------------------------------------------------------------


@override_settings(CHIPI_RATE_LIMIT_PER_MINUTE=2)
def test_past_the_budget_the_client_raises_rate_limited_without_a_request(http_client, adapter):
    with time_machine.travel(datetime(2030, 1, 1, 12, 0, tzinfo=UTC), tick=False):
        http_client.get_rate("ETH", "USDC")
        http_client.get_rate("ETH", "USDC")

        with pytest.raises(ChipiRateLimited) as caught:
            send(http_client)

    assert caught.value.code == "client_rate_limited"
    assert caught.value.retry_after > http_client.max_rate_limit_wait
    assert len(adapter.received) == 2


@override_settings(CHIPI_RATE_LIMIT_PER_MINUTE=4)
def test_a_short_wait_for_the_budget_is_slept(http_client, adapter):
    with time_machine.travel(datetime(2030, 1, 1, 12, 0, tzinfo=UTC), tick=False) as clock:
        slept = []
        http_client.sleep = lambda seconds: (slept.append(seconds), clock.shift(timedelta(seconds=seconds)))
        for _ in range(4):
            http_client.get_rate("ETH", "USDC")
        clock.shift(timedelta(seconds=60 + 57))  # 4 * 3/60 = 0.2 of the previous minute still counts
        for _ in range(3):
            http_client.get_rate("ETH", "USDC")

        http_client.get_rate("ETH", "USDC")

    assert slept == [pytest.approx(3.0)]  # until the previous minute has slid out
    assert len(adapter.received) == 8
