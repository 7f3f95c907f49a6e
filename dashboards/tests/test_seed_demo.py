"""seed_demo: people, services in every category, months of real ledger history; idempotent."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db.models.functions import TruncMonth

from accounts.models import User
from consultations import services as consultations
from consultations.models import Consultation
from dashboards import demo
from marketplace.models import Category, Service
from streaming.models import SessionKind, SessionStatus, StreamingSession
from wallets.models import Account, LedgerTransaction, TransactionKind, Withdrawal
from wallets.services import reconcile

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def counts() -> tuple[int, int, int, int]:
    return (
        User.objects.count(),
        Service.objects.count(),
        StreamingSession.objects.count(),
        LedgerTransaction.objects.count(),
    )


def outcome() -> dict:
    """What the demo platform amounts to: for each person (verified; sessions, running ones; what the
    ledger holds for them; withdrawals), every consultation thread's status, custody against the chain."""
    people = {
        user.email: (
            user.is_verified,
            StreamingSession.objects.filter(user=user).count(),
            StreamingSession.objects.filter(user=user, status=SessionStatus.ACTIVE).count(),
            sum(Account.objects.filter(owner=user).values_list("balance", flat=True)),
            Withdrawal.objects.filter(user=user).count(),
        )
        for user in User.objects.order_by("email")
    }
    threads = sorted(Consultation.objects.values_list("status", flat=True))
    return {"people": people, "threads": threads, "custody differences": [r.difference for r in reconcile()]}


# seed_demo --users 2 --vendors 1 at the dashboards' frozen clock (conftest.now), run once without a
# stop: (verified, sessions, running, balance in USDC minor units, withdrawals).
SEEDED = {
    "people": {
        f"staff@{demo.DOMAIN}": (True, 0, 0, 0, 0),
        f"user1@{demo.DOMAIN}": (True, 15, 0, 280_062_000, 0),
        f"user2@{demo.DOMAIN}": (True, 15, 0, 262_174_000, 0),
        f"vendor1@{demo.DOMAIN}": (True, 0, 0, 25_993_800, 1),
    },
    "threads": ["completed", "completed", "completed"],
    "custody differences": [0, 0, 0, 0],  # an asset each
}


def test_a_living_platform_with_credentials(sandbox):
    # Seeded stories (a random.Random per email) on a fixed calendar: what they make is known.
    with time_machine.travel(datetime(2025, 6, 15, 12, tzinfo=UTC)):
        out = seed("--users", "3", "--vendors", "2")

    assert User.objects.filter(email=demo.STAFF_EMAIL, is_staff=True, is_superuser=True).exists()
    assert User.objects.filter(email__endswith=demo.DOMAIN, role="vendor").count() == 2
    assert User.objects.filter(email__endswith=demo.DOMAIN, role="user").count() == 3
    for email in (demo.STAFF_EMAIL, f"vendor2@{demo.DOMAIN}", f"user3@{demo.DOMAIN}"):
        assert f"{email}" in out
        assert User.objects.get(email=email).check_password(demo.PASSWORD)
    assert demo.PASSWORD in out
    top_level = set(Category.objects.filter(parent__isnull=True).values_list("name", flat=True))
    assert set(Service.objects.values_list("category__name", flat=True)) == top_level
    sessions = StreamingSession.objects.all()
    assert sessions.count() == 43
    calls = sessions.filter(kind=SessionKind.CONSULTATION)
    assert calls.exists()
    # Each call went through a consultation thread: asked, accepted, answered, completed.
    from consultations.models import Consultation, ConsultationCall

    assert ConsultationCall.objects.filter(session__in=calls).count() == calls.count()
    assert set(Consultation.objects.values_list("status", flat=True)) == {"completed"}
    assert all(c.messages.count() == 2 for c in Consultation.objects.all())
    assert not sessions.filter(status="active").exists()
    charges = LedgerTransaction.objects.filter(kind=TransactionKind.CHARGE)
    months = charges.annotate(month=TruncMonth("created_at")).values("month").distinct().count()
    assert months == 6  # January to June 2025: the history spans months, so every chart has points
    # Paid through the sandbox chain: custody on chain equals what the ledger says.
    assert all(report.difference == 0 for report in reconcile())


