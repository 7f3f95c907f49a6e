"""Rules every page of the admin keeps, checked over every registered model admin and inline, so
that a page added later keeps them too: no amount in raw minor units, no Save button where nothing
can be changed, times to the second."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.test import RequestFactory
from django.utils import formats

from paygo.fields import MinorUnitsField

pytestmark = pytest.mark.django_db

# Integers of minor units that are not amounts of money: quantities of usage.
QUANTITIES = {"quantity", "usage_quantity"}
# Amounts in minor units stored in other integer columns.
OTHER_AMOUNTS = {("marketplace", "service", "rate"), ("marketplace", "service", "minimum_charge")}
OTHER_AMOUNTS |= {("accounts", "vendorprofile", "payout_threshold")}


def _amounts(model) -> set[str]:
    meta = model._meta
    return {
        field.name
        for field in meta.get_fields()
        if (isinstance(field, MinorUnitsField) and field.name not in QUANTITIES)
        or (meta.app_label, meta.model_name, field.name) in OTHER_AMOUNTS
    }


def _request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def _shown(model_admin, request) -> set[str]:
    names = set()
    shown_on_page = flatten_fieldsets(model_admin.get_fieldsets(request))
    for name in [*getattr(model_admin, "list_display", ()), *shown_on_page]:
        if isinstance(name, str):
            names.add(name)
    return names


def _every_admin():
    for model, model_admin in admin.site._registry.items():
        yield model, model_admin
        for inline_class in model_admin.inlines:
            inline = inline_class(model, admin.site)
            yield inline.model, inline


def test_no_amount_is_shown_in_raw_minor_units(olga):
    request = _request(olga)
    raw = {
        f"{type(model_admin).__name__}.{name}"
        for model, model_admin in _every_admin()
        for name in _shown(model_admin, request) & _amounts(model)
    }

    assert not raw, f"shown in minor units, not in the asset's units: {sorted(raw)}"


def _editable(model_admin, request) -> bool:
    shown_on_page = flatten_fieldsets(model_admin.get_fieldsets(request))
    return not set(shown_on_page) <= set(model_admin.get_readonly_fields(request))


def test_no_save_button_where_nothing_can_be_changed(olga):
    """A change page whose every field is read-only, with no editable inline, offers no Save."""
    request = _request(olga)
    offering_save = []
    for model_admin in admin.site._registry.values():
        inlines_editable = any(
            inline.has_add_permission(request, None)
            or (inline.has_change_permission(request) and _editable(inline, request))
            for inline in model_admin.get_inline_instances(request)
        )
        if not _editable(model_admin, request) and not inlines_editable and model_admin.has_change_permission(request):
            offering_save.append(type(model_admin).__name__)

    assert not offering_save, f"Save buttons with nothing to save: {offering_save}"


def test_times_are_shown_to_the_second():
    moment = datetime(2026, 12, 6, 4, 0, 7, tzinfo=UTC)

    assert formats.date_format(moment, "DATETIME_FORMAT") == "2026-12-06 04:00:07 UTC"
    assert formats.date_format(moment, "SHORT_DATETIME_FORMAT") == "2026-12-06 04:00:07 UTC"
