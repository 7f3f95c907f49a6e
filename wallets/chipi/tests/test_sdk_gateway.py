"""The official SDK (chipi-stack) against the sandbox over HTTP: Chipi's real paths and shapes, the
keys PayGo holds, signatures the sandbox checks, and every fault as the wire shows it.

Each signed execution costs about a third of a second (the SDK's STARK signing is pure Python), so
these tests sign as few times as their point needs."""

from __future__ import annotations

import pytest
from chipi_sdk.encryption import decrypt_private_key
from starknet_py.hash.utils import private_to_stark_key

from wallets.chipi import ChipiRateLimited, ChipiRejected, ChipiTimeout, ChipiUnavailable
from wallets.chipi.gateway import MAX_TRANSACTION_PAGES
from wallets.chipi.interface import CONFIRMED, FAILED, PENDING
from wallets.chipi.models import SandboxTransaction, SandboxWallet
from wallets.chipi.sandbox import SANDBOX_API_KEY
from wallets.keys import new_encrypt_key

pytestmark = pytest.mark.django_db

ELSEWHERE = "0x00" + "ab" * 31


@pytest.fixture
def key() -> str:
    return new_encrypt_key()


def paths(gateway) -> list[tuple[str, str]]:
    return [(request.method, request.url.path) for request in gateway.transport.received]


def test_a_wallet_is_made_prepare_then_create_with_the_key_paygo_gave(gateway, sandbox, key):
    wallet = gateway.create_wallet(external_user_id="alice", encrypt_key=key)

    assert paths(gateway) == [("POST", "/v1/chipi-wallets/prepare-creation"), ("POST", "/v1/chipi-wallets")]
    for request in gateway.transport.received:
        assert request.headers["x-api-key"] == SANDBOX_API_KEY
        assert request.headers["authorization"].startswith("Bearer ")
        assert request.url.params["__chipi_api_version"]
    assert wallet.address.startswith("0x") and len(wallet.address) == 66 and wallet.address == wallet.address.lower()
    assert wallet.wallet_type == "SHHH"  # the SDK's default, with a STARK key it generated
    # Chipi keeps only the encrypted key; it opens with PayGo's key, and it is the account's owner key.
    stored = SandboxWallet.objects.get(external_user_id="alice")
    private_key = decrypt_private_key(stored.encrypted_private_key, key)
    assert hex(private_to_stark_key(int(private_key, 16))) == hex(int(stored.owner_public_key, 16))
    assert key not in stored.encrypted_private_key


def test_a_second_create_is_refused_and_get_wallet_finds_the_first(gateway, key):
    made = gateway.create_wallet(external_user_id="alice", encrypt_key=key)

    with pytest.raises(ChipiRejected) as refused:
        gateway.create_wallet(external_user_id="alice", encrypt_key=new_encrypt_key())

    assert refused.value.status == 409 and "already exists" in refused.value.message
    assert gateway.get_wallet(external_user_id="alice") == made
    assert gateway.get_wallet(external_user_id="nobody") is None
    assert paths(gateway)[-2:] == [("GET", "/v1/chipi-wallets/by-user"), ("GET", "/v1/chipi-wallets/by-user")]


def test_balances_are_per_wallet_and_token(gateway, sandbox, key):
    wallet = gateway.create_wallet(external_user_id="alice", encrypt_key=key)
    sandbox.receive_payment(to_address=wallet.address, token="USDC", amount=2_500_000)
    sandbox.receive_payment(to_address=wallet.address, token="USDC.e", amount=7)

    assert gateway.token_balance(wallet.address, "USDC") == 2_500_000
    assert gateway.token_balance(wallet.address, "USDC.e") == 7  # bridged USDC is another token
    assert gateway.token_balance(wallet.address, "ETH") == 0
    request = gateway.transport.received[-1]
    assert request.url.path == "/v1/chipi-wallets/token-balance"
    # Not the SDK's "ChainToken.ETH" (see ChipiSdkGateway.token_balance).
    assert (request.url.params["chainToken"], request.url.params["chain"]) == ("ETH", "STARKNET")


def test_the_balance_of_a_wallet_chipi_does_not_know_is_refused(gateway):
    with pytest.raises(ChipiRejected) as refused:
        gateway.token_balance(ELSEWHERE, "USDC")

    assert refused.value.status == 404


