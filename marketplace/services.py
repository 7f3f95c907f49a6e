"""The write paths of the marketplace: creating, changing, (de)activating and deleting services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions

from marketplace.models import PRICE_TERMS, Category, Service, ServiceType, ServiceUnit
from paygo.api.amounts import MAX_WHOLE_UNITS, format_minor
from paygo.api.errors import Conflict
from paygo.db import constraint_of
from paygo.tokens import DEFAULT_TOKEN, TOKENS, decimals_of

# Fields a vendor (or staff) may change through service_update.
EDITABLE_FIELDS = (
    "name",
    "description",
    "category",
    "subcategory",
    "type",
    *PRICE_TERMS,
    "metadata",
    "tags",
    "is_active",
)


# What a usage-metered service listed without its bounds declares: a session may cost at most this
# many units, and one usage report may carry at most this many units.
DEFAULT_USAGE_BOUND_UNITS = 100
USAGE_BOUNDS = ("max_session_cost", "max_event_quantity")


def _declare_usage_bounds(service: Service, given: set[str]) -> None:
    """A usage-metered service always declares its bounds (the defaults when not given); no other
    service has any. `given` names the bounds the caller chose, refused on another unit."""
    unit = ServiceUnit(service.unit) if service.unit in ServiceUnit.values else None
    if unit is None or unit.unit_quantity is None:
        for name in USAGE_BOUNDS:
            if name in given and getattr(service, name) is not None:
                raise _invalid(name, "Only usage-metered services (per GB, request, transaction) declare this.")
            setattr(service, name, None)
        return
    if service.max_session_cost is None:
        # Within what the API takes as an amount: the service, read back and sent again, is valid.
        largest = (MAX_WHOLE_UNITS - 1) * 10 ** TOKENS.get(service.token, 0)
        service.max_session_cost = min(int(service.rate) * DEFAULT_USAGE_BOUND_UNITS, largest)
    if service.max_event_quantity is None:
        service.max_event_quantity = unit.unit_quantity * DEFAULT_USAGE_BOUND_UNITS
    if int(service.max_event_quantity) <= 0:
        raise _invalid("max_event_quantity", "Must be greater than zero.")
    # A cap that cannot pay for one unit, or for the minimum charge it advertises, makes a service
    # whose sessions charge nothing (every report over the cap) or whose terms contradict: a rate
    # raised past a cap set before is told so, rather than left unusable.
    if int(service.max_session_cost) < int(service.rate):
        raise _invalid("max_session_cost", "Must be at least the price of one unit (the rate).")
    if int(service.minimum_charge) > int(service.max_session_cost):
        raise _invalid("minimum_charge", "Must not be more than maxSessionCost, the most a session may cost.")


def _name_taken() -> Conflict:
    message = "You already have a service with this name."
    return Conflict({"message": message, "code": "service_name_taken", "errors": {"name": [message]}})


def _invalid(field: str, message: str) -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [message]})


def _check_rules(service: Service) -> None:
    """The rules a service must keep whoever writes it (the serializer checks shapes first)."""
    if service.category.parent_id is not None:
        raise _invalid("category", f"'{service.category.name}' is a subcategory, not a category.")
    if service.subcategory is not None and service.subcategory.parent_id != service.category.pk:
        raise _invalid(
            "subcategory", f"'{service.subcategory.name}' is not a subcategory of '{service.category.name}'."
        )
    if service.token not in TOKENS:
        raise _invalid("token", f"Unknown token; choose one of {', '.join(TOKENS)}.")
    if service.unit not in ServiceUnit.values:
        raise _invalid("unit", "Unknown unit.")
    if service.type not in ServiceType.values:
        raise _invalid("type", "Unknown type.")
    if int(service.rate) <= 0:
        raise _invalid("rate", "Must be greater than zero.")
    if int(service.minimum_charge) < 0:
        raise _invalid("minimum_charge", "Must not be negative.")
    if service.free_seconds < 0:
        raise _invalid("free_seconds", "Must not be negative.")
    if service.free_seconds and not ServiceUnit(service.unit).is_time_based:
        # Billing frees time only: a session fee is charged at the start, usage as reported.
        raise _invalid("free_seconds", "Only time-metered services (per second, minute or hour) have free seconds.")


def _name_is_taken(*, vendor_id: int, name: str, exclude_pk: int | None = None) -> bool:
    live = Service.objects.filter(vendor_id=vendor_id, name__iexact=name, deleted_at__isnull=True)
    if exclude_pk is not None:
        live = live.exclude(pk=exclude_pk)
    return live.exists()


def _save(service: Service, *, update_fields: list[str] | None = None) -> None:
    try:
        with transaction.atomic():
            service.save(update_fields=update_fields)
    except IntegrityError as exc:
        # The unique index is the backstop when two requests race for the same name.
        if constraint_of(exc) == "marketplace_service_vendor_name_unique":
            raise _name_taken() from None
        raise


def service_create(
    *,
    vendor,
    name: str,
    category: Category,
    rate: int,
    unit: str,
    description: str = "",
    subcategory: Category | None = None,
    type: str = ServiceType.OTHER,
    token: str = DEFAULT_TOKEN,
    minimum_charge: int = 0,
    free_seconds: int = 0,
    max_session_cost: int | None = None,
    max_event_quantity: int | None = None,
    metadata: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    is_active: bool = True,
) -> Service:
    """List a new service for an active vendor. `rate` and `minimum_charge` are minor units of `token`."""
    # Roles are compared by value: marketplace does not import accounts (accounts uses marketplace).
    if getattr(vendor, "role", None) != "vendor" or not vendor.is_active:
        raise exceptions.PermissionDenied("Only vendors can list services.")
    service = Service(
        vendor=vendor,
        name=name.strip(),
        description=description,
        category=category,
        subcategory=subcategory,
        type=type,
        rate=rate,
        token=token,
        unit=unit,
        minimum_charge=minimum_charge,
        free_seconds=free_seconds,
        max_session_cost=max_session_cost,
        max_event_quantity=max_event_quantity,
        metadata=metadata or {},
        tags=tags or [],
        is_active=is_active,
    )
    _check_rules(service)
    _declare_usage_bounds(service, {name for name in USAGE_BOUNDS if getattr(service, name) is not None})
    if _name_is_taken(vendor_id=vendor.pk, name=service.name):
        raise _name_taken()
    _save(service)
    return service


def service_update(*, service: Service, **changes: Any) -> Service:
    """Change a live service. Changing its token re-prices it, so the rate must come with it.

    Decided on the service's row as it is now, locked (the caller's copy is brought up to date and
    returned): a retirement that committed since the caller read it is seen (NotFound), not written
    over with edits (an active retired service, which the database refuses: a 500), and what
    changed is counted against the row, not against a copy another edit has moved on from."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"service_update() got unknown fields: {sorted(unknown)}")
    with transaction.atomic():
        locked = Service.objects.select_for_update().filter(pk=service.pk).first()
        if locked is None or locked.is_deleted:
            raise exceptions.NotFound("No such service.")
        _update_locked(locked, changes)
    service.refresh_from_db()
    return service


