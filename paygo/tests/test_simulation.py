"""A seeded simulation of PayGo's money under faults, with a state check after every step (issue 17).

A hypothesis rule-based state machine drives the real services on PostgreSQL through the API
(DRF's client, JWT as a browser sends it), the Celery task functions and the Chipi sandbox, under a
simulated clock (time_machine; the sweep and the ledger take their `now` from it), and injects
faults between and inside operations: Chipi timeouts with an unknown outcome, 429, 5xx, refusals,
lost answers, a worker dying between a send and its record, a sweep killed mid-batch, two sweeps at
once. Beside it, paygo/tests/sim_model.py keeps in plain Python what every balance, hold and session
should be. After every step the database is compared with the model to the minor unit, and the
ledger's own health checks run (the ones every test ends with).

`make test` runs a bounded number of examples from a fixed seed; `make stress` runs at least
100,000 operations (SIM_OPERATIONS) from SIM_SEED (random when unset) and prints the operations
and the faults by kind. A failure prints its seed and the shortest sequence of steps that
reproduces it; that sequence becomes an ordinary test beside the code it tests once its bug is fixed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from unittest import mock

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import override_settings
from hypothesis import HealthCheck, Phase, Verbosity, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    invariant,
    precondition,
    rule,
)
from rest_framework.test import APIClient

from accounts.models import Role, User, VendorProfile
from accounts.services import token_pair_for, user_create
from conftest import _reseed_reference_data, in_thread
from paygo.tests.sim_model import IN_FLIGHT, Model, Session
from wallets.ledger import asset_get, system_account
from wallets.models import SystemAccount
from wallets.rates import get_rate_provider
from wallets.services import adjustment_post

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
UNITS = ("per_second", "per_minute", "per_hour", "per_session", "per_request", "per_transaction")
SEND_FAULTS = ("timeout", "lost_response", "error", "rate_limited", "reject", "unreachable")
DEPOSIT_SWEEP_FAULTS = ("timeout", "lost_response", "error", "rate_limited")
DECIMALS = {"USDC": 6, "USDT": 6}
USDC_MINIMUM_WITHDRAWAL = 1_000_000  # as wallets 0024 seeds it: below it, a withdrawal is a 400

# What every run did, over all examples (the stress test prints it).
OPERATIONS: Counter = Counter()
FAULTS: Counter = Counter()


class WorkerKilled(Exception):
    """A worker process dying at a chosen instant (raised where the simulation kills it)."""


def dec(minor: int, decimals: int = 6) -> str:
    """Minor units as the API's decimal string."""
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


def minor(text: str, decimals: int = 6) -> int:
    return int(Decimal(text) * 10**decimals)


def _reset_database() -> None:
    """Every example starts from an empty database with what migrations seed (a transactional
    test's flush, in one statement)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename NOT IN ('django_migrations', 'django_content_type', 'auth_permission')"
        )
        (tables,) = cursor.fetchone()
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    _reseed_reference_data()


def _forget_rate_limits() -> None:
    """Rate-limit counters live in the cache, and every example starts at the same instant: this
    process's keys go, as before every test (conftest._fresh_cache)."""
    from django.core.cache import cache

    redis = cache._cache.get_client(write=True)
    keys = list(redis.scan_iter(match=f"{settings.CACHES['default']['KEY_PREFIX']}:*", count=1000))
    if keys:
        redis.delete(*keys)


@functools.lru_cache(maxsize=4096)
def _stark_key(private_key: int) -> int:
    from starknet_py.hash.utils import private_to_stark_key

    return private_to_stark_key(private_key)


def _quick_signature(msg_hash: int, priv_key: int, seed: int | None = 32) -> tuple[int, int]:
    """A stand-in for the STARK signature the SDK computes for each transfer (about a second of CPU
    on this machine, where the simulation sends thousands): a keyed digest that only the owner key
    and this message produce, checked by _quick_verify the way the account checks a signature."""
    return _digest(msg_hash, _stark_key(priv_key)), 1


def _quick_verify(msg_hash: int, signature: list[int], public_key: int) -> bool:
    return list(signature) == [_digest(msg_hash, public_key), 1]


def _digest(msg_hash: int, public_key: int) -> int:
    data = msg_hash.to_bytes(32, "big") + public_key.to_bytes(32, "big")
    return int.from_bytes(hashlib.blake2b(data, digest_size=31).digest(), "big")


@contextlib.contextmanager
def _signatures():
    """Real STARK signatures with SIM_REAL_SIGNATURES=1; otherwise the quick stand-in, on both sides
    (the SDK's signer and the sandbox's check). Everything else runs as it does in production."""
    if os.environ.get("SIM_REAL_SIGNATURES") == "1":
        yield
        return
    with (
        mock.patch("chipi_sdk.shhh.signers.stark.message_signature", _quick_signature),
        mock.patch("starknet_py.hash.utils.verify_message_signature", _quick_verify),
    ):
        yield