def test_transactions_are_read_from_transaction_list_in_paygo_terms(gateway, sandbox, key):
    wallet = gateway.create_wallet(external_user_id="alice", encrypt_key=key)
    paid = sandbox.receive_payment(to_address=wallet.address, token="ETH", amount=10**18, from_address=ELSEWHERE)

    [record] = gateway.wallet_transactions(wallet.address)

    assert record == paid
    assert (record.status, record.token, record.amount, record.from_address) == (CONFIRMED, "ETH", 10**18, ELSEWHERE)
    request = gateway.transport.received[-1]
    assert request.url.path == "/v1/transactions/transaction-list"
    assert request.url.params["walletAddress"] == wallet.address


def test_transaction_list_is_read_page_by_page_and_bounded(gateway, sandbox, key):
    wallet = gateway.create_wallet(external_user_id="alice", encrypt_key=key)
    for _ in range(101):
        sandbox.receive_payment(to_address=wallet.address, token="USDC", amount=1)

    records = gateway.wallet_transactions(wallet.address)

    assert len(records) == 101
    pages = [r.url.params["page"] for r in gateway.transport.received if r.url.path.endswith("transaction-list")]
    assert pages == ["1", "2"]
    assert MAX_TRANSACTION_PAGES >= 2


@pytest.mark.parametrize("oldest_first", [False, True], ids=["newest_first", "oldest_first"])
def test_records_since_an_instant_are_read_whichever_order_chipi_lists_them_in(gateway, sandbox, key, oldest_first):
    """Chipi's documentation does not say in which order transaction-list gives the records. Read
    newest first, the reading stops at the first page reaching back past `since`; listed oldest
    first, that page is the first, of the oldest records, and nothing newer was read."""
    from datetime import UTC, datetime, timedelta

    import time_machine

    wallet = gateway.create_wallet(external_user_id="alice", encrypt_key=key)
    start = datetime(2026, 12, 1, 12, tzinfo=UTC)

    def paid(at: datetime, amount: int):
        with time_machine.travel(at, tick=False):
            return sandbox.receive_payment(to_address=wallet.address, token="USDC", amount=amount)

    old = [paid(start + timedelta(seconds=i), 1) for i in range(120)]
    new = [paid(start + timedelta(hours=1, seconds=i), 2) for i in range(30)]
    if oldest_first:
        sandbox.inject("transaction_list", "oldest_first", times=2)

    records = gateway.wallet_transactions(wallet.address, since=start + timedelta(minutes=30))

    assert {r.tx_hash for r in new} <= {r.tx_hash for r in records}
    assert len(records) == len({r.record_id for r in records}) <= len(old) + len(new)
    pages = [r.url.params["page"] for r in gateway.transport.received if r.url.path.endswith("transaction-list")]
    # Newest first, the first page reaches back past `since`; oldest first, the last page does.
    assert pages == (["1", "2"] if oldest_first else ["1"])


def test_a_transfer_is_signed_by_paygo_and_executed_once_per_nonce(gateway, sandbox, key):
    wallet = gateway.create_wallet(external_user_id="treasury", encrypt_key=key)
    sandbox.receive_payment(to_address=wallet.address, token="USDC", amount=10_000_000)

    tx_hash = gateway.execute_transfer(
        wallet=wallet, encrypt_key=key, token="USDC", amount=4_000_000, to_address=ELSEWHERE, nonce=42
    )

    assert paths(gateway)[-1] == ("POST", "/v1/transactions/execute-sponsored-raw")
    assert sandbox.balance(wallet.address, "USDC") == 6_000_000
    assert sandbox.balance(ELSEWHERE, "USDC") == 4_000_000
    sent = SandboxTransaction.objects.get(tx_hash=tx_hash)
    assert (sent.sender_address, sent.destination_address, sent.amount) == (wallet.address, ELSEWHERE, 4_000_000)
    # The same nonce again (a resend after an unknown outcome): the account refuses it.
    with pytest.raises(ChipiRejected) as refused:
        gateway.execute_transfer(
            wallet=wallet, encrypt_key=key, token="USDC", amount=4_000_000, to_address=ELSEWHERE, nonce=42
        )
    assert "nonce" in refused.value.message
    assert sandbox.balance(wallet.address, "USDC") == 6_000_000