def _update_locked(service: Service, changes: dict[str, Any]) -> None:
    if "token" in changes and changes["token"] != service.token:
        # Amounts are minor units of the token: the old figures mean nothing in the new one.
        if "rate" not in changes:
            raise _invalid("rate", "Give the rate in the new token when changing the token.")
        if "minimum_charge" not in changes and int(service.minimum_charge) != 0:
            raise _invalid("minimum_charge", "Give the minimum charge in the new token when changing the token.")
        changes.setdefault("max_session_cost", None)  # in the old token too: the default unless given
    if "name" in changes:
        changes["name"] = changes["name"].strip()

    given = {name for name in USAGE_BOUNDS if name in changes}
    if changes.get("unit", service.unit) != service.unit:
        # A new unit has bounds of its own: the ones given with it, or its defaults; and free seconds
        # only if it is metered by time.
        for name in USAGE_BOUNDS:
            changes.setdefault(name, None)
        if changes["unit"] in ServiceUnit.values and not ServiceUnit(changes["unit"]).is_time_based:
            changes.setdefault("free_seconds", 0)
    price_before = [getattr(service, term) for term in PRICE_TERMS]
    changed = [field for field, value in changes.items() if getattr(service, field) != value]
    for field in changed:
        setattr(service, field, changes[field])
    _check_rules(service)
    _declare_usage_bounds(service, given)
    if changed:
        changed = list(dict.fromkeys([*changed, *USAGE_BOUNDS]))  # defaults may have filled them
    if "name" in changed and _name_is_taken(vendor_id=service.vendor_id, name=service.name, exclude_pk=service.pk):
        raise _name_taken()
    # Compared once the usage bounds are declared: a new unit's default bounds are terms too.
    repriced = [getattr(service, term) for term in PRICE_TERMS] != price_before
    if repriced:
        # Counted by the database, not from this copy: two changes made from copies read at the same
        # version each move it, so neither leaves a version that names two prices.
        service.price_version = F("price_version") + 1
        changed.append("price_version")
    if changed:
        _save(service, update_fields=[*changed, "updated_at"])


def service_set_active(*, service: Service, is_active: bool) -> Service:
    """Activate or deactivate a live service (a deleted one stays deleted: NotFound)."""
    return _active_set(service, lambda _: is_active)


def service_toggle_status(*, service: Service) -> Service:
    """Flip is_active: two concurrent toggles flip twice rather than once."""
    return _active_set(service, lambda active: not active)


@transaction.atomic
def _active_set(service: Service, wanted: Callable[[bool], bool]) -> Service:
    """The one write of is_active on a live service, decided on its row once locked: a retirement
    that committed meanwhile is seen (NotFound), not overwritten with an active retired service,
    which the database refuses (marketplace_service_deleted_inactive)."""
    locked = Service.objects.select_for_update().get(pk=service.pk)
    if locked.is_deleted:
        raise exceptions.NotFound("No such service.")
    is_active = wanted(locked.is_active)
    if locked.is_active != is_active:
        locked.is_active = is_active
        locked.save(update_fields=["is_active", "updated_at"])
    service.is_active, service.updated_at = locked.is_active, locked.updated_at
    return service


