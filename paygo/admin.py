"""Admin pieces the apps share: what a list accepts from its query string and its action form,
read-only records, change forms that save what the operator changed (never what he only saw),
amounts in their asset's units, short ids, the token that makes a form act once."""

from __future__ import annotations

import operator
import re
import uuid
from functools import cached_property
from itertools import chain

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import BadRequest, ValidationError
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.forms.models import BaseInlineFormSet
from django.utils.html import format_html

from paygo.api.amounts import format_minor

# --- What a list accepts ----------------------------------------------------------------------------------
#
# Django's admin applies any lookup of a model's own fields found in a list's query string
# (?created_at__year=99999, ?email__regex=(, ?id__range=1), and many of them failed in Python or in
# PostgreSQL: a 500 on every list. A list here takes the lookups its own filters and date hierarchy
# make, nothing else; and an action's selected ids are ids of the list's model.


def is_id_of(model, value: str) -> bool:
    """Whether `value`, from a query string or a form, can be the primary key of a `model` row: one
    that cannot fails in Python or in PostgreSQL when a query compares the column with it."""
    pk = model._meta.pk
    try:
        pk.run_validators(pk.to_python(value))
    except ValidationError:
        return False
    return True


class _ListOfItsFilters(ChangeList):
    def get_filters(self, request):
        given = set(self.get_filters_params())
        hierarchy = self.date_hierarchy
        if hierarchy and f"{hierarchy}__year" in given:
            year = self.filter_params[f"{hierarchy}__year"][-1]
            # Django bounds a year's (a month's, a day's) page by the next one: none after 9999.
            if year.isascii() and year.isdigit() and int(year) >= 9999:
                raise IncorrectLookupParameters(f"No date hierarchy page for the year {year}.")
        filter_specs, has_filters, remaining, may_have_duplicates, has_active_filters = super().get_filters(request)
        # What the filters and the date hierarchy took is gone from `remaining`; the hierarchy put
        # back its year as a range.
        made_by_hierarchy = {f"{hierarchy}__gte", f"{hierarchy}__lt"} if hierarchy else set()
        unknown = sorted(given & set(remaining) - made_by_hierarchy)
        if unknown:
            raise DisallowedModelAdminLookup(f"Filtering by {unknown[0]} not allowed")
        return filter_specs, has_filters, remaining, may_have_duplicates, has_active_filters


class AdminInputMixin:
    """For every ModelAdmin of the project (paygo/tests/test_admin_rules.py checks): its list takes
    the lookups its filters and date hierarchy make, and answers any other with the admin's own 400;
    a date hierarchy page outside the calendar is the admin's invalid-lookup page (?e=1); an action
    posted with an id that is no id of the model is a 400, not a query that fails."""

    def get_changelist(self, request, **kwargs):
        return _ListOfItsFilters

    def response_action(self, request, queryset):
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            if not is_id_of(self.model, value):
                raise BadRequest(f"Not an id of a {self.model._meta.verbose_name}: {value[:40]!r}.")
        return super().response_action(request, queryset)


def id_filter(field: str, title: str) -> type[admin.SimpleListFilter]:
    """A list filter on the row that the foreign key `field` names, `?field=<its id>`, for the links
    of other pages (a session's charges, a transaction's entries): it offers no choices of its own,
    since listing every session or transaction in a sidebar is what made pages slow."""

    class IdFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request, model_admin):
            value = self.value()
            return [(value, f"#{value}")] if value else []

        def queryset(self, request, queryset):
            value = self.value()
            if value is None:
                return queryset
            if not is_id_of(queryset.model._meta.get_field(field).related_model, value):
                raise IncorrectLookupParameters(f"Not an id: {value[:40]!r}.")
            return queryset.filter(**{field: value})

    IdFilter.title = title
    IdFilter.__name__ = f"{field.title()}IdFilter"
    return IdFilter


class _FirstRowsFormSet(BaseInlineFormSet):
    rows = 20

    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            super().get_queryset()  # ordered, as the inline asks
            self._queryset = self._queryset[: self.rows]
        return self._queryset


class FirstRowsInlineMixin:
    """For a read-only inline whose rows can be thousands (a sweep's transaction has an entry per
    session charged, a per-second session a charge a minute): its page draws the first `rows` in the
    inline's ordering, says how many there are, and links to all of them on a list (all_rows_url)."""

    rows = 20
    formset = _FirstRowsFormSet
    template = "admin/edit_inline/first_rows.html"

    def all_rows_url(self, obj) -> str:
        raise NotImplementedError

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.rows = self.rows
        self.more_rows = None  # an instance per request (ModelAdmin.get_inline_instances)
        if obj is not None:
            total = self.get_queryset(request).filter(**{formset.fk.name: obj}).count()
            if total > self.rows:
                self.more_rows = format_html(
                    '{} of {} {} shown: <a href="{}">all of them</a>.',
                    self.rows,
                    total,
                    self.verbose_name_plural,
                    self.all_rows_url(obj),
                )
        return formset


# A table this big is not counted for its whole list: PostgreSQL's estimate of its rows is shown.
ESTIMATED_FROM_ROWS = 100_000