def test_the_account_refuses_a_signature_by_another_key(gateway, sandbox, key):
    wallet = gateway.create_wallet(external_user_id="treasury", encrypt_key=key)
    other_key = new_encrypt_key()
    other = gateway.create_wallet(external_user_id="mallory", encrypt_key=other_key)
    sandbox.receive_payment(to_address=wallet.address, token="USDC", amount=10)
    forged = type(wallet)(wallet.address, other.encrypted_private_key, wallet.wallet_type)

    with pytest.raises(ChipiRejected) as refused:
        gateway.execute_transfer(
            wallet=forged, encrypt_key=other_key, token="USDC", amount=10, to_address=ELSEWHERE, nonce=1
        )

    assert "signature invalid" in refused.value.message
    assert sandbox.balance(wallet.address, "USDC") == 10


def test_more_than_the_wallet_holds_is_refused_and_moves_nothing(gateway, sandbox, key):
    wallet = gateway.create_wallet(external_user_id="treasury", encrypt_key=key)
    sandbox.receive_payment(to_address=wallet.address, token="USDC", amount=10)

    with pytest.raises(ChipiRejected):
        gateway.execute_transfer(wallet=wallet, encrypt_key=key, token="USDC", amount=11, to_address=ELSEWHERE, nonce=1)

    assert sandbox.balance(wallet.address, "USDC") == 10


# --- Faults, as the wire shows them -----------------------------------------------------------------


def test_reads_are_retried_through_timeouts_errors_and_rate_limits(gateway, sandbox, sleeps, key):
    wallet = gateway.create_wallet(external_user_id="alice", encrypt_key=key)
    sandbox.inject("token_balance", "timeout")
    sandbox.inject("token_balance", "error")
    sandbox.inject("token_balance", "rate_limited")

    assert gateway.token_balance(wallet.address, "USDC") == 0

    assert len(sleeps) == 3 and all(0 < delay <= gateway.max_backoff for delay in sleeps)


def test_a_read_gives_up_after_its_retries(gateway, sandbox, sleeps):
    sandbox.inject("get_wallet", "error", times=4)

    with pytest.raises(ChipiUnavailable):
        gateway.get_wallet(external_user_id="alice")

    assert len(sleeps) == 3


def test_a_refused_read_is_not_retried(gateway, sandbox, sleeps):
    sandbox.inject("transaction_list", "reject")

    with pytest.raises(ChipiRejected):
        gateway.wallet_transactions(ELSEWHERE)

    assert sleeps == []


@pytest.mark.parametrize(
    ("fault", "error", "moved"),
    [
        ("timeout", ChipiTimeout, 0),  # unknown outcome (here: it had not acted)
        ("lost_response", ChipiTimeout, 10),  # unknown outcome (here: it had acted)
        ("error", ChipiTimeout, 0),  # a 5xx to an execution: it may have acted
        ("rate_limited", ChipiRateLimited, 0),  # refused before acting
        ("reject", ChipiRejected, 0),
    ],
)
def test_an_execution_is_never_retried_and_says_what_is_known(gateway, sandbox, sleeps, key, fault, error, moved):
    wallet = gateway.create_wallet(external_user_id="treasury", encrypt_key=key)
    sandbox.receive_payment(to_address=wallet.address, token="USDC", amount=10)
    sandbox.inject("execute", fault)

    with pytest.raises(error):
        gateway.execute_transfer(wallet=wallet, encrypt_key=key, token="USDC", amount=10, to_address=ELSEWHERE, nonce=7)

    assert sleeps == []
    assert sandbox.balance(ELSEWHERE, "USDC") == moved


def test_a_create_whose_answer_was_lost_made_the_wallet(gateway, sandbox, key):
    sandbox.inject("create_wallet", "lost_response")

    with pytest.raises(ChipiTimeout):
        gateway.create_wallet(external_user_id="alice", encrypt_key=key)

    assert gateway.get_wallet(external_user_id="alice") is not None


def test_a_wrong_bearer_token_is_refused(gateway, settings):
    settings.CHIPI_SECRET_KEY = "sk_someone_else"  # the sandbox checks the configured one

    with pytest.raises(ChipiRejected) as refused:
        gateway.get_wallet(external_user_id="alice")

    assert refused.value.status == 401