def test_running_again_changes_nothing_and_more_users_adds_only_them(sandbox):
    seed("--users", "2", "--vendors", "1")
    assert outcome() == SEEDED
    before = counts()

    again = seed("--users", "2", "--vendors", "1")
    assert counts() == before
    assert "nothing changed" in again
    # make run's: the demo's people are no users of the database's own.
    again = seed("--if-empty", "--users", "2", "--vendors", "1")
    assert outcome() == SEEDED
    assert "nothing changed" in again
    assert f"user    user2@{demo.DOMAIN}" in again
    # Another --seed (or --vendors) draws other stories: the ones written are left as they are.
    again = seed("--users", "2", "--vendors", "1", "--seed", "8")
    assert outcome() == SEEDED
    assert "nothing changed" in again

    seed("--users", "3", "--vendors", "1")
    assert counts()[0] == before[0] + 1
    assert counts()[2] > before[2]


def ctrl_c(monkeypatch, owner, name: str, call: int) -> None:
    """A Ctrl-C (KeyboardInterrupt) as the `call`th call of owner.name is about to run."""
    real, calls = getattr(owner, name), itertools.count(1)

    def step(*args, **kwargs):
        if next(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, step)


# Where a Ctrl-C leaves the first `make run`'s seed, one after the other, each run starting from
# what the last one left: a person made but not finished; a payment on chain not credited; a session
# running between two sweeps; a consultation call over and its thread still open; the vendors' money
# not taken out.
STOPS = [
    (demo, "notification_preferences_update", 2),
    (demo, "deposit_credit", 1),
    (demo, "sweep", 3),
    (consultations, "consultation_status_change", 2),
    (demo, "withdrawal_request", 1),
]


def test_if_empty_completes_what_an_interrupted_seed_left_and_prints_the_credentials(sandbox, monkeypatch):
    for owner, name, call in STOPS:
        with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
            ctrl_c(patched, owner, name, call)
            seed("--if-empty", "--users", "2", "--vendors", "1")

    out = seed("--if-empty", "--users", "2", "--vendors", "1")

    assert outcome() == SEEDED  # as if never stopped
    assert "completing what an interrupted run left" in out
    assert f"admin   {demo.STAFF_EMAIL}" in out
    assert f"user    user2@{demo.DOMAIN}" in out
    assert demo.PASSWORD in out


def test_if_empty_leaves_a_database_with_users_alone(alice):
    out = seed("--if-empty")

    assert "no demo data" in out
    assert "Sign in" not in out  # no demo people to sign in as
    assert User.objects.count() == 1


def test_refuses_a_real_chipi(settings):
    settings.CHIPI_API_KEY = "pk_live_something"

    with pytest.raises(Exception, match="sandbox"):
        seed("--users", "1")


def test_refuses_to_run_where_demo_data_was_not_chosen(settings):
    # Its accounts share a published password, one of them a superuser: never in production.
    settings.DEMO_DATA_ALLOWED = False

    with pytest.raises(Exception, match="published password"):
        seed("--users", "1")

    assert User.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_billing_sweep_running_beside_the_seed_never_sees_a_story_half_written(sandbox, monkeypatch):
    """make run's server sweeps on its own timer, at the real time, while seed_demo writes sessions
    months in the past: it saw each story's session running (its last sign of life months ago),
    stopped it as idle, and the seed's next step raised "This session has ended" (review r16)."""
    import threading

    from django.db import connection

    from streaming.sweep import sweep

    real_now = datetime.now(UTC)
    real_sweep, seen = demo.sweep, []

    def a_sweep_beside(*args, **kwargs):
        result = real_sweep(*args, **kwargs)

        def server_sweep():  # another process's view: its own connection, the real time
            try:
                seen.append(sweep(now=real_now).sessions)
            finally:
                connection.close()

        beside = threading.Thread(target=server_sweep)
        beside.start()
        beside.join()
        return result

    monkeypatch.setattr(demo, "sweep", a_sweep_beside)

    seed("--users", "1", "--vendors", "1")

    assert seen and set(seen) == {0}  # it never saw a running session
    assert StreamingSession.objects.count() > 3
    assert not StreamingSession.objects.filter(status=SessionStatus.ACTIVE).exists()