class EstimatedCountPaginator(Paginator):
    """For the lists of big tables (notifications, sign-ins, the ledger): the whole list's count is
    the table's row estimate that ANALYZE keeps (pg_class.reltuples), not a COUNT(*) over millions
    of rows on every page; a filtered or searched list, and a small table, are counted exactly.
    Set show_full_result_count = False beside it, or the admin counts the whole table anyway."""

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if not query.has_filters() and not query.distinct:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                    [connection.ops.quote_name(self.object_list.model._meta.db_table)],
                )
                row = cursor.fetchone()
            if row and row[0] >= ESTIMATED_FROM_ROWS:
                return row[0]
        return super().count


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


# --- Change forms that save what the operator changed ---------------------------------------------------
#
# A ModelForm posts every field its page showed, and the admin saves them all: a field the operator
# did not touch went back to the value he had seen, undoing what someone else changed while his
# page was open (a user deactivated meanwhile was active again after a phone fix). Each field of a
# guarded change form therefore carries, in a hidden input, the value its page showed (Django's
# show_hidden_initial), so that changed_data is what the operator changed; only that is saved, and
# a field he changed that someone else changed too since is refused, not overwritten.

STALE_FIELD = "Changed by someone else since you opened this page: reload it to see the new value."
STALE_PAGE = "This page does not say what it showed you (it was opened before an update): reload it."


class _SeenChoicesInput(forms.MultipleHiddenInput):
    """What a page showed of a many-valued field, with an empty input when it showed none: "saw
    none" then reaches the server as such, not as the missing field of a page that did not say."""

    def format_value(self, value):
        return super().format_value(value) or [""]

    def value_from_datadict(self, data, files, name):
        if name not in data:
            return None
        return [value for value in super().value_from_datadict(data, files, name) if value != ""]


class SeenValuesFormMixin:
    """For a ModelForm editing an existing row (SeenValuesAdminMixin puts it on a ModelAdmin's change
    form; an inline's form takes it itself). A form's clean() that sets model fields the operator did
    not change (one follows from another) names them in changed_by_clean, to be saved too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.changed_by_clean: set[str] = set()
        # Fields added after this (a formset's id and foreign key, its delete box) are the formset's.
        self.seen_fields = [] if self.instance._state.adding else [n for n, f in self.fields.items() if not f.disabled]
        for name in self.seen_fields:
            field = self.fields[name]  # this form's own copy
            field.show_hidden_initial = True
            if issubclass(field.hidden_widget, forms.MultipleHiddenInput):
                field.hidden_widget = _SeenChoicesInput

    def _seen(self, name: str):
        return self._widget_data_value(self.fields[name].hidden_widget(), self[name].html_initial_name)

    def clean(self):
        cleaned = super().clean()
        if any(self._seen(name) is None for name in self.seen_fields):
            raise forms.ValidationError(STALE_PAGE, code="stale_page")
        # The row is as it is now (locked by SeenValuesAdminMixin.get_object): a field that differs
        # from what the page showed was changed since; the operator's change of it is refused unless
        # he chose what it already is.
        for name in self.changed_data:
            if name not in self.seen_fields:
                continue
            field, current = self.fields[name], self[name].initial
            if field.has_changed(current, self._seen(name)) and field.has_changed(current, self[name].data):
                self.add_error(name, forms.ValidationError(STALE_FIELD, code="stale_field"))
        return cleaned

    def fields_to_save(self) -> list[str] | None:
        """The row's own columns the operator changed (and what clean() set with them), plus those
        that record when the row changed."""
        if not self.seen_fields:
            return None  # a new row: all of it
        columns = {field.name: field for field in self.instance._meta.concrete_fields}
        names = [name for name in dict.fromkeys([*self.changed_data, *self.changed_by_clean]) if name in columns]
        if names:
            names += [name for name, field in columns.items() if getattr(field, "auto_now", False)]
        return names

    def _save_m2m(self):
        if not self.seen_fields:
            return super()._save_m2m()
        for field in chain(self.instance._meta.many_to_many, self.instance._meta.private_fields):
            if hasattr(field, "save_form_data") and field.name in self.changed_data and field.name in self.cleaned_data:
                field.save_form_data(self.instance, self.cleaned_data[field.name])

    def save(self, commit=True):
        # An inline's formset saves its forms with commit=True: the same columns as the admin's save_model.
        instance = super().save(commit=False)
        if commit:
            instance.save(update_fields=self.fields_to_save())
            self._save_m2m()
        return instance


class SeenValuesAdminMixin:
    """For a ModelAdmin whose change form operators edit: its save writes what the operator changed
    (SeenValuesFormMixin), on the row locked as it is now."""

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is None or issubclass(form, SeenValuesFormMixin):
            return form
        return type(form.__name__, (SeenValuesFormMixin, form), {})

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        # The admin's change and delete views post inside one transaction: the row is locked there
        # until the save, so the form compares what the page showed with what is there now.
        if obj is not None and request.method == "POST" and transaction.get_connection().in_atomic_block:
            self.lock_for_change(obj)
        return obj

    def lock_for_change(self, obj) -> None:
        """Lock the edited row and read it again; an admin whose service locks rows in an order of its
        own (every token, say) takes them that way instead."""
        obj.refresh_from_db(from_queryset=type(obj)._base_manager.select_for_update())

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        obj.save(update_fields=form.fields_to_save())
        return None


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
