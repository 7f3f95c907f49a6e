"""A send in doubt that Chipi refuses for long enough: out of the outbox, its money in flight, until
staff settle it (refunded or sent), once, and never sent again."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from conftest import backend_pid, grant, in_thread, money_db, wait_until_blocked_on_a_lock
from notifications.models import Notification
from paygo.api.errors import Conflict
from wallets import services
from wallets.chipi import get_gateway
from wallets.chipi.models import SandboxTransaction, SandboxUsedNonce
from wallets.models import LedgerTransaction, Sweep, SweepStatus, SystemAccount, TransactionKind, Withdrawal
from wallets.models import WithdrawalStatus as Status
from wallets.tests.conftest import balance_of, chain_deposit, system_balance

USDC = 1_000_000
ADDRESS = "0x00" + "ab" * 31
HASH = "0x00" + "5e" * 31
CHANGELIST = "/admin/wallets/withdrawal/"
# Long enough after a send for it to be past executing (the SDK signs for 2 hours; the clock skew).
PAST_ITS_LIFE = services.SIGNED_TRANSFER_LIFETIME + services.CLOCK_SKEW + timedelta(seconds=1)


def withdraw(api, user, amount="4") -> str:
    response = api(user).post("/api/v1/wallet/withdraw", {"amount": amount, "toAddress": ADDRESS}, format="json")
    assert response.status_code == 202, response.json()
    return response.json()["withdrawal"]["id"]


def retry_due(withdrawal_id) -> str:
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    with time_machine.travel(withdrawal.next_attempt_at + timedelta(seconds=1)):
        return services.withdrawal_send(withdrawal_id=withdrawal_id)


def sent_on_chain() -> int:
    return SandboxTransaction.objects.filter(destination_address=ADDRESS).count()


def executions_asked() -> int:
    """execute-sponsored-raw requests this thread's gateway has made to the sandbox."""
    return sum(1 for request in get_gateway().transport.received if request.url.path.endswith("/execute-sponsored-raw"))


def refunds(withdrawal_id) -> int:
    return LedgerTransaction.objects.filter(
        kind=TransactionKind.REFUND, reference=f"withdrawal-refund:{withdrawal_id}"
    ).count()


def in_review(api, user, sandbox, settings) -> str:
    """A withdrawal whose first send timed out (before acting), then refused once: in review, with
    the bound lowered to one refusal and no wait."""
    settings.OUTBOX_REVIEW_AFTER_REFUSALS, settings.OUTBOX_REVIEW_AFTER_SECONDS = 1, 0
    chain_deposit(user, 10 * USDC)
    sandbox.inject("send_transfer", "timeout")
    withdrawal_id = withdraw(api, user)
    sandbox.inject("send_transfer", "reject")
    assert retry_due(withdrawal_id) == Status.NEEDS_REVIEW
    return withdrawal_id


def settle(withdrawal_id, staff, outcome="refunded", **extra) -> Withdrawal:
    return services.withdrawal_settle(
        withdrawal_id=withdrawal_id, outcome=outcome, staff=staff, reason="Checked the treasury on chain", **extra
    )


