"""The service layer's rules and the database's backstops, below the API."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework import exceptions

from marketplace import services
from marketplace.models import Service, ServiceUnit
from marketplace.tests.conftest import category
from paygo.api.errors import Conflict
from paygo.tokens import DEFAULT_TOKEN, TOKENS, decimals_of

pytestmark = pytest.mark.django_db


def test_tokens_and_their_decimals():
    assert TOKENS == {"USDC": 6, "USDT": 6, "ETH": 18, "STRK": 18}
    assert DEFAULT_TOKEN == "USDC"
    assert decimals_of("ETH") == 18
    with pytest.raises(KeyError):
        decimals_of("DOGE")


def test_units_know_their_length():
    assert [(u.value, u.unit_ms) for u in ServiceUnit.time_units()] == [
        ("per_second", 1_000),
        ("per_minute", 60_000),
        ("per_hour", 3_600_000),
    ]
    assert ServiceUnit.PER_SESSION.unit_ms is None
    assert ServiceUnit("per_gb").is_time_based is False
    assert ServiceUnit.PER_MINUTE.is_time_based is True


@pytest.mark.parametrize("who", ["alice", "olga"])
def test_only_vendors_list_services(request, make_service, who):
    with pytest.raises(exceptions.PermissionDenied):
        make_service(request.getfixturevalue(who))
    assert Service.objects.count() == 0


def test_a_deactivated_vendor_cannot_list(victor, make_service):
    victor.is_active = False
    victor.save(update_fields=["is_active"])

    with pytest.raises(exceptions.PermissionDenied):
        make_service(victor)


def test_rules_hold_whoever_calls(victor, make_service):
    with pytest.raises(exceptions.ValidationError):
        make_service(victor, rate=0)
    with pytest.raises(exceptions.ValidationError):
        make_service(victor, category="Pay Per Hour")  # a subcategory is not a category
    with pytest.raises(exceptions.ValidationError):
        make_service(victor, category="Usage-Based", subcategory="Pay Per Hour")
    with pytest.raises(exceptions.ValidationError):
        make_service(victor, token="DOGE")
    assert Service.objects.count() == 0


def test_the_unique_index_backs_up_the_name_check(victor, make_service, monkeypatch):
    make_service(victor, name="Studio")
    # As if a concurrent request had passed the check first: the index still refuses.
    monkeypatch.setattr(services, "_name_is_taken", lambda **kwargs: False)

    with pytest.raises(Conflict):
        make_service(victor, name="STUDIO")
    assert Service.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value", "constraint"),
    [
        ("rate", 0, "marketplace_service_rate_positive"),
        ("rate", -1, "marketplace_service_rate_positive"),
        ("minimum_charge", -1, "marketplace_service_minimum_charge_not_negative"),
        ("free_seconds", -1, "marketplace_service_free_seconds_not_negative"),
        ("token", "DOGE", "marketplace_service_token_valid"),
        ("unit", "per_year", "marketplace_service_unit_valid"),
        ("type", "film", "marketplace_service_type_valid"),
    ],
)
def test_database_constraints(victor, make_service, field, value, constraint):
    service = make_service(victor)

    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        Service.objects.filter(pk=service.pk).update(**{field: value})


def test_a_deleted_service_cannot_be_active_in_the_database(victor, make_service):
    service = services.service_delete(service=make_service(victor))

    with pytest.raises(IntegrityError, match="marketplace_service_deleted_inactive"), transaction.atomic():
        Service.objects.filter(pk=service.pk).update(is_active=True)


@pytest.mark.parametrize("unit", ["per_session", "per_gb", "per_request", "per_transaction"])
def test_free_seconds_are_for_time_metered_units_only(victor, make_service, unit):
    timed = make_service(victor, unit="per_minute")

    with pytest.raises(exceptions.ValidationError) as created:
        make_service(victor, unit=unit, free_seconds=1)
    with pytest.raises(exceptions.ValidationError) as updated:
        services.service_update(service=timed, unit=unit, free_seconds=1)

    assert set(created.value.detail) == set(updated.value.detail) == {"free_seconds"}
    assert Service.objects.values_list("unit", "free_seconds").get() == ("per_minute", 0)


@pytest.mark.parametrize(("unit", "free_seconds"), [("per_session", 30), ("per_request", 1)])
def test_the_database_keeps_free_seconds_to_time_metered_units(victor, make_service, unit, free_seconds):
    timed = make_service(victor, unit="per_minute", free_seconds=free_seconds)
    other = make_service(victor, unit=unit)

    with pytest.raises(IntegrityError, match="marketplace_service_free_seconds_time_units"), transaction.atomic():
        Service.objects.filter(pk=timed.pk).update(
            unit=unit, max_session_cost=other.max_session_cost, max_event_quantity=other.max_event_quantity
        )
    with pytest.raises(IntegrityError, match="marketplace_service_free_seconds_time_units"), transaction.atomic():
        Service.objects.filter(pk=other.pk).update(free_seconds=free_seconds)


def test_update_refuses_unknown_fields(victor, make_service):
    with pytest.raises(TypeError):
        services.service_update(service=make_service(victor), vendor_id=1)


def test_update_saves_only_what_changed(victor, make_service):
    service = make_service(victor, name="Studio", tags=["a"])

    with CaptureQueriesContext(connection) as nothing:
        services.service_update(service=service, name="Studio", tags=["a"])
    with CaptureQueriesContext(connection) as tags_only:
        services.service_update(service=service, tags=["b"])

    # Nothing written (what changed is decided on the locked row, so it is read).
    assert [q["sql"] for q in nothing.captured_queries if q["sql"].startswith("UPDATE")] == []
    [update] = [q["sql"] for q in tags_only.captured_queries if q["sql"].startswith("UPDATE")]
    assert '"tags"' in update and '"updated_at"' in update and '"name"' not in update


def test_set_active_and_delete_refuse_a_deleted_service(victor, make_service):
    service = services.service_delete(service=make_service(victor))

    for call in (
        lambda: services.service_set_active(service=service, is_active=True),
        lambda: services.service_toggle_status(service=service),
        lambda: services.service_delete(service=service),
        lambda: services.service_update(service=service, name="Back"),
    ):
        with pytest.raises(exceptions.NotFound):
            call()
    service.refresh_from_db()
    assert (service.is_active, service.name) == (False, "Service 1")


def test_set_active_decides_on_the_row_not_on_a_copy_read_before_a_retirement(victor, make_service):
    """A copy read before the retirement committed is not deleted: activating it made an active
    retired service, which the database refused (an IntegrityError, a 500 in the admin)."""
    stale = services.service_set_active(service=make_service(victor), is_active=False)
    services.service_delete(service=Service.objects.get(pk=stale.pk))

    with pytest.raises(exceptions.NotFound):
        services.service_set_active(service=stale, is_active=True)
    assert Service.objects.filter(pk=stale.pk, is_active=False, deleted_at__isnull=False).exists()


def test_category_is_not_deletable_while_services_use_it(victor, make_service):
    make_service(victor, category="Usage-Based", subcategory="Storage Services")

    with pytest.raises(IntegrityError), transaction.atomic():
        category("Storage Services").delete()
