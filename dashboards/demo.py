"""Demo data for a newcomer's first `make run`: people, services in every category, and months of
real ledger history behind them, so that every dashboard and chart has something to show.

Everything goes through the apps' own write paths — accounts.services.user_create,
marketplace.services.service_create, wallets.services.deposit_credit (paid through the Chipi
sandbox, so custody reconciles), streaming.services.session_start / session_stop and the billing
sweep — at past instants: each step runs with the clock moved there (time_machine), so deposits,
charges, sessions and notifications carry the dates they would have had.

Idempotent, and so resumable: a story cannot be one database transaction (payments on the sandbox
chain, like a real chain's, commit on their own), so a seed interrupted (Ctrl-C during the first
`make run`) leaves people and stories half-made. Each person's story is replayed on every run from
the same draws (a random.Random per email) up to the same end (their join date says when it was
first written); every step is found by its instant and skipped when written, so the first missing
one is where the interrupted seed stopped, and the story goes on from there as it would have. Running
again writes nothing; a larger --users adds only the newcomers; a story written with another --seed
or --vendors (other draws) is left as it is.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import user_create
from consultations import services as consultations
from consultations.models import Consultation, ConsultationCall, ConsultationStatus
from marketplace.models import Category, Service
from marketplace.services import service_create
from notifications.models import NotificationType
from notifications.services import notification_preferences_update
from streaming import pricing
from streaming import services as streaming
from streaming.models import SessionKind, SessionStatus, StreamingSession
from streaming.sweep import sweep
from wallets import ledger
from wallets.chipi.interface import ChainTransaction
from wallets.models import LedgerTransaction, Withdrawal
from wallets.services import ChainDeposit, deposit_credit, wallet_open, withdrawal_request

DOMAIN = "demo.paygo.test"
PASSWORD = "paygo-demo-2026"
STAFF_EMAIL = f"staff@{DOMAIN}"
# Every address seed() gives its people (staff@, vendorN@, userN@), and no other.
DEMO_EMAIL = rf"^(staff|vendor[1-9][0-9]*|user[1-9][0-9]*)@{re.escape(DOMAIN)}$"
USDC = 1_000_000
HISTORY_DAYS = 180


@dataclass(frozen=True)
class Offer:
    category: str
    subcategory: str
    name: str
    type: str
    unit: str
    rate: int  # USDC minor units per unit
    consultation: bool = False


# At least one service in every category; the rates make a dozen sessions cost tens of USDC.
CATALOGUE = (
    Offer("Time-Based", "Live Streaming", "Live Jazz Stream", "video", "per_minute", 50_000),
    Offer("Time-Based", "Pay Per Hour", "Cloud GPU Workstation", "other", "per_hour", 2_400_000),
    Offer("Time-Based", "Pay Per Session", "Morning Yoga Class", "video", "per_session", 3_000_000),
    Offer("Usage-Based", "API Calls & Compute", "Geocoding API", "data", "per_request", 2_000),
    Offer("Usage-Based", "Storage Services", "Cold Storage", "data", "per_gb", 20_000),
    Offer("Usage-Based", "Processing Services", "Video Transcoding", "video", "per_minute", 30_000),
    Offer("Digital Products & Content", "Digital Downloads", "Stock Photo Pack", "other", "per_session", 1_500_000),
    Offer("Digital Products & Content", "SaaS Features", "Pro Editor", "other", "per_minute", 20_000),
    Offer("E-commerce & Marketplace", "Transaction-Based", "Checkout Protection", "other", "per_transaction", 150_000),
    Offer("Data & Analytics", "Data Services", "Market Data Feed", "data", "per_second", 200),
    Offer("Specialized Services", "Professional Services", "Tax Advice Call", "audio", "per_minute", 400_000, True),
    Offer("Specialized Services", "Creative Services", "Logo Review Call", "video", "per_hour", 30_000_000, True),
    Offer("Specialized Services", "Technical Services", "DevOps Office Hours", "audio", "per_minute", 300_000, True),
)


@dataclass
class Report:
    created_users: list[User] = field(default_factory=list)
    sessions: int = 0
    services: int = 0
    resumed: int = 0  # steps an interrupted seed left undone (a person, a session, a withdrawal), done now

    @property
    def written(self) -> bool:
        return bool(self.created_users or self.sessions or self.services or self.resumed)


@contextlib.contextmanager
def at(instant: datetime) -> Iterator[None]:
    """Run what follows as if it were `instant` (every timestamp the apps write follows)."""
    # Imported here, when seeding: time_machine imports pytest, and every server process imports
    # this module (the landing page shows the demo's sign-ins) without ever seeding.
    import time_machine

    with time_machine.travel(instant, tick=False):
        yield


def seed(*, users: int, vendors: int, seed: int = 7, progress: Callable[[int], None] | None = None) -> Report:
    """Create what is missing of the demo platform; see the module docstring."""
    if settings.CHIPI_API_KEY:
        raise RuntimeError("Demo data is paid through the Chipi sandbox; unset CHIPI_API_KEY to seed it.")
    now = timezone.now().replace(microsecond=0)
    report = Report()
    start = now - timedelta(days=HISTORY_DAYS + 10)
    # A platform admin, and so a superuser: he holds every permission the admin and the API ask of staff.
    _person(report, STAFF_EMAIL, "Sam Staff", Role.ADMIN, start)
    vendor_people = [
        _person(report, f"vendor{n}@{DOMAIN}", f"Vendor {n}", Role.VENDOR, start) for n in range(1, vendors + 1)
    ]
    offers = _services(report, vendor_people, start)
    for n in range(1, users + 1):
        email = f"user{n}@{DOMAIN}"
        rng = random.Random(f"{seed}:{email}")  # noqa: S311 (demo stories, not secrets)
        days = rng.randint(120, 180)
        found = User.objects.filter(email=email).first()
        # A story ends where it ended when first written: its person joined `days` before that.
        end = found.date_joined + timedelta(days=days) if found else now
        user = _person(report, email, f"Demo User {n}", Role.USER, end - timedelta(days=days))
        report.sessions += _story(report, user, offers, rng, end)
        if progress:
            progress(1)
    _withdrawals(report, vendor_people)
    return report


def users_of_its_own_exist() -> bool:
    """Whether the database has users seed() did not make (then `--if-empty` leaves it alone)."""
    return User.objects.exclude(email__regex=DEMO_EMAIL).exists()


def credentials(*, users: int, vendors: int) -> list[tuple[str, str, str]]:
    """(role, email, password) of the demo people that exist."""
    emails = [STAFF_EMAIL] + [f"vendor{n}@{DOMAIN}" for n in range(1, vendors + 1)]
    emails += [f"user{n}@{DOMAIN}" for n in range(1, users + 1)]
    found = dict(User.objects.filter(email__in=emails).values_list("email", "role"))
    return [(found[email], email, PASSWORD) for email in emails if email in found]


def _person(report: Report, email: str, name: str, role: str, joined: datetime) -> User:
    """The person with `email`, made or completed. Made in steps that commit one by one, verified last:
    one found unverified was left half-made by an interrupted seed."""
    user = User.objects.filter(email=email).first()
    if user is not None and user.is_verified:
        return user
    with at(user.date_joined if user else joined):
        if user is None:
            user = user_create(email=email, password=PASSWORD, name=name, role=role)
            report.created_users.append(user)
        else:
            report.resumed += 1
        wallet_open(user=user)
        # Demo addresses receive nothing: in-app notifications only.
        notification_preferences_update(
            user=user, changes={kind: {"email": False, "sms": False} for kind in NotificationType.values}
        )
        user.is_verified = True
        user.save(update_fields=["is_verified"])
    return user


def _services(report: Report, vendors: list[User], when: datetime) -> list[tuple[Service, Offer]]:
    """Each catalogue offer, dealt to the vendors in turn (more vendors than offers: repeats)."""
    listed = []
    for index in range(max(len(CATALOGUE), len(vendors))):
        offer, vendor = CATALOGUE[index % len(CATALOGUE)], vendors[index % len(vendors)]
        service = Service.objects.filter(vendor=vendor, name=offer.name, deleted_at__isnull=True).first()
        if service is None:
            category = Category.objects.get(name=offer.category, parent__isnull=True)
            with at(when):
                service = service_create(
                    vendor=vendor,
                    name=offer.name,
                    category=category,
                    subcategory=Category.objects.get(name=offer.subcategory, parent=category),
                    description=f"Demo: {offer.name.lower()}, billed {offer.unit.replace('_', ' ')}.",
                    type=offer.type,
                    rate=offer.rate,
                    unit=offer.unit,
                    tags=["demo"],
                )
            report.services += 1
        listed.append((service, offer))
    return listed


@dataclass(frozen=True)
class Written:
    """What of a person's story the database holds (read once per story): its steps found by instant."""

    sessions: dict[datetime, StreamingSession]  # by start time
    threads_open: set[int]  # sessions whose consultation is not completed yet
    payments: dict[datetime, ChainTransaction]  # into their wallet, by the instant paid
    credited: set[str]  # the references of those payments credited

    @classmethod
    def of(cls, user: User) -> Written:
        from wallets.chipi.sandbox import get_sandbox

        sessions = {session.start_time: session for session in StreamingSession.objects.filter(user=user)}
        threads_open = set(
            ConsultationCall.objects.filter(session__user=user)
            .exclude(consultation__status=ConsultationStatus.COMPLETED)
            .values_list("session_id", flat=True)
        )
        payments = {paid.created_at: paid for paid in get_sandbox().payments_into(wallet_open(user=user))}
        references = [ChainDeposit(paid).reference for paid in payments.values()]
        credited = set(LedgerTransaction.objects.filter(reference__in=references).values_list("reference", flat=True))
        return cls(sessions, threads_open, payments, credited)

    def finished(self, session: StreamingSession) -> bool:
        return session.status != SessionStatus.ACTIVE and session.pk not in self.threads_open