def service_delete(*, service: Service, by=None) -> Service:
    """Soft-delete (retire): deactivate and hide it for good. The row stays, so any history that
    points at it stays intact, and the vendor may reuse the name. Its running sessions (calls
    included) stop, charged up to now, as stopped by its vendor, or by staff when `by` is another:
    a service nobody can see any more must not go on billing (a deactivation, which may be undone,
    leaves them running). Under the row's lock: a start that read it for sale either committed
    first, and its session is stopped here, or waits and is then refused (service_locked_for_sale)."""
    from streaming.models import StopReason
    from streaming.services import sessions_stop_on

    with transaction.atomic():
        # FOR NO KEY UPDATE, as the UPDATE below takes it (it changes no key): it keeps out starts
        # (FOR SHARE), edits and other retirements, not the foreign-key checks of a session's row (KEY
        # SHARE), which a report that wrote the row twice makes at its commit holding the row. Held
        # FOR UPDATE while the stop below waited for that row, the two deadlocked.
        locked = Service.objects.select_for_update(no_key=True).get(pk=service.pk)
        if locked.is_deleted:
            raise exceptions.NotFound("No such service.")
        now = timezone.now()  # once the row is ours: a start that held it began before this
        locked.is_active = False
        locked.deleted_at = now
        locked.save(update_fields=["is_active", "deleted_at", "updated_at"])
        reason = StopReason.STAFF if by is not None and by.pk != locked.vendor_id else StopReason.VENDOR
        sessions_stop_on(service=locked, reason=reason, now=now)
    service.is_active, service.deleted_at, service.updated_at = locked.is_active, locked.deleted_at, locked.updated_at
    return service


@dataclass(frozen=True)
class PriceTerms:
    """A service's price terms (PRICE_TERMS; amounts in minor units of `token`) as its row held them
    under a start's lock, and the version that names them: what a session copies and is billed by."""

    service_id: int
    price_version: int
    rate: int
    token: str
    unit: str
    minimum_charge: int
    free_seconds: int
    max_session_cost: int | None
    max_event_quantity: int | None


def service_locked_for_sale(service_id: int, *, price_version: int | None = None) -> PriceTerms | None:
    """The price terms of this service while it is still for sale (active, not retired), its row
    share-locked until the transaction ends; None when it is not for sale. Call it inside
    transaction.atomic before starting a session on it, and bill the session by what it returns.

    A deactivation, retirement or change of price (which lock the row to update it) either committed
    first and is seen here, or waits for this transaction's commit: a retirement then finds the
    session to stop, and a new price leaves the session on the terms it started on. Locked after the
    users' rows and before any session or ledger account, the order every transaction that takes
    several of them keeps; shared, two starts on one service do not wait for each other.

    `price_version` is the one the user was shown (optional, for older clients): when the price
    changed since, a 409 (price_changed) with the current terms, decided here under the lock, so
    that a change racing the start comes either before it (refused) or after it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT is_active AND deleted_at IS NULL, price_version, rate, token, unit, minimum_charge, free_seconds,"
            " max_session_cost, max_event_quantity FROM marketplace_service WHERE id = %s FOR SHARE",
            [service_id],
        )
        row = cursor.fetchone()
    if not (row and row[0]):
        return None  # off sale: unknown to the user, whatever version he names
    version, rate, token, unit, minimum_charge, free_seconds, cap, per_event = row[1:]
    terms = PriceTerms(
        service_id=service_id,
        price_version=version,
        rate=int(rate),
        token=token,
        unit=unit,
        minimum_charge=int(minimum_charge),
        free_seconds=free_seconds,
        max_session_cost=None if cap is None else int(cap),
        max_event_quantity=None if per_event is None else int(per_event),
    )
    if price_version is not None and price_version != terms.price_version:
        raise _price_changed(terms)
    return terms


def _price_changed(terms: PriceTerms) -> Conflict:
    """The 409 of a start on a price the user was not shown: the current terms, as the service's
    page shows them, so that the client can show them and start again with their version."""
    decimals = decimals_of(terms.token)
    cap = terms.max_session_cost
    return Conflict(
        {
            "message": "The price of this service changed since it was shown to you; nothing was started. "
            "Review its current terms and start again with their priceVersion.",
            "code": "price_changed",
        },
        extra={
            "serviceId": terms.service_id,
            "priceVersion": terms.price_version,
            "rate": format_minor(terms.rate, decimals),
            "unit": terms.unit,
            "token": terms.token,
            "minimumCharge": format_minor(terms.minimum_charge, decimals),
            "freeSeconds": terms.free_seconds,
            "maxSessionCost": None if cap is None else format_minor(cap, decimals),
            "maxEventQuantity": terms.max_event_quantity,
        },
    )
