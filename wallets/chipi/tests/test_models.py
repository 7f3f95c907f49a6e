"""RawAmountField: raw amounts round-trip exactly, on PostgreSQL and on SQLite."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from wallets.chipi.models import RawAmountField, SandboxCustody

HUGE = 10**37 + 1  # far past a BIGINT and past the 15 digits SQLite's floats keep

sqlite = SimpleNamespace(vendor="sqlite")
postgresql = SimpleNamespace(vendor="postgresql")


def test_on_sqlite_it_is_text_so_no_digit_is_lost():
    field = RawAmountField()

    assert field.db_type(sqlite) == "varchar(40)"
    assert field.get_db_prep_value(HUGE, sqlite) == str(HUGE)
    assert field.from_db_value(str(HUGE), None, sqlite) == HUGE


def test_on_postgresql_it_is_numeric():
    field = RawAmountField()

    assert field.db_type(postgresql) == "numeric(38,0)"
    assert field.get_db_prep_value(HUGE, postgresql) == HUGE


@pytest.mark.django_db
def test_it_round_trips_through_the_database():
    SandboxCustody.objects.create(token="ETH", balance=HUGE)

    assert SandboxCustody.objects.get(token="ETH").balance == HUGE
    assert SandboxCustody.objects.filter(balance__gte=HUGE).exists()
    assert not SandboxCustody.objects.filter(balance__gt=HUGE).exists()