def _deposit(user: User, amount: int, written: Written) -> None:
    """A payment into the user's wallet, now, credited. One an interrupted seed made now already is
    credited if it was not (once, whoever asks), never paid again."""
    from wallets.chipi.sandbox import get_sandbox

    paid = written.payments.get(timezone.now())  # the clock is at the payment's instant (at())
    if paid is None:
        paid = get_sandbox().receive_payment(to_address=wallet_open(user=user), token="USDC", amount=amount)
    elif ChainDeposit(paid).reference in written.credited:
        return
    deposit_credit(user=user, asset=ledger.asset_get("USDC"), deposit=ChainDeposit(paid), source="demo")


def _duration_seconds(offer: Offer, rng: random.Random) -> int:
    if offer.unit == "per_hour":
        return rng.randint(20, 90) * 60
    if offer.unit == "per_second":
        return rng.randint(5, 40) * 60
    if offer.consultation:
        return rng.randint(10, 45) * 60
    return rng.randint(3, 50) * 60


def _story(report: Report, user: User, offers: list[tuple[Service, Offer]], rng: random.Random, now: datetime) -> int:
    """A user's months on the platform up to `now`: a first deposit, sessions every few days, top-ups.
    Replayed from its draws, writing only what is missing (the module docstring); returns how many
    sessions it started."""
    joined = user.date_joined
    written = Written.of(user)
    with at(joined + timedelta(minutes=5)):
        _deposit(user, rng.choice((150, 200, 300, 500)) * USDC, written)
    favourites = rng.sample(offers, k=min(len(offers), rng.randint(3, 6)))
    t = joined + timedelta(hours=rng.randint(2, 48))
    started = 0
    while t < now - timedelta(hours=3):
        service, offer = rng.choice(favourites if rng.random() < 0.8 else offers)
        seconds = _duration_seconds(offer, rng)
        if t + timedelta(seconds=seconds) >= now - timedelta(hours=1):
            break
        session = written.sessions.get(t)
        if session is None and written.sessions and t < max(written.sessions):
            break  # the story written was drawn otherwise (another --seed, --vendors): left as it is
        top_up = t - timedelta(minutes=10)
        # A top-up before the session: paid already (by this seed, or one interrupted), or due when
        # the session is yet to start and the balance is short (one started needed none).
        if top_up in written.payments or (
            session is None and ledger.account_for_user(user, ledger.asset_get("USDC")).available < 60 * USDC
        ):
            with at(top_up):
                _deposit(user, rng.choice((100, 200)) * USDC, written)
        plan = SessionPlan.draw(offer, seconds, rng)
        if session is None or not written.finished(session):
            if session is None:
                started += 1
            else:
                report.resumed += 1
            # Written whole or not at all: a billing sweep running beside the seed (make run's, at
            # the real time) never sees this session running months ago and stops it as idle.
            with transaction.atomic():
                _session(user, service, offer, t, seconds, plan, session)
        t += timedelta(seconds=seconds) + timedelta(hours=rng.randint(24, 24 * 18))
    return started


