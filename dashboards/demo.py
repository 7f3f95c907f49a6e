"""Demo data for a newcomer's first `make run`: people, services in every category, and months of
real ledger history behind them, so that every dashboard and chart has something to show.

Everything goes through the apps' own write paths — accounts.services.user_create,
marketplace.services.service_create, wallets.services.deposit_credit (paid through the Chipi
sandbox, so custody reconciles), streaming.services.session_start / session_stop and the billing
sweep — at past instants: each step runs with the clock moved there (time_machine), so deposits,
charges, sessions and notifications carry the dates they would have had.

Idempotent: people are found by their email, and a person's story is written only when they are
created, so running again writes nothing and a larger --users adds only the newcomers. (A story
cannot be one database transaction: payments on the sandbox chain, like a real chain's, commit on
their own.)
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import user_create
from consultations import services as consultations
from marketplace.models import Category, Service
from marketplace.services import service_create
from notifications.models import NotificationType
from notifications.services import notification_preferences_update
from streaming import pricing
from streaming import services as streaming
from streaming.models import SessionKind
from streaming.sweep import sweep
from wallets import ledger
from wallets.services import ChainDeposit, deposit_credit, wallet_open, withdrawal_request

DOMAIN = "demo.paygo.test"
PASSWORD = "paygo-demo-2026"
STAFF_EMAIL = f"staff@{DOMAIN}"
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

    @property
    def created(self) -> bool:
        return bool(self.created_users)


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
        if not User.objects.filter(email=email).exists():
            rng = random.Random(f"{seed}:{email}")  # noqa: S311 (demo stories, not secrets)
            user = _person(report, email, f"Demo User {n}", Role.USER, now - timedelta(days=rng.randint(120, 180)))
            report.sessions += _story(user, offers, rng, now)
        if progress:
            progress(1)
    if report.created:
        _withdrawals(vendor_people)
    return report


def credentials(*, users: int, vendors: int) -> list[tuple[str, str, str]]:
    """(role, email, password) of the demo people that exist."""
    emails = [STAFF_EMAIL] + [f"vendor{n}@{DOMAIN}" for n in range(1, vendors + 1)]
    emails += [f"user{n}@{DOMAIN}" for n in range(1, users + 1)]
    found = dict(User.objects.filter(email__in=emails).values_list("email", "role"))
    return [(found[email], email, PASSWORD) for email in emails if email in found]


def _person(report: Report, email: str, name: str, role: str, joined: datetime) -> User:
    existing = User.objects.filter(email=email).first()
    if existing:
        return existing
    with at(joined):
        user = user_create(email=email, password=PASSWORD, name=name, role=role)
        user.is_verified = True
        user.save(update_fields=["is_verified"])
        wallet_open(user=user)
        # Demo addresses receive nothing: in-app notifications only.
        notification_preferences_update(
            user=user, changes={kind: {"email": False, "sms": False} for kind in NotificationType.values}
        )
    report.created_users.append(user)
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


def _deposit(user: User, amount: int) -> None:
    from wallets.chipi.sandbox import get_sandbox

    paid = get_sandbox().receive_payment(to_address=wallet_open(user=user), token="USDC", amount=amount)
    deposit_credit(user=user, asset=ledger.asset_get("USDC"), deposit=ChainDeposit(paid), source="demo")


def _duration_seconds(offer: Offer, rng: random.Random) -> int:
    if offer.unit == "per_hour":
        return rng.randint(20, 90) * 60
    if offer.unit == "per_second":
        return rng.randint(5, 40) * 60
    if offer.consultation:
        return rng.randint(10, 45) * 60
    return rng.randint(3, 50) * 60


def _story(user: User, offers: list[tuple[Service, Offer]], rng: random.Random, now: datetime) -> int:
    """A user's months on the platform: a first deposit, sessions every few days, top-ups."""
    joined = user.date_joined
    with at(joined + timedelta(minutes=5)):
        _deposit(user, rng.choice((150, 200, 300, 500)) * USDC)
    favourites = rng.sample(offers, k=min(len(offers), rng.randint(3, 6)))
    t = joined + timedelta(hours=rng.randint(2, 48))
    sessions = 0
    while t < now - timedelta(hours=3):
        service, offer = rng.choice(favourites if rng.random() < 0.8 else offers)
        seconds = _duration_seconds(offer, rng)
        if t + timedelta(seconds=seconds) >= now - timedelta(hours=1):
            break
        if ledger.account_for_user(user, ledger.asset_get("USDC")).available < 60 * USDC:
            with at(t - timedelta(minutes=10)):
                _deposit(user, rng.choice((100, 200)) * USDC)
        _session(user, service, offer, t, seconds, rng)
        sessions += 1
        t += timedelta(seconds=seconds) + timedelta(hours=rng.randint(24, 24 * 18))
    return sessions