def test_the_sandbox_keeps_only_its_latest_requests(gateway, settings):
    """A sandbox deployment's process serves for weeks: its transport kept every request (each with
    the API key in its headers)."""
    from wallets.chipi.sandbox_http import KEPT_REQUESTS

    settings.CHIPI_RATE_LIMIT_PER_MINUTE = 0  # PayGo's own budget for Chipi is not under test

    for n in range(KEPT_REQUESTS + 50):
        gateway.get_wallet(external_user_id=f"nobody-{n}")

    assert len(gateway.transport.received) == KEPT_REQUESTS
    assert gateway.transport.received[-1].url.params["externalUserId"] == f"nobody-{KEPT_REQUESTS + 49}"


def test_a_rate_limited_read_waits_what_chipis_retry_after_says(gateway, sandbox, sleeps, key):
    """The SDK raises its error without the answer's headers: the read was tried again after
    PayGo's own quarter to half second, before Chipi's Retry-After (the sandbox says 1 s)."""
    from wallets.chipi import sandbox_http

    wallet = gateway.create_wallet(external_user_id="alice", encrypt_key=key)
    sandbox.inject("token_balance", "rate_limited")

    assert gateway.token_balance(wallet.address, "USDC") == 0
    assert sleeps[0] >= float(sandbox_http.FAULT_RETRY_AFTER)


@pytest.mark.parametrize(("said", "waits"), [("30", 30.0), ("99999", 3600.0), ("soon", 0.5), ("-5", 0.5)])
def test_a_rate_limited_send_says_when_chipi_said_to_come_back(gateway, sandbox, key, monkeypatch, said, waits):
    """The outbox reschedules a rate-limited send after ChipiRateLimited.retry_after: it was always
    the gateway's half second, whatever Chipi said (within an hour; unreadable: the backoff)."""
    from wallets.chipi import ChipiRateLimited, sandbox_http

    wallet = gateway.create_wallet(external_user_id="treasury", encrypt_key=key)
    sandbox.receive_payment(to_address=wallet.address, token="USDC", amount=10)
    sandbox.inject("execute", "rate_limited")
    serve = sandbox_http._Serving.serve

    def saying(self, request, content):
        response = serve(self, request, content)
        if response.status_code == 429:
            response.headers["Retry-After"] = said
        return response

    monkeypatch.setattr(sandbox_http._Serving, "serve", saying)

    with pytest.raises(ChipiRateLimited) as limited:
        gateway.execute_transfer(
            wallet=wallet, encrypt_key=key, token="USDC", amount=10, to_address="0x00" + "ab" * 31, nonce=7
        )

    assert limited.value.retry_after == waits


def test_a_transfer_left_pending_reads_pending_then_settles_or_reverts_with_its_money(gateway, sandbox, key):
    """The "pending" fault: Chipi answers the hash, its record stays PENDING; settle() makes it
    SUCCESS, revert() FAILED with the money back where it was. A SUCCESS is final."""
    wallet = gateway.create_wallet(external_user_id="treasury", encrypt_key=key)
    sandbox.receive_payment(to_address=wallet.address, token="USDC", amount=10)
    sandbox.inject("execute", "pending", times=2)
    kept = gateway.execute_transfer(
        wallet=wallet, encrypt_key=key, token="USDC", amount=3, to_address=ELSEWHERE, nonce=1
    )
    lost = gateway.execute_transfer(
        wallet=wallet, encrypt_key=key, token="USDC", amount=4, to_address=ELSEWHERE, nonce=2
    )
    statuses = {tx.tx_hash: tx.status for tx in gateway.wallet_transactions(wallet.address)}
    assert (statuses[kept], statuses[lost]) == (PENDING, PENDING)

    sandbox.settle(kept)
    sandbox.revert(lost)

    statuses = {tx.tx_hash: tx.status for tx in gateway.wallet_transactions(wallet.address)}
    assert (statuses[kept], statuses[lost]) == (CONFIRMED, FAILED)
    assert SandboxTransaction.objects.get(tx_hash=lost).status == "FAILED"
    assert (sandbox.balance(wallet.address, "USDC"), sandbox.balance(ELSEWHERE, "USDC")) == (7, 3)
    for settled in (kept, lost):
        with pytest.raises(ValueError):
            sandbox.revert(settled)
        with pytest.raises(ValueError):
            sandbox.settle(settled)
    with pytest.raises(ValueError):
        sandbox.inject("transaction_list", "pending")  # only an execution's record can be left pending
