"""Rules every page of the admin keeps, checked over every registered model admin and inline, so
that a page added later keeps them too: no amount in raw minor units, no Save button where nothing
can be changed, times to the second, no 500 for an odd id or a NUL in a list's query string."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.test import RequestFactory
from django.utils import formats

from paygo.fields import MinorUnitsField
from wallets.admin import AmountInUnitsField

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
    """The fields a list or change page shows as they are stored (a form's field typed and shown in
    the asset's units is not)."""
    names = set()
    shown_on_page = flatten_fieldsets(model_admin.get_fieldsets(request))
    in_units = {
        name
        for name, field in getattr(getattr(model_admin, "form", None), "base_fields", {}).items()
        if isinstance(field, AmountInUnitsField)
    }
    for name in [*getattr(model_admin, "list_display", ()), *shown_on_page]:
        if isinstance(name, str) and name not in in_units:
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


def _pages(model, what: str, *args) -> str:
    from django.urls import reverse

    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{what}", args=args)


def test_a_nul_in_a_lists_query_string_is_a_400_on_every_list(client, olga):
    """A list filter's value reached PostgreSQL, which refuses a NUL in text: a 500 on every list."""
    client.force_login(olga)
    answers = {
        model.__name__: [client.get(_pages(model, "changelist") + query).status_code for query in queries]
        for model in admin.site._registry
        for queries in [("?q=%00", "?id__exact=%00", "?status__exact=a%00b", "?%00=1")]
    }

    assert {name: codes for name, codes in answers.items() if set(codes) != {400}} == {}


def test_a_change_page_for_an_id_that_is_no_id_is_not_a_500(client, olga):
    """The admin answers "doesn't exist" itself; the accounts' page built its adjustment link first."""
    client.force_login(olga)
    answers = {model.__name__: client.get(_pages(model, "change", "abc")).status_code for model in admin.site._registry}

    assert {name: code for name, code in answers.items() if code != 302} == {}


def test_times_are_shown_to_the_second():
    moment = datetime(2026, 12, 6, 4, 0, 7, tzinfo=UTC)

    assert formats.date_format(moment, "DATETIME_FORMAT") == "2026-12-06 04:00:07 UTC"
    assert formats.date_format(moment, "SHORT_DATETIME_FORMAT") == "2026-12-06 04:00:07 UTC"


# --- What a list accepts in its query string: the lookups its own filters and date hierarchy make --------

# Lookups no list's filter makes, that reached the database and were 500s: a year out of Python's
# range (ValueError), a pattern PostgreSQL refuses (DataError), a range of one value (IndexError).
ODD_LOOKUPS = ("id__range=1", "pk__regex=(", "id__in=1,abc", "id__gt=1e400")
ODD_DATE_LOOKUPS = ("{}__year=99999", "{}__year=0", "{}__iso_year=99999", "{}__year__gt=99999")
ODD_TEXT_LOOKUPS = ("{}__regex=(", "{}__iregex=[a")


def _odd_queries(model, model_admin) -> list[str]:
    from django.db import models

    queries = list(ODD_LOOKUPS)
    fields = [f for f in model._meta.concrete_fields if f.name != model_admin.date_hierarchy]
    dates = [f.name for f in fields if isinstance(f, models.DateField)][:1]
    texts = [f.name for f in fields if isinstance(f, (models.CharField, models.TextField))][:1]
    queries += [lookup.format(name) for name in dates for lookup in ODD_DATE_LOOKUPS]
    queries += [lookup.format(name) for name in texts for lookup in ODD_TEXT_LOOKUPS]
    return queries


def test_a_lookup_no_filter_of_the_list_makes_is_a_400_on_every_list(client, olga):
    client.force_login(olga)
    answers = {
        f"{model.__name__}?{query}": client.get(_pages(model, "changelist") + "?" + query).status_code
        for model, model_admin in admin.site._registry.items()
        for query in _odd_queries(model, model_admin)
    }

    assert {query: code for query, code in answers.items() if code != 400} == {}


@pytest.mark.parametrize(
    "query",
    [
        "{0}__year=99999",
        "{0}__year=0",
        "{0}__year=9999",
        "{0}__year=9999&{0}__month=12",
        "{0}__year=2026&{0}__month=13",
    ],
)
def test_a_date_hierarchy_outside_the_calendar_is_the_admins_invalid_lookup_page(client, olga, query):
    """Django's own answer to a filter value it cannot use: the list again, with ?e=1."""
    client.force_login(olga)
    lists = [(model, ma.date_hierarchy) for model, ma in admin.site._registry.items() if ma.date_hierarchy]
    answers = {
        model.__name__: client.get(_pages(model, "changelist") + "?" + query.format(field)) for model, field in lists
    }

    assert lists
    assert {name: r.status_code for name, r in answers.items() if r.get("Location", "").endswith("?e=1")} == {
        name: 302 for name in answers
    }


class _FilterLinks(HTMLParser):
    """The query strings of a list's filter and date hierarchy links."""

    def __init__(self):
        super().__init__()
        self.links: set[str] = set()

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href") or ""
        if tag == "a" and href.startswith("?"):
            self.links.add(html.unescape(href))


def test_every_link_of_a_lists_filters_and_date_hierarchy_is_served(client, olga, alice):
    from notifications import notify
    from wallets.tests.conftest import fund_wallet

    fund_wallet(alice, 5_000_000)  # a wallet, a deposit in the ledger: the date hierarchies have a year to show
    notify(alice, type="system", title="Hello", message="Welcome")
    client.force_login(olga)
    refused = {}
    for model in admin.site._registry:
        url = _pages(model, "changelist")
        reader = _FilterLinks()
        reader.feed(client.get(url).content.decode())
        for link in reader.links - {"?"}:
            code = client.get(url + link).status_code
            if code != 200:
                refused[f"{model.__name__}{link}"] = code

    assert refused == {}


def test_every_admin_of_the_project_takes_its_input_through_the_shared_mixin():
    from paygo.admin import AdminInputMixin

    assert [type(ma).__name__ for ma in admin.site._registry.values() if not isinstance(ma, AdminInputMixin)] == []


# --- An action posted with an id that is no id of the list ---------------------------------------------


def test_an_action_on_an_id_that_is_no_id_is_a_400_on_every_list(client, olga):
    client.force_login(olga)
    answers = {}
    for model, model_admin in admin.site._registry.items():
        request = _request(olga)
        for action in model_admin.get_actions(request):
            for pk in ("abc", "1.5", "9" * 30, ""):
                data = {"action": action, "_selected_action": [pk], "index": "0"}
                answers[f"{model.__name__}.{action}({pk!r})"] = client.post(
                    _pages(model, "changelist"), data
                ).status_code

    assert answers
    assert {action: code for action, code in answers.items() if code != 400} == {}


# --- The lists of tables that only grow: counted from the table's statistics, not with COUNT(*) ---------

# Each list of a big table, and a filter of it that finds alice's row of the scene below.
BIG_LISTS = {
    "notifications.notification": "type__exact=system",
    "accounts.signin": "q=alice",
    "wallets.entry": "account={account.pk}",
    "wallets.ledgertransaction": "kind__exact=deposit",
    "wallets.hold": "status__exact=active",
    "streaming.streamingsession": "status__exact=active",
    "streaming.usageevent": "q=e1",
    "consultations.consultation": "q=alice",
}


@pytest.fixture
def one_of_each(alice, victor):
    """A row in each big table: alice's deposit (its ledger transaction and entries), sign-in, notification,
    running usage-metered session (its hold, a usage event) and consultation."""
    from django.test import TestCase

    from accounts.services import token_pair_for
    from consultations.services import consultation_create
    from marketplace.models import Category
    from marketplace.services import service_create
    from notifications import notify
    from streaming.services import session_start, usage_report
    from wallets.tests.conftest import fund_wallet

    account = fund_wallet(alice, 10_000_000)
    token_pair_for(alice)
    notify(alice, type="system", title="Hello", message="Welcome")
    category = Category.objects.filter(parent__isnull=True).first()
    service = service_create(vendor=victor, name="Calls", category=category, rate=1_000, unit="per_request")
    with TestCase.captureOnCommitCallbacks(execute=True):
        session = session_start(user=alice, service=service)
        usage_report(session=session, event_id="e1", quantity=1)
        consultation_create(user=alice, vendor_id=victor.pk, service_id=service.pk, initial_message="Hello")
    return {"account": account}


@pytest.mark.parametrize("model", BIG_LISTS)
def test_the_whole_list_is_counted_from_the_tables_statistics_a_filtered_one_exactly(
    client, olga, one_of_each, monkeypatch, model
):
    """COUNT(*) over 1.2M notifications, 1M sessions on every page of their list: PostgreSQL's
    estimate of the table's rows (pg_class.reltuples, kept by ANALYZE) is what the whole list's
    count is; a filtered list is counted exactly."""
    from django.apps import apps
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from paygo import admin as paygo_admin

    table = apps.get_model(model)._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
        (rows,) = cursor.fetchone()
    monkeypatch.setattr(paygo_admin, "ESTIMATED_FROM_ROWS", 1)  # a big table, for the list
    client.force_login(olga)
    url = _pages(apps.get_model(model), "changelist")

    with CaptureQueriesContext(connection) as whole:
        whole_count = client.get(url).context["cl"].result_count
    with CaptureQueriesContext(connection) as filtered:
        filtered_count = client.get(url + "?" + BIG_LISTS[model].format(**one_of_each)).context["cl"].result_count

    counting = [q["sql"] for q in whole.captured_queries if "COUNT(" in q["sql"].upper()]
    assert (rows >= 1, whole_count, counting) == (True, rows, [])
    assert filtered_count == 1
    assert any("COUNT(" in q["sql"].upper() for q in filtered.captured_queries)
