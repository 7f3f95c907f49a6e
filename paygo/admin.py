"""Admin pieces the apps share: read-only records, amounts in their asset's units, short ids, the
token that makes a form act once."""

from __future__ import annotations

import operator
import re
import uuid

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from paygo.api.amounts import format_minor


class ReadOnlyAdminMixin:
    """For records written only through the apps' services (the ledger, messages, notifications):
    operators read them in the admin and never add, edit or delete one there. Works on model
    admins and inlines alike."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def in_units(amount: int | None, asset) -> str:
    """Minor units as the operator reads them: '12.500000 USDC'."""
    if amount is None:
        return "-"
    return f"{format_minor(int(amount), asset.decimals)} {asset.code}"


def amount_field(field: str, *, asset: str = "asset", description: str | None = None, ordering: bool = True):
    """An admin column or read-only field showing the model's `field` (minor units of the asset
    at the `asset` attribute path) in that asset's units. Assign it in a ModelAdmin's body."""
    asset_of = operator.attrgetter(asset)

    @admin.display(description=description or field.replace("_", " "), ordering=field if ordering else None)
    def show(model_admin, obj) -> str:
        return in_units(getattr(obj, field), asset_of(obj))

    return show


# UUIDs and long hex hashes inside references ("charge:0c32251c-621d-...:2", "deposit:0x00af...").
_LONG_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|0x[0-9a-fA-F]{12,}")


def _shorten(match: re.Match) -> str:
    text = match.group(0)
    return f"{text[:8]}…" if "-" in text else f"{text[:6]}…{text[-4:]}"


def short(text: str | None) -> str:
    """`text` with its long ids shortened, whole on hover: keeps a list's useful columns in view."""
    if not text:
        return "-"
    shortened = _LONG_ID.sub(_shorten, str(text))
    if shortened == text:
        return text
    return format_html('<span title="{}">{}</span>', text, shortened)


class FormTokenField(forms.RegexField):
    """A hidden token, new with each form served. The service the form posts to records it uniquely
    with what it does (an adjustment's ledger reference, a notification send's SentForm), so that
    the same form sent twice (a double click, a reload that sends it again) acts once."""

    widget = forms.HiddenInput

    def __init__(self, **kwargs):
        super().__init__(r"^[0-9a-f]{32}\Z", initial=lambda: uuid.uuid4().hex, **kwargs)