@pytest.mark.django_db
def test_a_send_that_never_acted_and_is_refused_every_time_waits_for_staff_not_for_ever(
    api, alice, olga, sandbox, django_capture_on_commit_callbacks
):
    """The reviewer's reproduction: the first send timed out before reaching Chipi (nothing sent),
    and every re-signing is refused. It was retried for ever, its money in flight, with nothing
    staff could do. Past the bound (OUTBOX_REVIEW_AFTER_*: refusals and time since the send in
    doubt) it waits for staff, never sooner, and is not sent again; staff refund it once."""
    from django.conf import settings

    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "timeout")  # times out BEFORE acting: nothing sent
    sandbox.inject("send_transfer", "reject", times=30)  # then refused for good, every time
    withdrawal_id = withdraw(api, alice)
    first = Withdrawal.objects.get(pk=withdrawal_id).send_attempted_at

    retries = 0
    while Withdrawal.objects.get(pk=withdrawal_id).status == Status.SENDING and retries < 30:
        at = Withdrawal.objects.get(pk=withdrawal_id).next_attempt_at + timedelta(seconds=1)
        status = retry_due(withdrawal_id)
        retries += 1
        row = Withdrawal.objects.get(pk=withdrawal_id)
        in_doubt_long_enough = row.refusals >= settings.OUTBOX_REVIEW_AFTER_REFUSALS and at - first >= timedelta(
            seconds=settings.OUTBOX_REVIEW_AFTER_SECONDS
        )
        assert (status == Status.NEEDS_REVIEW) == in_doubt_long_enough, (retries, row.refusals, at - first)

    row = Withdrawal.objects.get(pk=withdrawal_id)
    assert row.status == Status.NEEDS_REVIEW
    assert retries < 15  # backed off: refusals count in the backoff, not only executions
    # One execution (the timed-out one); the refusals executed nothing.
    assert (row.attempts, row.refusals, row.send_attempted_at) == (1, retries, first)
    assert "check the chain" in row.last_error
    assert (balance_of(alice), system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT)) == (6 * USDC, 4 * USDC)
    assert sent_on_chain() == 0
    shown = api(alice).get("/api/v1/wallet/withdrawals").json()
    assert [item["status"] for item in shown["withdrawals"]] == ["needs_review"]
    overview = api(olga).get("/api/v1/dashboard/admin/overview").json()
    assert (overview["outbox"]["needsReview"], overview["outbox"]["backlog"]) == (1, 0)

    # Out of the outbox: never due again, never sent again.
    asked = executions_asked()
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        assert services.withdrawals_due() == []
        assert services.withdrawal_send(withdrawal_id=withdrawal_id) == Status.NEEDS_REVIEW
        with django_capture_on_commit_callbacks(execute=True):
            settled = settle(withdrawal_id, olga)
        with pytest.raises(Conflict):
            settle(withdrawal_id, olga)  # settled once
        assert services.withdrawal_send(withdrawal_id=withdrawal_id) == Status.FAILED
    assert executions_asked() == asked

    assert settled.status == Status.FAILED and "Settled by staff (olga@example.com) as refunded" in settled.last_error
    assert refunds(withdrawal_id) == 1
    refund = LedgerTransaction.objects.get(reference=f"withdrawal-refund:{withdrawal_id}")
    assert refund.created_by == olga
    assert (balance_of(alice), system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT)) == (10 * USDC, 0)
    assert Notification.objects.filter(user=alice, title="Withdrawal failed").count() == 1
    assert sent_on_chain() == 0


@pytest.mark.django_db
def test_a_stale_look_up_is_still_waited_for_within_the_bound(api, alice, sandbox):
    """The ambiguity is real for a while: a send whose answer was lost that Chipi's records do not
    show yet is refused its used nonce; it stays in flight, and is found sent when they show it."""
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "lost_response")  # it went out; the answer was lost
    withdrawal_id = withdraw(api, alice)
    sandbox.inject("transaction_list", "stale", times=3)

    statuses = [retry_due(withdrawal_id) for _ in range(4)]

    assert statuses == [Status.SENDING] * 3 + [Status.SENT]
    row = Withdrawal.objects.get(pk=withdrawal_id)
    assert (row.attempts, sent_on_chain(), balance_of(alice)) == (1, 1, 6 * USDC)
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0


@pytest.mark.django_db
def test_staff_settle_a_withdrawal_in_review_as_sent_with_its_hash(
    api, alice, olga, sandbox, settings, django_capture_on_commit_callbacks
):
    withdrawal_id = in_review(api, alice, sandbox, settings)

    with django_capture_on_commit_callbacks(execute=True):
        settled = settle(withdrawal_id, olga, outcome="sent", tx_hash="0x" + "5E" * 31)  # any spelling of it

    assert (settled.status, settled.tx_hash) == (Status.SENT, HASH)
    assert settled.sent_at is not None and settled.confirmed_at is not None  # final: staff saw it on chain
    assert "as sent: Checked the treasury on chain" in settled.last_error
    assert (balance_of(alice), system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT)) == (6 * USDC, 0)
    assert system_balance(SystemAccount.CUSTODY) == -6 * USDC
    sent = LedgerTransaction.objects.get(reference=f"withdrawal-sent:{withdrawal_id}")
    assert (sent.created_by, sent.metadata["txHash"]) == (olga, HASH)
    assert refunds(withdrawal_id) == 0
    assert Notification.objects.filter(user=alice, title="Withdrawal sent").count() == 1
    # Nothing automatic reads it again (confirmed), nor sends it.
    assert services.sends_confirm().pending == 0
    assert services.withdrawal_send(withdrawal_id=withdrawal_id) == Status.SENT
    with pytest.raises(Conflict):
        settle(withdrawal_id, olga)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("outcome", "tx_hash", "reason", "field"),
    [
        ("sent", "", "Found it", "tx_hash"),
        ("sent", "not a hash", "Found it", "tx_hash"),
        ("refunded", HASH, "Not on chain", "tx_hash"),
        ("refunded", "", "   ", "reason"),
        ("lost", "", "Gone", "outcome"),
    ],
)
def test_a_settlement_staff_got_wrong_is_refused_and_moves_nothing(
    api, alice, olga, sandbox, settings, outcome, tx_hash, reason, field
):
    withdrawal_id = in_review(api, alice, sandbox, settings)

    with pytest.raises(ValidationError) as refused, time_machine.travel(timezone.now() + PAST_ITS_LIFE):
        services.withdrawal_settle(
            withdrawal_id=withdrawal_id, outcome=outcome, tx_hash=tx_hash, reason=reason, staff=olga
        )

    assert field in refused.value.detail
    assert Withdrawal.objects.get(pk=withdrawal_id).status == Status.NEEDS_REVIEW
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 4 * USDC


