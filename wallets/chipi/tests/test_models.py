"""RawAmountField: raw amounts round-trip exactly."""

from __future__ import annotations

import pytest
from django.db import connection

from wallets.chipi.models import RawAmountField, SandboxBalance

HUGE = 10**37 + 1  # far past a BIGINT and past the 15 significant digits a float keeps


def test_it_is_numeric():
    field = RawAmountField()

    assert field.db_type(connection) == "numeric(38,0)"
    assert field.get_db_prep_value(HUGE, connection) == HUGE


@pytest.mark.django_db
def test_it_round_trips_through_the_database():
    SandboxBalance.objects.create(address="0x" + "1" * 64, token="ETH", balance=HUGE)

    assert SandboxBalance.objects.get(token="ETH").balance == HUGE
    assert SandboxBalance.objects.filter(balance__gte=HUGE).exists()
    assert not SandboxBalance.objects.filter(balance__gt=HUGE).exists()