class PayGoSimulation(RuleBasedStateMachine):
    """Users, vendors and staff moving money through PayGo while the clock runs and Chipi fails."""

    def __init__(self):
        super().__init__()
        from wallets.chipi.sandbox import get_sandbox

        OPERATIONS["examples"] += 1
        _reset_database()
        _forget_rate_limits()
        self.sandbox = get_sandbox()
        self.sandbox.reset()
        self.traveller = time_machine.travel(T0, tick=False)
        self.clock = self.traveller.start()
        self.model = Model(
            fee_bps=settings.PLATFORM_FEE_BPS,
            period_ms=settings.BILLING_SWEEP_SECONDS * 1000,
            idle_ms=settings.SESSION_IDLE_SECONDS * 1000,
        )
        self.staff = user_create(email="olga@sim.example", password=None, name="Olga", role=Role.ADMIN)
        self.users: list[User] = []
        self.vendors: list[User] = []
        self.services: dict[int, dict] = {}  # service id -> its price as the model knows it
        self.session_uuids: dict[int, str] = {}
        self.withdrawals: dict[str, dict] = {}  # id -> {user, asset, amount, address, state}
        self.webhooks: list[dict] = []  # signed payment events sent (for replays)
        self.credited_hashes: list[tuple[User, str, int]] = []
        self.unpaid_events: dict[str, tuple[str, int]] = {}  # tx hash -> (user email, amount) not credited
        self.names = itertools.count(1)
        self.steps_begun = False
        self.stops_counted: set[int] = set()

    def teardown(self):
        self.sandbox.reset()
        self.traveller.stop()

    # --- Helpers ------------------------------------------------------------------------------------

    def now(self) -> datetime:
        from django.utils import timezone

        return timezone.now()

    def client(self, user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:  # a token minted now: the simulated clock outlives any token lifetime
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_for(user).access}")
        return client

    def request(
        self, user, method: str, path: str, body=None, *, key: str | None = None, replay: bool = False, **headers
    ):
        """Send a request; with `replay`, send it again under the same Idempotency-Key and check that
        the answer is the first one, replayed."""
        if key:
            headers["HTTP_IDEMPOTENCY_KEY"] = key
        send = getattr(self.client(user), method)
        response = send(f"/api/v1/{path}", body, format="json", **headers)
        OPERATIONS["requests"] += 1
        if replay and key:
            again = getattr(self.client(user), method)(f"/api/v1/{path}", body, format="json", **headers)
            OPERATIONS["requests"] += 1
            OPERATIONS["idempotent_replays"] += 1
            if response.status_code < 400:
                assert again.status_code == response.status_code, (response.json(), again.json())
                assert again.json() == response.json()
                assert again.headers.get("Idempotent-Replayed") == "true"
            else:  # a refusal keeps no key: the retry runs afresh, and is refused the same way
                assert again.status_code == response.status_code, (response.json(), again.json())
        return response

    def inject(self, operation: str, fault: str) -> None:
        self.sandbox.inject(operation, fault)
        FAULTS[f"chipi {operation} {fault}"] += 1

    def pick(self, people: list, index: int):
        return people[index % len(people)]

    def active_sessions(self) -> list[Session]:
        return [s for s in self.model.sessions.values() if s.active]

    def register(self, role: str) -> User:
        n = next(self.names)
        email = f"{role}{n}@sim.example"
        response = self.request(
            None,
            "post",
            "auth/register",
            {"name": f"{role.title()} {n}", "email": email, "password": "correct-horse-battery-staple", "role": role},
            REMOTE_ADDR=f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",  # sign-ups come from many places
        )
        assert response.status_code == 201, response.json()
        return User.objects.get(email=email)

    # --- People and prices --------------------------------------------------------------------------

    @initialize(
        users=st.integers(2, 3),
        services=st.lists(
            st.tuples(
                st.sampled_from(UNITS),
                st.integers(1, 3_000_000),
                st.sampled_from([0, 0, 15, 90]),
                st.sampled_from([0, 0, 0, 250_000, 2_000_000]),
                st.sampled_from([None, 1_000_000, 5_000_000]),
            ),
            min_size=2,
            max_size=3,
        ),
    )
    def cast(self, users, services):
        """The first users, each with a first deposit, and vendors each with a service, registered
        through the API."""
        for n in range(users):
            self.register_user()
            self.deposit_through_the_sandbox(n, 20_000_000 * (n + 1), None, False)
        for service in services:
            self.register_vendor_with_a_service(*service)

    @precondition(lambda self: len(self.users) < 6)
    @rule()
    def register_user(self):
        OPERATIONS["register"] += 1
        self.users.append(self.register(Role.USER))

    @precondition(lambda self: len(self.vendors) < 4)
    @rule(
        unit=st.sampled_from(UNITS),
        rate=st.integers(1, 3_000_000),
        free_seconds=st.sampled_from([0, 0, 15, 90]),
        minimum=st.sampled_from([0, 0, 0, 250_000, 2_000_000]),
        payout_threshold=st.sampled_from([None, None, 1_000_000, 5_000_000]),
    )
    def register_vendor_with_a_service(self, unit, rate, free_seconds, minimum, payout_threshold):
        OPERATIONS["register"] += 1
        vendor = self.register(Role.VENDOR)
        self.vendors.append(vendor)
        if payout_threshold:
            VendorProfile.objects.update_or_create(
                user=vendor,
                defaults={
                    "business_name": vendor.name,
                    "payout_address": f"0x07{vendor.pk:062x}",
                    "payout_threshold": payout_threshold,
                },
            )
        self.create_service(vendor, unit, rate, free_seconds, minimum)

    def create_service(self, vendor, unit, rate, free_seconds, minimum):
        rate = max(1, {"per_second": rate // 60, "per_hour": rate * 20}.get(unit, rate))  # minutes' worth alike
        body = {"name": f"Service {next(self.names)}", "category": self.category(), "rate": dec(rate), "unit": unit}
        if unit in ("per_second", "per_minute", "per_hour"):
            body.update(freeSeconds=free_seconds, minimumCharge=dec(minimum))
        response = self.request(vendor, "post", "service", body)
        assert response.status_code == 201, response.json()
        service = response.json()["service"]
        self.services[service["id"]] = {
            "vendor": vendor,
            "unit": unit,
            "rate": rate,
            "free_ms": int(body.get("freeSeconds", 0)) * 1000,
            "minimum": minimum if "minimumCharge" in body else 0,
            "max_session_cost": minor(service["maxSessionCost"]) if service.get("maxSessionCost") else None,
            "max_event_quantity": service.get("maxEventQuantity"),
        }

    def category(self) -> str:
        from marketplace.models import Category

        return Category.objects.filter(parent__isnull=True).order_by("pk").first().name

    @precondition(lambda self: self.services)
    @rule(index=st.integers(0, 99), rate=st.integers(1, 3_000_000))
    def change_a_price(self, index, rate):
        """A vendor re-prices a service mid-session: running sessions keep the price they started at."""
        OPERATIONS["price_change"] += 1
        service_id = sorted(self.services)[index % len(self.services)]
        service = self.services[service_id]
        response = self.request(service["vendor"], "patch", f"service/{service_id}", {"rate": dec(rate)})
        if service["max_session_cost"] is not None and rate > service["max_session_cost"]:
            # The cap it declares could not pay for one unit: the vendor is told, nothing changes.
            assert response.status_code == 400 and "maxSessionCost" in response.json()["errors"], response.json()
            return
        assert response.status_code == 200, response.json()
        service["rate"] = rate
        if service["unit"] in ("per_request", "per_transaction", "per_gb"):
            body = response.json()["service"]
            service["max_session_cost"] = minor(body["maxSessionCost"]) if body.get("maxSessionCost") else None
            service["max_event_quantity"] = body.get("maxEventQuantity")

    # --- Deposits -----------------------------------------------------------------------------------

    @precondition(lambda self: self.users)
    @rule(
        index=st.integers(0, 99),
        amount=st.integers(1, 40_000_000),
        sweep_fault=st.sampled_from([None, None, None, *DEPOSIT_SWEEP_FAULTS]),
        replay=st.booleans(),
    )
    def deposit_through_the_sandbox(self, index, amount, sweep_fault, replay):
        """POST /wallet/deposit without a hash: the sandbox pays into the user's address, PayGo
        credits it, and sweeps it into the treasury (through the outbox, maybe failing)."""
        OPERATIONS["deposit"] += 1
        user = self.pick(self.users, index)
        if sweep_fault:
            self.inject("execute", sweep_fault)
        key = f"deposit-{next(self.names)}" if replay else None
        response = self.request(
            user, "post", "wallet/deposit", {"amount": dec(amount), "token": "USDC"}, key=key, replay=replay
        )
        assert response.status_code == 201, response.json()
        self.model.deposit(user.email, "USDC", amount)
        self.credited_hashes.append((user, response.json()["txHash"], amount))

    @precondition(lambda self: self.users)
    @rule(
        index=st.integers(0, 99),
        amount=st.integers(1, 40_000_000),
        verify_fault=st.sampled_from([None, None, "timeout", "error", "rate_limited"]),
    )
    def deposit_by_webhook(self, index, amount, verify_fault):
        """Someone pays the user's address on chain; Chipi's signed webhook reports it. When Chipi
        cannot be asked to verify it, nothing is credited (yet): a replay or the polling does."""
        from wallets.services import wallet_open

        OPERATIONS["deposit"] += 1
        user = self.pick(self.users, index)
        paid = self.sandbox.receive_payment(to_address=wallet_open(user=user), token="USDC", amount=amount)
        event = {
            "event": "payment.completed",
            "txHash": paid.tx_hash,
            "amount": dec(amount),
            "token": "USDC",
            "sender": paid.from_address,
            "recipient": user.wallet_address,
            "timestamp": self.now().isoformat(),
            "status": "COMPLETED",
        }
        self.webhooks.append(event)
        if verify_fault:
            self.inject("transaction_list", verify_fault)
        response = self.send_webhook(event)
        if verify_fault:
            assert response.status_code == 503, response.json()
            self.unpaid_events[paid.tx_hash] = (user.email, amount)
        else:
            assert response.status_code == 200 and response.json()["credited"], response.json()
            self.model.deposit(user.email, "USDC", amount)
            self.credited_hashes.append((user, paid.tx_hash, amount))

    def send_webhook(self, event: dict):
        from wallets.chipi import sign_webhook

        raw = json.dumps(event).encode()
        OPERATIONS["requests"] += 1
        return APIClient().post(
            "/api/v1/wallet/webhooks/chipi",
            data=raw,
            content_type="application/json",
            HTTP_CHIPI_SIGNATURE=sign_webhook(raw),
        )

    @precondition(lambda self: self.webhooks)
    @rule(index=st.integers(0, 99))
    def replay_a_webhook(self, index):
        """Chipi sends a payment's webhook again: credited once per hash, whatever came before."""
        OPERATIONS["deposit_replay"] += 1
        event = self.webhooks[index % len(self.webhooks)]
        response = self.send_webhook(event)
        assert response.status_code == 200, response.json()
        owed = self.unpaid_events.pop(event["txHash"], None)
        assert response.json()["credited"] == (owed is not None), response.json()
        if owed:
            self.model.deposit(owed[0], "USDC", owed[1])

    @precondition(lambda self: self.credited_hashes)
    @rule(index=st.integers(0, 99))
    def claim_a_credited_hash_again(self, index):
        """The user posts the hash of a deposit already credited: 200, nothing credited."""
        OPERATIONS["deposit_replay"] += 1
        user, tx_hash, amount = self.credited_hashes[index % len(self.credited_hashes)]
        response = self.request(
            user, "post", "wallet/deposit", {"amount": dec(amount), "token": "USDC", "txHash": tx_hash}
        )
        assert response.status_code == 200, response.json()

    # --- Transfers and swaps ------------------------------------------------------------------------

    @precondition(lambda self: len(self.users) >= 2)
    @rule(
        sender=st.integers(0, 99),
        recipient=st.integers(0, 99),
        amount=st.integers(1, 30_000_000),
        replay=st.booleans(),
        reuse_key=st.booleans(),
    )
    def transfer(self, sender, recipient, amount, replay, reuse_key):
        OPERATIONS["transfer"] += 1
        sender, recipient = self.pick(self.users, sender), self.pick(self.users, recipient)
        key = f"transfer-{next(self.names)}" if replay or reuse_key else None
        body = {"recipientId": recipient.pk, "amount": dec(amount), "token": "USDC"}
        response = self.request(sender, "post", "wallet/transfer", body, key=key, replay=replay)
        if sender.pk == recipient.pk:
            assert response.status_code == 400, response.json()
            return
        if amount > self.model.available(sender.email, "USDC"):
            assert response.status_code == 400, response.json()
            assert response.json()["errors"]["amount"][0].startswith("Insufficient funds")
        else:
            assert response.status_code == 201, response.json()
            self.model.transfer(sender.email, recipient.email, "USDC", amount)
            if reuse_key:  # the same key with another body: 409, nothing moves
                other = {**body, "amount": dec(amount + 1)}
                again = self.request(sender, "post", "wallet/transfer", other, key=key)
                assert again.status_code == 409, again.json()

    @precondition(lambda self: self.users)
    @rule(index=st.integers(0, 99), amount=st.integers(1, 20_000_000), back=st.booleans(), replay=st.booleans())
    def swap(self, index, amount, back, replay):
        OPERATIONS["swap"] += 1
        user = self.pick(self.users, index)
        source, target = ("USDT", "USDC") if back else ("USDC", "USDT")
        key = f"swap-{next(self.names)}" if replay else None
        body = {"fromToken": source, "toToken": target, "amount": dec(amount)}
        response = self.request(user, "post", "wallet/swap", body, key=key, replay=replay)
        if amount > self.model.available(user.email, source):
            assert response.status_code == 400, response.json()
            return
        # The rate the service was quoted (the fake price API's, constant): exactly, no 28-digit rounding.
        received = math.floor(Fraction(amount) * Fraction(get_rate_provider().rate(source, target)))
        if received <= 0:
            assert response.status_code == 400, response.json()
            return
        if received > self.model.liquidity(target):  # PayGo sells only what it holds
            assert response.status_code == 409 and response.json()["code"] == "insufficient_liquidity", response.json()
            return
        assert response.status_code == 201, response.json()
        assert Decimal(response.json()["rate"]) == get_rate_provider().rate(source, target)
        assert minor(response.json()["received"]) == received
        self.model.swap(user.email, source, target, amount, received)

    @precondition(lambda self: self.users)
    @rule(token=st.sampled_from(["USDC", "USDT"]), amount=st.integers(1, 30_000_000))
    def put_in_liquidity(self, token, amount):
        """Staff put liquidity in for swaps to sell (an adjustment in the admin)."""
        OPERATIONS["liquidity"] += 1
        account = system_account(SystemAccount.SWAP_LIQUIDITY, asset_get(token))
        adjustment_post(account=account, amount=amount, reason="Liquidity for swaps", staff=self.staff)
        self.model.liquidity_put_in(token, amount)

    # --- Withdrawals and payouts: the outbox --------------------------------------------------------

    @precondition(lambda self: self.users)
    @rule(
        index=st.integers(0, 99),
        amount=st.integers(1, 30_000_000),
        fault=st.sampled_from([None, None, *SEND_FAULTS, "lookup_stale"]),
        replay=st.booleans(),
    )
    def withdraw(self, index, amount, fault, replay):
        OPERATIONS["withdraw"] += 1
        user = self.pick(self.users, index)
        if fault == "lookup_stale":  # the send's answer is lost and the first look-up misses it
            self.inject("execute", "lost_response")
            self.inject("transaction_list", "stale")
        elif fault:
            self.inject("execute", fault)
        address = f"0x05{next(self.names):062x}"
        key = f"withdraw-{next(self.names)}" if replay else None
        body = {"amount": dec(amount), "toAddress": address, "token": "USDC"}
        response = self.request(user, "post", "wallet/withdraw", body, key=key, replay=replay)
        self.sandbox.reset()  # a fault a refused request did not reach is not left for the next one
        if amount < USDC_MINIMUM_WITHDRAWAL or amount > self.model.available(user.email, "USDC"):
            assert response.status_code == 400, response.json()
            return
        assert response.status_code == 202, response.json()
        self.model.withdraw(user.email, "USDC", amount)
        withdrawal_id = response.json()["withdrawal"]["id"]
        self.withdrawals[withdrawal_id] = {"user": user.email, "amount": amount, "address": address, "state": "out"}

    @precondition(lambda self: self.users)
    @rule(index=st.integers(0, 99), amount=st.integers(1, 10_000_000))
    def withdraw_and_die_between_send_and_record(self, index, amount):
        """The first send fails (503); the retry reaches Chipi and its worker dies before recording
        it. The row stays claimed until its claim runs out; then a look-up finds the transfer."""
        from wallets import services
        from wallets.ledger import asset_get

        OPERATIONS["withdraw"] += 1
        user = self.pick(self.users, index)
        if amount < USDC_MINIMUM_WITHDRAWAL or amount > self.model.available(user.email, "USDC"):
            return
        self.inject("execute", "error")
        address = f"0x05{next(self.names):062x}"
        withdrawal = services.withdrawal_request(user=user, asset=asset_get("USDC"), amount=amount, to_address=address)
        self.model.withdraw(user.email, "USDC", amount)
        self.withdrawals[str(withdrawal.pk)] = {
            "user": user.email,
            "amount": amount,
            "address": address,
            "state": "out",
        }
        self.clock.shift(timedelta(seconds=6))  # the 503's backoff
        FAULTS["worker killed between send and record"] += 1
        with mock.patch("wallets.services._withdrawal_sent", side_effect=WorkerKilled), pytest.raises(WorkerKilled):
            services.withdrawal_send(withdrawal_id=withdrawal.pk)
        assert self.sent_on_chain(address, amount) == 1

    def sent_on_chain(self, address: str, amount: int) -> int:
        from wallets.chipi.models import SandboxTransaction

        return SandboxTransaction.objects.filter(destination_address=address, amount=amount).count()

    @rule(seconds=st.integers(121, 400))
    def drain_the_outbox(self, seconds):
        """Time passes beyond every claim and backoff; the dispatchers send what is due, the polling
        credits what no webhook did. Then custody on chain equals the ledger, to the unit."""
        from wallets.tasks import (
            deposits_poll_task,
            sends_confirm_task,
            sweeps_dispatch_task,
            withdrawals_dispatch_task,
        )

        OPERATIONS["drain"] += 1
        self.clock.shift(timedelta(seconds=seconds))
        for _ in range(5):
            sweeps_dispatch_task()
            withdrawals_dispatch_task()
            if not self.outbox_pending():
                break
            self.clock.shift(timedelta(seconds=3700))
        assert not self.outbox_pending(), "the outbox did not drain"
        # Nothing here reverts on chain: the confirmation checker confirms what was sent, undoes nothing.
        assert sends_confirm_task()["reverted"] == 0
        credited = deposits_poll_task()
        assert credited == len(self.unpaid_events)
        for email, amount in self.unpaid_events.values():
            self.model.deposit(email, "USDC", amount)
        self.unpaid_events.clear()

    def outbox_pending(self) -> bool:
        from wallets.models import Sweep, SweepStatus, Withdrawal, WithdrawalStatus

        return (
            Withdrawal.objects.filter(status__in=[WithdrawalStatus.PENDING, WithdrawalStatus.SENDING]).exists()
            or Sweep.objects.filter(status=SweepStatus.PENDING).exists()
        )

    # --- Sessions -----------------------------------------------------------------------------------

    @precondition(lambda self: self.users and self.services)
    @rule(
        index=st.integers(0, 99),
        service_index=st.integers(0, 99),
        max_cost=st.sampled_from([None, None, None, 500_000, 3_000_000, 20_000_000]),
        replay=st.booleans(),
    )
    def start_a_session(self, index, service_index, max_cost, replay):
        from streaming.models import StreamingSession

        OPERATIONS["session_start"] += 1
        user = self.pick(self.users, index)
        service_id = sorted(self.services)[service_index % len(self.services)]
        service = self.services[service_id]
        body = {"serviceId": service_id}
        if max_cost is not None:
            body["maxCost"] = dec(max_cost)
        key = f"start-{next(self.names)}" if replay else None
        response = self.request(user, "post", "streams/start", body, key=key, replay=replay)
        fee = service["rate"] if service["unit"] == "per_session" else 0
        if max_cost is not None and max_cost < fee:
            assert response.status_code == 400, response.json()
            return
        if max_cost is None and service["unit"] in ("per_request", "per_transaction", "per_gb"):
            max_cost = service["max_session_cost"]
        hold, fee = self.model.start_needs(
            rate=service["rate"],
            unit=service["unit"],
            free_ms=service["free_ms"],
            minimum=service["minimum"],
            max_cost=max_cost,
        )
        if self.model.available(user.email, "USDC") < hold + fee:
            assert response.status_code == 402, response.json()
            return
        assert response.status_code == 201, response.json()
        uuid = response.json()["session"]["id"]
        row = StreamingSession.objects.get(session_id=uuid)
        now = self.now()
        self.session_uuids[row.pk] = uuid
        self.model.session_start(
            Session(
                pk=row.pk,
                user=user.email,
                vendor=service["vendor"].email,
                asset="USDC",
                rate=service["rate"],
                unit=service["unit"],
                free_ms=service["free_ms"],
                minimum=service["minimum"],
                session_fee=fee,
                max_cost=max_cost,
                max_event_quantity=service["max_event_quantity"],
                start=now,
                charged_until=now,
                last_seen=now,
                hold=hold,
                total=0,
            )
        )

    # Sessions are most of what PayGo does: these rules are drawn twice as often as the others.
    start_another_session = start_a_session
    sessions_run_for_another_while = None  # set below, once defined

    @precondition(lambda self: self.model.sessions)
    @rule(index=st.integers(0, 999))
    def heartbeat(self, index):
        """The user's metrics report: a sign of life while the session runs."""
        self.heartbeat_session(self.pick(sorted(self.model.sessions.values(), key=lambda s: s.pk), index))

    def heartbeat_session(self, session: Session) -> None:
        OPERATIONS["heartbeat"] += 1
        user = User.objects.get(email=session.user)
        response = self.request(user, "patch", f"streams/{self.session_uuids[session.pk]}/metrics", {"bitrate": 1000})
        if self.model.running(session, self.now()):
            assert response.status_code == 200, response.json()
            self.model.seen(session.pk, self.now())
        else:  # stopped, or silent past its idle timeout (it ended then)
            assert response.status_code == 409, response.json()

    @precondition(lambda self: self.model.sessions)
    @rule(index=st.integers(0, 999), actor=st.sampled_from(["user", "vendor", "staff"]), replay=st.booleans())
    def stop_a_session(self, index, actor, replay):
        OPERATIONS["session_stop"] += 1
        session = self.pick(sorted(self.model.sessions.values(), key=lambda s: s.pk), index)
        who = {"user": session.user, "vendor": session.vendor, "staff": self.staff.email}[actor]
        key = f"stop-{next(self.names)}" if replay else None
        was_active = session.active
        response = self.request(
            User.objects.get(email=who),
            "patch",
            f"streams/{self.session_uuids[session.pk]}/stop",
            key=key,
            replay=replay,
        )
        assert response.status_code == 200, response.json()
        if was_active:
            self.model.bill(session.pk, self.now(), stop_reason=actor)

    @precondition(lambda self: any(s.unit in ("per_request", "per_transaction") for s in self.model.sessions.values()))
    @rule(index=st.integers(0, 999), quantity=st.integers(1, 150), replay_event=st.booleans())
    def report_usage(self, index, quantity, replay_event):
        """The vendor reports usage; one eventId counts once, however often it is sent."""
        OPERATIONS["usage_report"] += 1
        usage = [s for s in self.model.sessions.values() if s.unit in ("per_request", "per_transaction")]
        session = self.pick(sorted(usage, key=lambda s: s.pk), index)
        vendor = User.objects.get(email=session.vendor)
        event_id = f"evt-{next(self.names)}"
        path = f"streams/{self.session_uuids[session.pk]}/usage"
        response = self.request(vendor, "post", path, {"eventId": event_id, "quantity": quantity})
        cap = self.model.usage_cap(session)
        if session.max_event_quantity is not None and quantity > session.max_event_quantity:
            assert response.status_code == 400, response.json()
            return
        if not self.model.running(session, self.now()):
            # Stopped, or silent past its idle timeout (which ended it then, whoever stops it later).
            assert response.status_code == 409 and response.json()["code"] == "session_ended", response.json()
            return
        if cap is not None and session.usage + quantity > cap:
            assert response.status_code == 409 and response.json()["code"] == "usage_over_cap", response.json()
            return
        if not self.model.usage_count(session, quantity):
            assert response.status_code == 402 and response.json()["code"] == "insufficient_funds", response.json()
            return
        assert response.status_code == 201, response.json()
        self.model.seen(session.pk, self.now())
        if replay_event:
            OPERATIONS["usage_replay"] += 1
            again = self.request(vendor, "post", path, {"eventId": event_id, "quantity": quantity})
            assert again.status_code == 200 and again.json()["counted"] is False, again.json()

    # --- Time and the sweep -------------------------------------------------------------------------

    @rule(seconds=st.integers(0, 200), milliseconds=st.integers(0, 999))
    def time_passes(self, seconds, milliseconds):
        OPERATIONS["time_passes"] += 1
        self.clock.shift(timedelta(seconds=seconds, milliseconds=milliseconds))

    @precondition(lambda self: self.active_sessions())
    @rule(minutes=st.integers(1, 12), beating=st.sampled_from(["all", "all", "some", "none"]))
    def sessions_run_for_a_while(self, minutes, beating):
        """Minutes pass as beat would have them: the users' heartbeats (all, some or none of them)
        a little before each sweep, then the sweep. Funds and caps run out; silent sessions stop."""
        for minute in range(minutes):
            self.clock.shift(timedelta(seconds=59, milliseconds=617))
            for n, session in enumerate(sorted(self.active_sessions(), key=lambda s: s.pk)):
                if beating == "all" or (beating == "some" and (n + minute) % 2 == 0):
                    self.heartbeat_session(session)
            self.clock.shift(timedelta(milliseconds=383))
            self.sweep()

    sessions_run_for_another_while = sessions_run_for_a_while

    @rule()
    def sweep(self):
        """Beat's billing sweep (the Celery task: the sweep, then the vendors' payouts)."""
        from streaming.tasks import billing_sweep_shard_task
        from wallets.models import Withdrawal, WithdrawalKind

        OPERATIONS["sweep"] += 1
        now = self.now()
        before = set(Withdrawal.objects.filter(kind=WithdrawalKind.PAYOUT).values_list("pk", flat=True))
        billed = sorted(s.pk for s in self.active_sessions() if s.start <= now)
        outcomes = dict(zip(billed, self.model.sweep(now), strict=True))
        billing_sweep_shard_task(0, 1)
        # Vendors charged for in this sweep whose earnings reached their threshold are paid out, all of it.
        charged = {self.model.sessions[pk].vendor for pk, outcome in outcomes.items() if outcome.charge}
        expected = {}
        for profile in VendorProfile.objects.filter(user__email__in=charged, payout_threshold__isnull=False):
            available = self.model.available(profile.user.email, "USDC")
            if available >= max(profile.payout_threshold, USDC_MINIMUM_WITHDRAWAL) and available > 0:
                expected[profile.user.email] = available
        payouts = Withdrawal.objects.filter(kind=WithdrawalKind.PAYOUT).exclude(pk__in=before).select_related("user")
        assert {p.user.email: p.amount for p in payouts} == expected
        for payout in payouts:
            OPERATIONS["payout"] += 1
            self.model.withdraw(payout.user.email, "USDC", payout.amount)
            self.withdrawals[str(payout.pk)] = {
                "user": payout.user.email,
                "amount": payout.amount,
                "address": payout.to_address,
                "state": "out",
            }

    @precondition(lambda self: len(self.active_sessions()) >= 2)
    @rule()
    def sweep_killed_mid_batch_then_rerun(self):
        """A sweep of one-session batches whose worker dies in its second batch (billed, not
        committed); the re-run a little later bills what the lost batch did not commit, once."""
        from streaming import billing
        from streaming.sweep import sweep

        OPERATIONS["sweep"] += 2
        FAULTS["sweep killed mid-batch"] += 1
        now = self.now()
        real_bill, calls = billing._bill, []

        def dies_in_second_batch(**params):
            calls.append(1)
            billed = real_bill(**params)
            if len(calls) == 2:
                raise WorkerKilled
            return billed

        first = sorted(s.pk for s in self.active_sessions() if s.start <= now)[:1]
        with mock.patch("streaming.billing._bill", side_effect=dies_in_second_batch), pytest.raises(WorkerKilled):
            sweep(now=now, batch_size=1)
        self.model.sweep(now, only=first)
        self.check_state()
        self.clock.shift(timedelta(seconds=1))
        sweep(batch_size=1)
        self.model.sweep(self.now())

    @precondition(lambda self: self.active_sessions() and not self.model.sweep_depends_on_order(self.now()))
    @rule()
    def two_sweeps_at_once(self):
        """Two workers sweep the same instant on their own connections, in small batches: each
        session is billed by one of them, once."""
        from streaming.sweep import sweep

        OPERATIONS["sweep"] += 2
        FAULTS["two sweeps at once"] += 1
        now = self.now()
        barrier = threading.Barrier(2)

        @in_thread
        def run(_):
            barrier.wait()
            return sweep(now=now, batch_size=1).sessions

        with ThreadPoolExecutor(max_workers=2) as pool:
            visits = sum(pool.map(run, range(2)))
        # Each session is visited once or twice (a sweep walking on finds a row the other has just
        # committed, and bills it again at the same instant: nothing more is due); the model, which
        # bills it once, says whether any was charged twice.
        assert visits >= len([s for s in self.active_sessions() if s.start <= now])
        self.model.sweep(now)

    # --- The state, after every step ----------------------------------------------------------------

    def settle_withdrawals(self) -> None:
        """What the outbox did since the last step (sent, or refused for good and refunded), taken
        into the model; then every transfer on chain is one sent row's (a vendor's payouts share its
        address, and may share an amount): to each address and amount, as many transfers as rows
        sent, plus at most the rows still open (their outcome may not be recorded yet)."""
        from wallets.models import Withdrawal, WithdrawalStatus

        open_ids = [pk for pk, w in self.withdrawals.items() if w["state"] == "out"]
        for pk, status in Withdrawal.objects.filter(pk__in=open_ids).values_list("pk", "status"):
            w = self.withdrawals[str(pk)]
            if status == WithdrawalStatus.SENT:
                self.model.withdrawal_sent("USDC", w["amount"])
                w["state"] = "sent"
            elif status == WithdrawalStatus.FAILED:
                self.model.withdrawal_refunded(w["user"], "USDC", w["amount"])
                w["state"] = "refunded"
        rows: dict[tuple[str, int], Counter] = {}
        for w in self.withdrawals.values():
            rows.setdefault((w["address"], w["amount"]), Counter())[w["state"]] += 1
        for (address, amount), states in rows.items():
            on_chain = self.sent_on_chain(address, amount)
            assert states["sent"] <= on_chain <= states["sent"] + states["out"], (
                f"{on_chain} transfers of {amount} to {address} on chain for withdrawals {dict(states)}"
            )

    @invariant()
    def check_state(self):
        from streaming.selectors import charges_health
        from wallets.selectors import ledger_health

        if self.steps_begun:  # the first check runs before any step
            OPERATIONS["steps"] += 1
        self.steps_begun = True
        self.sandbox.reset()  # faults a step injected and did not reach are not left for the next one
        self.settle_withdrawals()
        # Every balance and hold, to the minor unit.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(u.email, a.system_code), s.code, a.balance, a.held FROM wallets_account a "
                "JOIN wallets_asset s ON s.id = a.asset_id LEFT JOIN accounts_user u ON u.id = a.owner_id"
            )
            actual = {(owner, asset): [int(balance), int(held)] for owner, asset, balance, held in cursor.fetchall()}
        expected = {key: value for key, value in self.model.accounts.items() if value != [0, 0]}
        actual_nonzero = {key: value for key, value in actual.items() if value != [0, 0]}
        assert actual_nonzero == expected
        health = ledger_health()
        assert health["healthy"], health
        charges = charges_health()
        assert charges["healthy"], charges
        self.check_sessions()
        self.check_charge_intervals()
        if not self.outbox_pending():
            self.check_custody()

    def check_sessions(self) -> None:
        from streaming.models import StreamingSession

        rows = StreamingSession.objects.select_related("hold").in_bulk(list(self.model.sessions))
        for pk, expected in self.model.sessions.items():
            row = rows[pk]
            if expected.end is not None and pk not in self.stops_counted:
                self.stops_counted.add(pk)
                OPERATIONS[f"stopped {expected.stop_reason}"] += 1
            actual = {
                "status": row.status,
                "stop_reason": row.stop_reason,
                "end": row.end_time,
                "total": row.total_cost,
                "metered": row.metered_cost,
                "charged_until": row.charged_until,
                "hold": row.hold.amount,
                "usage": row.usage_quantity,
                "stop_at": row.stop_at,
                "charges": row.charge_count,
            }
            wanted = {name: getattr(expected, name) for name in actual}
            assert actual == wanted, f"session {pk} ({expected.unit} at {expected.rate}): {actual} != {wanted}"

    def check_charge_intervals(self) -> None:
        """No session charged twice for one interval: its charges' intervals follow one another."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT session_id FROM (SELECT session_id, billed_from, "
                "lag(billed_until) OVER (PARTITION BY session_id ORDER BY billed_from, id) AS previous_until "
                "FROM wallets_entry WHERE session_id IS NOT NULL) c WHERE billed_from < previous_until"
            )
            overlapping = cursor.fetchall()
        assert not overlapping, f"sessions charged twice for one interval: {overlapping}"

    def check_custody(self) -> None:
        """Custody on the (sandbox) chain equals the ledger, once the outbox has drained (money paid
        on chain whose credit is still owed aside)."""
        owed = sum(amount for _, amount in self.unpaid_events.values())
        assert self.sandbox.custody_balance("USDC") == self.model.custody("USDC") + owed
        assert self.model.accounts[(IN_FLIGHT, "USDC")][0] == sum(
            w["amount"] for w in self.withdrawals.values() if w["state"] == "out"
        )


# --- Running it -----------------------------------------------------------------------------------

MAKE_TEST_SEED = 17


def run_simulation(*, examples: int, steps: int, seed_value: int, verbosity=Verbosity.normal) -> None:
    test = get_state_machine_test(
        PayGoSimulation,
        settings=hsettings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate, Phase.shrink] if os.environ.get("SIM_SHRINK", "1") == "1" else [Phase.generate],
            verbosity=verbosity,
            print_blob=True,
        ),
    )
    try:
        # PayGo's own Chipi budget (100 requests a minute) counts minutes of the clock, which the
        # simulation holds still for many steps (a wait for room would never end); Chipi's own 429s
        # are injected instead.
        with _signatures(), override_settings(CHIPI_RATE_LIMIT_PER_MINUTE=0):
            seed(seed_value)(test)()
    except BaseException:
        print(f"\nThe simulation failed with seed {seed_value}: SIM_SEED={seed_value} reproduces it.")
        raise


def summary(started: float) -> str:
    steps = OPERATIONS["steps"]
    faults = ", ".join(f"{kind}: {count}" for kind, count in sorted(FAULTS.items()))
    kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(OPERATIONS.items()) if kind != "steps")
    return (
        f"simulation: {steps} operations in {time.monotonic() - started:.0f} s ({kinds}); "
        f"faults injected: {sum(FAULTS.values())} ({faults}); 0 units created or lost"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(900)
def test_simulation(capsys):
    """make test's bounded run: a fixed seed, a few examples of a few dozen steps."""
    OPERATIONS.clear()
    FAULTS.clear()
    started = time.monotonic()
    run_simulation(
        examples=int(os.environ.get("SIM_EXAMPLES", 6)),
        steps=int(os.environ.get("SIM_STEPS", 40)),
        seed_value=int(os.environ.get("SIM_SEED", MAKE_TEST_SEED)),
    )
    assert OPERATIONS["steps"] > 0
    with capsys.disabled():
        print("\n" + summary(started))


@pytest.mark.stress
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(6 * 3600)
def test_simulation_stress(capsys):
    """make stress: at least SIM_OPERATIONS (100,000) operations, in examples of SIM_STEPS steps."""
    OPERATIONS.clear()
    FAULTS.clear()
    started = time.monotonic()
    wanted = int(os.environ.get("SIM_OPERATIONS", 100_000))
    steps = int(os.environ.get("SIM_STEPS", 200))
    seed_value = int(os.environ.get("SIM_SEED") or random.SystemRandom().randrange(2**32))
    with capsys.disabled():
        print(f"\nsimulation seed: {seed_value}")
    rounds = itertools.count()
    while OPERATIONS["steps"] < wanted:
        run_simulation(examples=5, steps=steps, seed_value=seed_value + next(rounds))
        with capsys.disabled():
            print(summary(started))
    with capsys.disabled():
        print(summary(started))