def _session(user: User, service: Service, offer: Offer, start: datetime, seconds: int, rng: random.Random) -> None:
    consultation = None
    if offer.consultation:
        # A consultation thread: asked, accepted, talked about, then a paid call through it.
        with at(start - timedelta(hours=2)):
            consultation, _ = consultations.consultation_create(
                user=user,
                vendor_id=service.vendor_id,
                service_id=service.pk,
                initial_message=rng.choice(DEMO_QUESTIONS),
            )
        with at(start - timedelta(hours=1)):
            consultations.consultation_status_change(consultation=consultation, actor=service.vendor, status="accepted")
            consultations.message_send(consultation=consultation, sender=service.vendor, body=rng.choice(DEMO_ANSWERS))
        with at(start):
            session = consultations.consultation_call_start(consultation=consultation, actor=user)
    else:
        with at(start):
            session = streaming.session_start(user=user, service=service, kind=SessionKind.STREAM, now=start)
    # A few sweeps along the way (after a heartbeat each), so that sessions have charge timelines,
    # and the user's client there throughout: a heartbeat within every idle timeout (a session
    # silent for SESSION_IDLE_SECONDS ends at that instant, whoever stops it later).
    checkpoints = sorted(rng.sample(range(60, seconds, 60), k=min(2, max(0, seconds // 60 - 1))))
    beat = settings.SESSION_IDLE_SECONDS
    for offset in sorted(set(range(beat, seconds, beat)) | set(checkpoints)):
        instant = start + timedelta(seconds=offset)
        if offset not in checkpoints:
            streaming.session_heartbeat(session_id=session.pk, now=instant)
            continue
        with at(instant):
            if pricing.is_usage_unit(offer.unit):
                quantity = rng.randint(1, 40) * (10**8 if offer.unit == "per_gb" else 1)
                streaming.usage_report(session=session, event_id=f"demo-{offset}", quantity=quantity)
            streaming.session_heartbeat(session_id=session.pk, now=instant)
            sweep(now=instant)
    end = start + timedelta(seconds=seconds)
    with at(end):
        if consultation is None:
            streaming.session_stop(session=session, reason="user", now=end)
        else:
            consultations.consultation_call_stop(consultation=consultation, actor=user)
            consultations.consultation_status_change(
                consultation=consultation, actor=service.vendor, status="completed"
            )


DEMO_QUESTIONS = (
    "Could you look at my setup before the launch next week?",
    "I'd like a second opinion on the numbers we discussed.",
    "Can we go through the plan together on a call?",
)
DEMO_ANSWERS = (
    "Happy to. Start a call whenever you are ready.",
    "Sure, I have time today. Call me when it suits you.",
)


def _withdrawals(vendors: list[User]) -> None:
    """Each vendor takes part of their earnings out (through the outbox, now)."""
    usdc = ledger.asset_get("USDC")
    for vendor in vendors:
        available = ledger.account_for_user(vendor, usdc).available
        if available >= 10 * USDC:
            address = "0x" + f"{vendor.pk:064x}"
            withdrawal_request(user=vendor, asset=usdc, amount=available // 2, to_address=address)