@pytest.mark.django_db
def test_a_hash_that_settles_another_withdrawal_is_refused(api, alice, olga, sandbox, settings):
    chain_deposit(alice, 10 * USDC)
    other = Withdrawal.objects.get(pk=withdraw(api, alice, amount="1"))
    assert other.status == Status.SENT
    withdrawal_id = in_review(api, alice, sandbox, settings)

    with pytest.raises(ValidationError) as refused:
        settle(withdrawal_id, olga, outcome="sent", tx_hash=other.tx_hash)

    assert "another withdrawal" in str(refused.value.detail["tx_hash"])
    assert Withdrawal.objects.get(pk=withdrawal_id).status == Status.NEEDS_REVIEW


@pytest.mark.django_db
def test_a_refund_waits_until_the_send_in_doubt_can_no_longer_execute(api, alice, olga, sandbox, settings):
    """With the bound set below a signed transfer's life, the row is in review while its send in
    doubt could still go out: refunded then, it could be paid twice."""
    withdrawal_id = in_review(api, alice, sandbox, settings)
    attempted = Withdrawal.objects.get(pk=withdrawal_id).send_attempted_at

    with pytest.raises(Conflict) as early:
        settle(withdrawal_id, olga)
    assert early.value.detail["code"] == "may_still_execute"
    assert balance_of(alice) == 6 * USDC

    with time_machine.travel(attempted + PAST_ITS_LIFE):
        assert settle(withdrawal_id, olga).status == Status.FAILED
    assert (balance_of(alice), refunds(withdrawal_id)) == (10 * USDC, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("fault", ["timeout", None])
def test_only_a_withdrawal_in_review_is_settled(api, alice, olga, sandbox, fault):
    chain_deposit(alice, 10 * USDC)
    if fault:
        sandbox.inject("send_transfer", fault)
    withdrawal_id = withdraw(api, alice)
    status = Withdrawal.objects.get(pk=withdrawal_id).status
    assert status == (Status.SENDING if fault else Status.SENT)

    with pytest.raises(Conflict) as refused, time_machine.travel(timezone.now() + PAST_ITS_LIFE):
        settle(withdrawal_id, olga)

    assert refused.value.detail["code"] == "not_in_review"
    assert Withdrawal.objects.get(pk=withdrawal_id).status == status
    assert (balance_of(alice), refunds(withdrawal_id)) == (6 * USDC, 0)


@pytest.mark.django_db
def test_an_equal_withdrawal_waits_while_one_is_in_review(api, alice, olga, sandbox, settings):
    """Staff have not said whether the one in review left: an equal one sent meanwhile, then in doubt
    itself, could take its transfer for its own (one transfer for two debits)."""
    withdrawal_id = in_review(api, alice, sandbox, settings)
    second = withdraw(api, alice)

    assert Withdrawal.objects.get(pk=second).status == Status.PENDING
    with time_machine.travel(timezone.now() + PAST_ITS_LIFE):
        settle(withdrawal_id, olga)
        assert services.withdrawal_send(withdrawal_id=second) == Status.SENT
    assert sent_on_chain() == 1


@pytest.mark.django_db
def test_a_sweep_in_doubt_refused_past_the_bound_fails_and_custody_still_adds_up(alice, sandbox, settings):
    """The same rule for a sweep: no user's money waits on it (both wallets are custody), so it
    fails for staff instead of being retried for ever; the reconciliation counts its deposit wallet."""
    from wallets.services import ChainDeposit, deposit_credit, sweep_send, wallet_open

    settings.OUTBOX_REVIEW_AFTER_REFUSALS, settings.OUTBOX_REVIEW_AFTER_SECONDS = 2, 600
    paid = sandbox.receive_payment(to_address=wallet_open(user=alice), token="USDC", amount=5 * USDC)
    deposit_credit(user=alice, asset=services.ledger.asset_get("USDC"), deposit=ChainDeposit(paid), source="api")
    sweep = Sweep.objects.get(deposit_tx_hash=paid.tx_hash)
    sandbox.inject("execute", "timeout")
    assert sweep_send(sweep_id=sweep.pk) == SweepStatus.PENDING
    sandbox.inject("execute", "reject", times=10)

    statuses, times = [], []
    while len(statuses) < 10 and (row := Sweep.objects.get(pk=sweep.pk)).status == SweepStatus.PENDING:
        times.append(row.next_attempt_at + timedelta(seconds=1))
        with time_machine.travel(times[-1]):
            statuses.append(sweep_send(sweep_id=sweep.pk))

    assert statuses[-1] == SweepStatus.FAILED and set(statuses[:-1]) == {SweepStatus.PENDING}
    row = Sweep.objects.get(pk=sweep.pk)
    assert (row.attempts, row.refusals) == (1, len(statuses))
    assert times[-2] - row.send_attempted_at < timedelta(minutes=10) <= times[-1] - row.send_attempted_at
    assert [report.difference for report in services.reconcile() if report.asset.code == "USDC"] == [0]


# --- The race: staff settle while a worker holds the row ------------------------------------------


@money_db
@pytest.mark.parametrize("first", ["worker", "staff"])
def test_a_worker_that_took_the_row_before_its_review_never_sends_it_after_staff_settled_it(
    api, alice, olga, sandbox, settings, monkeypatch, first
):
    """A worker claims the row while it is being sent and stalls in its look-up past its claim;
    another takes it over, is refused, and the row goes to review (its refusal puts back the mark
    the first read). Staff settle it (refunded) while the first holds the row's lock to mark its
    send (first="worker"), or the first asks for that lock while staff hold it (first="staff"):
    either way the first finds the row out of the outbox and sends nothing. Going by its mark alone
    it signed and sent money staff had given back."""
    settings.OUTBOX_REVIEW_AFTER_REFUSALS, settings.OUTBOX_REVIEW_AFTER_SECONDS = 1, 0
    chain_deposit(alice, 10 * USDC)
    sandbox.inject("send_transfer", "timeout")
    withdrawal_id = withdraw(api, alice)
    attempted = Withdrawal.objects.get(pk=withdrawal_id).send_attempted_at
    looking, may_look, locked, may_go = (threading.Event() for _ in range(4))
    stalls, pids = [True], {"worker": [], "staff": []}
    find_sent = services._find_sent

    def stalling_look_up(*args, **kwargs):
        if stalls:  # the first look-up only: the stalled worker's
            stalls.pop()
            looking.set()
            may_look.wait(30)
        return find_sent(*args, **kwargs)

    def pause_once_locked(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "FOR UPDATE" in sql and "wallets_withdrawal" in sql and not locked.is_set():
            locked.set()
            may_go.wait(30)
        return result

    def holding(who: str):
        return connection.execute_wrapper(pause_once_locked) if first == who else nullcontext()

    @in_thread
    def stalled_worker():
        pids["worker"].append(backend_pid())
        with holding("worker"):
            return services.withdrawal_send(withdrawal_id=withdrawal_id)

    @in_thread
    def staff():
        pids["staff"].append(backend_pid())
        with holding("staff"):
            return settle(withdrawal_id, olga).status

    monkeypatch.setattr(services, "_find_sent", stalling_look_up)
    with time_machine.travel(attempted + PAST_ITS_LIFE), ThreadPoolExecutor(max_workers=2) as pool:
        try:
            worker = pool.submit(stalled_worker)
            assert looking.wait(30)
            Withdrawal.objects.filter(pk=withdrawal_id).update(claimed_until=timezone.now() - timedelta(seconds=1))
            sandbox.inject("send_transfer", "reject")
            assert services.withdrawal_send(withdrawal_id=withdrawal_id) == Status.NEEDS_REVIEW  # took it over
            if first == "worker":
                may_look.set()
                assert locked.wait(30)  # the worker holds the row, about to mark its send
                staffing = pool.submit(staff)
                wait_until_blocked_on_a_lock(pids["staff"])
            else:
                staffing = pool.submit(staff)
                assert locked.wait(30)  # staff hold the row, settling it
                may_look.set()
                wait_until_blocked_on_a_lock(pids["worker"])
        finally:
            may_look.set()
            may_go.set()
        assert staffing.result() == Status.FAILED
        assert worker.result() != Status.SENT

    treasury = services.treasury_wallet().address
    assert sent_on_chain() == 0
    assert not SandboxUsedNonce.objects.filter(address=treasury).exists()  # never signed and executed
    row = Withdrawal.objects.get(pk=withdrawal_id)
    assert (row.status, row.attempts) == (Status.FAILED, 1)
    assert (balance_of(alice), refunds(withdrawal_id)) == (10 * USDC, 1)
    assert system_balance(SystemAccount.WITHDRAWALS_IN_FLIGHT) == 0


# --- The admin's action ---------------------------------------------------------------------------


def _logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_staff_settle_a_withdrawal_in_review_from_the_admin(api, alice, olga, sandbox, settings):
    withdrawal_id = in_review(api, alice, sandbox, settings)
    client = _logged_in(olga)
    chosen = {"action": "settle", "_selected_action": [withdrawal_id]}

    listing = client.get(f"{CHANGELIST}?status__exact=needs_review").content.decode()
    assert withdrawal_id in listing and "in doubt: check the chain" in listing
    form = client.post(CHANGELIST, chosen)
    assert form.status_code == 200 and "Settle a withdrawal in review" in form.content.decode()
    wrong = client.post(CHANGELIST, {**chosen, "settle": "Settle", "outcome": "sent", "reason": "Found it"})
    assert "hash on chain" in wrong.content.decode()
    assert Withdrawal.objects.get(pk=withdrawal_id).status == Status.NEEDS_REVIEW

    done = client.post(
        CHANGELIST,
        {**chosen, "settle": "Settle", "outcome": "sent", "tx_hash": HASH, "reason": "Found it"},
        follow=True,
    )

    assert f"Withdrawal {withdrawal_id} settled: sent." in done.content.decode()
    assert (Withdrawal.objects.get(pk=withdrawal_id).status, balance_of(alice)) == (Status.SENT, 6 * USDC)
    again = client.post(CHANGELIST, chosen, follow=True)
    assert "Only a withdrawal in review is settled here." in again.content.decode()


@pytest.mark.django_db
def test_settling_in_the_admin_asks_its_own_permission(api, alice, stan, sandbox, settings):
    withdrawal_id = in_review(api, alice, sandbox, settings)
    form = {
        "action": "settle",
        "_selected_action": [withdrawal_id],
        "settle": "Settle",
        "outcome": "sent",
        "tx_hash": HASH,
        "reason": "Found it",
    }
    viewer = grant(stan, "wallets.view_withdrawal")

    listing = _logged_in(viewer).get(CHANGELIST).content.decode()
    assert withdrawal_id in listing and "Settle the selected withdrawal" not in listing
    _logged_in(viewer).post(CHANGELIST, form)
    assert Withdrawal.objects.get(pk=withdrawal_id).status == Status.NEEDS_REVIEW

    settler = grant(stan, "wallets.view_withdrawal", "wallets.settle_withdrawal")
    _logged_in(settler).post(CHANGELIST, form)
    assert Withdrawal.objects.get(pk=withdrawal_id).status == Status.SENT


def test_a_signed_transfer_lives_as_long_as_the_sdk_signs_it_for():
    """The refund's wait (and the review's bound) rest on it: a send in doubt older than this can no
    longer execute."""
    from chipi_sdk.shhh.oe import MAX_OE_VALIDITY_WINDOW_SECONDS
    from django.conf import settings

    assert timedelta(seconds=MAX_OE_VALIDITY_WINDOW_SECONDS) == services.SIGNED_TRANSFER_LIFETIME
    lifetime = services.SIGNED_TRANSFER_LIFETIME + services.CLOCK_SKEW
    assert timedelta(seconds=settings.OUTBOX_REVIEW_AFTER_SECONDS) >= lifetime  # the default
