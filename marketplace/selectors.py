"""Permission-checked reads of services: who sees which service, and the marketplace's filters."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from typing import Any

from django.db.models import Case, DecimalField, F, Func, Prefetch, Q, QuerySet, TextField, Value, When
from django.db.models.functions import Lower
from rest_framework import exceptions

from marketplace.models import Category, Service
from paygo.api.permissions import staff_has
from paygo.tokens import MAX_DECIMALS, TOKENS

# What staff need for each thing they do to another vendor's service: what the admin asks.
VIEW_SERVICE = "marketplace.view_service"  # inactive, deleted and inactive vendors' services
CHANGE_SERVICE = "marketplace.change_service"  # toggle-status; the admin's (de)activate
# PUT/PATCH: the owning vendor only. The admin edits no field of a service (its actions only
# activate, deactivate and retire), so no permission lets staff rewrite another's name or rate.
EDIT_SERVICE = None
DELETE_SERVICE = "marketplace.delete_service"  # DELETE (retire); the admin's retire
# Retiring asks what the admin asks for its retire action: the services' list, where the action is
# (the view permission, or change, which implies it), and the delete permission.
RETIRE_SERVICE = (VIEW_SERVICE, DELETE_SERVICE)

# Query-parameter values of `ordering` -> ORDER BY; a tiebreak on id keeps pages stable.
ORDERINGS = {
    "createdAt": ("created_at", "id"),
    "-createdAt": ("-created_at", "-id"),
    "name": (Lower("name").asc(), "id"),
    "-name": (Lower("name").desc(), "-id"),
    "rate": ("rate_whole", "id"),
    "-rate": ("-rate_whole", "-id"),
}
DEFAULT_ORDERING = "-createdAt"


def _is_vendor(user) -> bool:
    return bool(user and user.is_authenticated and getattr(user, "role", None) == "vendor")


def _with_relations(queryset: QuerySet[Service]) -> QuerySet[Service]:
    return queryset.select_related("vendor", "category", "subcategory")


def _public() -> Q:
    """Services on sale: active, not retired, offered by an active vendor (one whose account is
    deactivated, or who is no longer a vendor, sells nothing). is_on_sale() is the same for one."""
    return Q(is_active=True, deleted_at__isnull=True, vendor__is_active=True, vendor__role="vendor")


class TagsText(Func):
    """A service's tags as the words they are, one after another: searched as the JSON array's
    text, "[" and '"' found every tagged service and "[]" every untagged one. (Tags not an array,
    which only the admin's raw JSON could store, are none.)"""

    template = (
        "array_to_string(ARRAY(SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(%(expressions)s) = 'array' "
        "THEN %(expressions)s ELSE '[]'::jsonb END)), chr(31))"
    )
    output_field = TextField()


def is_on_sale(service: Service) -> bool:
    vendor = service.vendor
    return service.is_active and service.deleted_at is None and vendor.is_active and vendor.role == "vendor"


def _rate_bound(number: Decimal, decimals: int, *, lower: bool) -> int:
    """A whole-token bound in minor units: rounded inwards, so the bound itself still matches."""
    with localcontext(prec=80):  # exact: the default 28 digits would round 18-decimal bounds
        scaled = number.scaleb(decimals)
        return math.ceil(scaled) if lower else math.floor(scaled)


def _filter(queryset: QuerySet[Service], filters: dict[str, Any]) -> QuerySet[Service]:
    if filters.get("vendor_id") is not None:
        queryset = queryset.filter(vendor_id=filters["vendor_id"])
    if filters.get("category") is not None:
        queryset = queryset.filter(category=filters["category"])
    if filters.get("subcategory") is not None:
        queryset = queryset.filter(subcategory=filters["subcategory"])
    for field in ("type", "unit", "token", "is_active"):
        if filters.get(field) is not None:
            queryset = queryset.filter(**{field: filters[field]})

    min_rate, max_rate = filters.get("min_rate"), filters.get("max_rate")
    if min_rate is not None or max_rate is not None:
        # Rates are minor units of each service's own token: compare each token in its own units.
        tokens = [filters["token"]] if filters.get("token") else list(TOKENS)
        by_token = Q(pk__in=[])
        for token in tokens:
            decimals = TOKENS[token]
            condition = Q(token=token)
            if min_rate is not None:
                condition &= Q(rate__gte=_rate_bound(min_rate, decimals, lower=True))
            if max_rate is not None:
                condition &= Q(rate__lte=_rate_bound(max_rate, decimals, lower=False))
            by_token |= condition
        queryset = queryset.filter(by_token)

    search = (filters.get("search") or "").strip()
    if search:
        queryset = queryset.alias(tags_text=TagsText("tags")).filter(
            Q(name__icontains=search) | Q(description__icontains=search) | Q(tags_text__icontains=search)
        )

    ordering = filters.get("ordering") or DEFAULT_ORDERING
    if ordering in ("rate", "-rate"):
        # Order by the rate in whole tokens: scale every token's minor units to the finest one.
        queryset = queryset.annotate(
            rate_whole=Case(
                *[
                    When(token=token, then=F("rate") * Value(10 ** (MAX_DECIMALS - decimals)))
                    for token, decimals in TOKENS.items()
                ],
                output_field=DecimalField(max_digits=60, decimal_places=0),
            )
        )
    return queryset.order_by(*ORDERINGS[ordering])


def service_list(*, viewer, filters: dict[str, Any]) -> QuerySet[Service]:
    """The marketplace: active services of active vendors, filtered and ordered.

    `include_inactive` adds the caller's own inactive services for a vendor, and every service
    (inactive, of inactive vendors, deleted) for staff who may view services; anyone else is refused.
    """
    visible = _public()
    if filters.get("include_inactive"):
        if staff_has(viewer, VIEW_SERVICE):
            visible = Q()
        elif _is_vendor(viewer):
            visible |= Q(vendor=viewer, deleted_at__isnull=True)
        elif viewer is None or not viewer.is_authenticated:
            raise exceptions.NotAuthenticated("Log in as the vendor or staff to see inactive services.")
        else:
            raise exceptions.PermissionDenied("Only the owning vendor and staff can see inactive services.")
    return _filter(_with_relations(Service.objects.filter(visible)), filters)


def service_list_for_vendor(*, vendor, filters: dict[str, Any]) -> QuerySet[Service]:
    """A vendor's own live services, active or not (deleted ones are gone from every listing)."""
    own = Service.objects.filter(vendor=vendor, deleted_at__isnull=True)
    return _filter(_with_relations(own), filters)


def service_get_visible(*, viewer, service_id: int) -> Service:
    """A service the caller may see: a public one, the vendor's own, or any for staff who may view
    services; else 404."""
    if staff_has(viewer, VIEW_SERVICE):
        visible = Q()
    elif _is_vendor(viewer):
        visible = _public() | Q(vendor=viewer, deleted_at__isnull=True)
    else:
        visible = _public()
    service = _with_relations(Service.objects.filter(visible)).filter(pk=service_id).first()
    if service is None:
        raise exceptions.NotFound("No such service.")
    return service


def service_get_for_owner(*, user, service_id: int, permissions: tuple[str, ...] | None = (CHANGE_SERVICE,)) -> Service:
    """A live service the caller may change (or, with RETIRE_SERVICE, retire): the owning vendor's,
    or any for staff holding `permissions` (None: for nobody but its vendor, EDIT_SERVICE); else 404."""
    live = Service.objects.filter(pk=service_id, deleted_at__isnull=True)
    if permissions is None or not staff_has(user, *permissions):
        live = live.filter(vendor=user) if _is_vendor(user) else live.none()
    service = _with_relations(live).first()
    if service is None:
        raise exceptions.NotFound("No such service.")
    return service


def category_tree() -> QuerySet[Category]:
    """Top-level categories, each with its subcategories prefetched as `subcategories`."""
    return Category.objects.filter(parent__isnull=True).prefetch_related(
        Prefetch("children", queryset=Category.objects.order_by("name"), to_attr="subcategories")
    )