@dataclass(frozen=True)
class SessionPlan:
    """A session's draws, taken whether or not it is written yet: the draws after it stay the same."""

    question: str | None  # a consultation's first message, and its vendor's answer
    answer: str | None
    checkpoints: list[int]  # seconds after its start: a sweep at each
    quantities: dict[int, int]  # what a usage-metered session reports at a checkpoint

    @classmethod
    def draw(cls, offer: Offer, seconds: int, rng: random.Random) -> SessionPlan:
        question = rng.choice(DEMO_QUESTIONS) if offer.consultation else None
        answer = rng.choice(DEMO_ANSWERS) if offer.consultation else None
        checkpoints = sorted(rng.sample(range(60, seconds, 60), k=min(2, max(0, seconds // 60 - 1))))
        quantities = {}
        if pricing.is_usage_unit(offer.unit):
            scale = 10**8 if offer.unit == "per_gb" else 1
            quantities = {offset: rng.randint(1, 40) * scale for offset in checkpoints}
        return cls(question, answer, checkpoints, quantities)


def _session(
    user: User,
    service: Service,
    offer: Offer,
    start: datetime,
    seconds: int,
    plan: SessionPlan,
    session: StreamingSession | None,
) -> None:
    """One session of the story, from where an interrupted seed left it (`session`, when started) to
    its end."""
    consultation = None
    if offer.consultation:
        # A consultation thread: asked, accepted, talked about, then a paid call through it.
        asked = start - timedelta(hours=2)
        consultation = Consultation.objects.filter(user=user, service=service, created_at=asked).first()
        if consultation is None:
            with at(asked):
                consultation, _ = consultations.consultation_create(
                    user=user, vendor_id=service.vendor_id, service_id=service.pk, initial_message=plan.question
                )
        with at(start - timedelta(hours=1)):
            if consultation.status == ConsultationStatus.PENDING:
                consultations.consultation_status_change(
                    consultation=consultation, actor=service.vendor, status="accepted"
                )
            if not consultation.messages.filter(sender=service.vendor).exists():
                consultations.message_send(consultation=consultation, sender=service.vendor, body=plan.answer)
        if session is None:
            with at(start):
                session = consultations.consultation_call_start(consultation=consultation, actor=user)
    elif session is None:
        with at(start):
            session = streaming.session_start(user=user, service=service, kind=SessionKind.STREAM, now=start)
    end = start + timedelta(seconds=seconds)
    if session.status == SessionStatus.ACTIVE:
        _session_run(session, start, seconds, plan)
        with at(end):
            if consultation is None:
                streaming.session_stop(session=session, reason="user", now=end)
            else:
                consultations.consultation_call_stop(consultation=consultation, actor=user)
    if consultation is not None:
        consultation.refresh_from_db(fields=["status"])
        if consultation.status != ConsultationStatus.COMPLETED:
            with at(end):
                consultations.consultation_status_change(
                    consultation=consultation, actor=service.vendor, status="completed"
                )


def _session_run(session: StreamingSession, start: datetime, seconds: int, plan: SessionPlan) -> None:
    """A few sweeps along the way (after a heartbeat each), so that sessions have charge timelines,
    and the user's client there throughout: a heartbeat within every idle timeout (a session silent
    for SESSION_IDLE_SECONDS ends at that instant, whoever stops it later). From its last sign of
    life on, when an interrupted seed left it running."""
    beat = settings.SESSION_IDLE_SECONDS
    for offset in sorted(set(range(beat, seconds, beat)) | set(plan.checkpoints)):
        instant = start + timedelta(seconds=offset)
        if instant <= session.last_heartbeat_at:
            continue
        if offset not in plan.checkpoints:
            streaming.session_heartbeat(session_id=session.pk, now=instant)
            continue
        with at(instant):
            if offset in plan.quantities:
                streaming.usage_report(session=session, event_id=f"demo-{offset}", quantity=plan.quantities[offset])
            streaming.session_heartbeat(session_id=session.pk, now=instant)
            sweep(now=instant)


DEMO_QUESTIONS = (
    "Could you look at my setup before the launch next week?",
    "I'd like a second opinion on the numbers we discussed.",
    "Can we go through the plan together on a call?",
)
DEMO_ANSWERS = (
    "Happy to. Start a call whenever you are ready.",
    "Sure, I have time today. Call me when it suits you.",
)


def _withdrawals(report: Report, vendors: list[User]) -> None:
    """Each vendor takes part of their earnings out (through the outbox, now): after this run wrote
    any of the demo, and otherwise one that has not yet (an interrupted seed stopped before it did)."""
    usdc = ledger.asset_get("USDC")
    earned_more = report.written
    for vendor in vendors:
        if not earned_more and Withdrawal.objects.filter(user=vendor).exists():
            continue
        available = ledger.account_for_user(vendor, usdc).available
        if available >= 10 * USDC:
            address = "0x" + f"{vendor.pk:064x}"
            withdrawal_request(user=vendor, asset=usdc, amount=available // 2, to_address=address)
            if not earned_more:
                report.resumed += 1
