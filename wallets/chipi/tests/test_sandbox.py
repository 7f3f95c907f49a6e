"""The sandbox's own rules, asked directly (the SDK's requests are in test_sdk_gateway.py)."""

from __future__ import annotations

import pytest
from django.conf import settings

from wallets.chipi.models import SandboxBalance, SandboxWallet
from wallets.chipi.sandbox import SANDBOX_API_KEY, SandboxRequest
from wallets.keys import new_encrypt_key

pytestmark = pytest.mark.django_db

ELSEWHERE = "0x00" + "ab" * 31


def ask(sandbox, method, path, *, body=None, query=None, headers=None):
    sent = {"x-api-key": SANDBOX_API_KEY, "authorization": f"Bearer {settings.CHIPI_SECRET_KEY}", **(headers or {})}
    return sandbox.handle(
        SandboxRequest(method, path, {"__chipi_api_version": "2025-12-30", **(query or {})}, sent, body)
    )


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({"x-api-key": "pk_other"}, {}, 401),
        ({"authorization": "Bearer sk_other"}, {}, 401),
        ({}, {"__chipi_api_version": ""}, 400),
    ],
)
def test_requests_without_the_keys_or_the_version_are_refused(sandbox, headers, query, status):
    answer = ask(sandbox, "GET", "/chipi-wallets/by-user", query={"externalUserId": "a", **query}, headers=headers)

    assert answer.status == status
    assert set(answer.payload) == {"message", "code"}


def test_an_unknown_path_is_404_in_chipis_error_shape(sandbox):
    answer = ask(sandbox, "POST", "/no-such-endpoint", body={})

    assert (answer.status, answer.payload["code"]) == (404, "NOT_FOUND")


def test_a_create_whose_address_is_not_its_owner_keys_is_refused(gateway, sandbox):
    made = gateway.create_wallet(external_user_id="alice", encrypt_key=new_encrypt_key())
    stored = SandboxWallet.objects.get(address=made.address)
    body = {
        "externalUserId": "mallory",
        "publicKey": made.address,  # alice's address, with another owner key
        "walletType": "SHHH",
        "encryptedPrivateKey": stored.encrypted_private_key,
        "deploymentData": {"calldata": ["0x1", "0x2", "0x1", "0x" + "5" * 62, "0x3"]},
    }

    answer = ask(sandbox, "POST", "/chipi-wallets", body=body)

    assert (answer.status, answer.payload["code"]) == (400, "INVALID_PUBLIC_KEY")
    assert not SandboxWallet.objects.filter(external_user_id="mallory").exists()


@pytest.mark.parametrize(
    "calldata",
    [["0x1"], ["0x0", "0x1", "0x0", "0x0", "0x1", "0x0", "0x0"], "0x1", ["zz"] * 8],
)
def test_malformed_outside_execution_calldata_is_refused(gateway, sandbox, calldata):
    made = gateway.create_wallet(external_user_id="alice", encrypt_key=new_encrypt_key())
    body = {"accountAddress": made.address, "calldata": calldata, "signerKind": "STARK"}

    answer = ask(sandbox, "POST", "/transactions/execute-sponsored-raw", body=body)

    assert answer.status == 400


def test_a_payment_only_into_the_sandboxs_wallets_and_of_a_known_token(sandbox):
    with pytest.raises(ValueError):
        sandbox.receive_payment(to_address=ELSEWHERE, token="USDC", amount=1)
    with pytest.raises(ValueError):
        sandbox.receive_payment(to_address=ELSEWHERE, token="DOGE", amount=1)
    assert not SandboxBalance.objects.exists()


def test_custody_is_what_the_sandboxs_wallets_hold_together(gateway, sandbox):
    alice = gateway.create_wallet(external_user_id="alice", encrypt_key=new_encrypt_key())
    bob = gateway.create_wallet(external_user_id="bob", encrypt_key=new_encrypt_key())
    sandbox.receive_payment(to_address=alice.address, token="USDC", amount=3)
    sandbox.receive_payment(to_address=bob.address, token="USDC", amount=4)
    sandbox.receive_payment(to_address=bob.address, token="ETH", amount=5)

    assert sandbox.custody_balance("USDC") == 7
    assert sandbox.custody_balance("ETH") == 5


def test_the_payments_into_a_wallet_oldest_first(gateway, sandbox):
    alice = gateway.create_wallet(external_user_id="alice", encrypt_key=new_encrypt_key())
    bob = gateway.create_wallet(external_user_id="bob", encrypt_key=new_encrypt_key())
    first = sandbox.receive_payment(to_address=alice.address, token="USDC", amount=3)
    sandbox.receive_payment(to_address=bob.address, token="USDC", amount=4)
    second = sandbox.receive_payment(to_address=alice.address.upper().replace("0X", "0x"), token="ETH", amount=5)

    assert sandbox.payments_into(alice.address) == [first, second]


def test_faults_are_checked_kept_in_order_and_reset(sandbox):
    with pytest.raises(ValueError):
        sandbox.inject("get_rate", "error")  # Chipi quotes no rates
    with pytest.raises(ValueError):
        sandbox.inject("execute", "explode")
    with pytest.raises(ValueError):
        sandbox.inject("execute", "timeout", times=0)

    sandbox.inject("send_transfer", "timeout")  # PayGo's name for an execution
    sandbox.inject("execute", "error", times=2)

    assert sandbox.pending_faults("execute") == ["timeout", "error", "error"]
    sandbox.reset()
    assert sandbox.pending_faults("execute") == []


def test_reset_with_the_chain_wipes_it(gateway, sandbox):
    made = gateway.create_wallet(external_user_id="alice", encrypt_key=new_encrypt_key())
    sandbox.receive_payment(to_address=made.address, token="USDC", amount=3)

    sandbox.reset(chain=True)

    assert not SandboxWallet.objects.exists() and not SandboxBalance.objects.exists()
