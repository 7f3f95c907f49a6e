"""Model fields shared by the apps."""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class MinorUnitsField(models.DecimalField):
    """An integer amount of an asset's minor units, stored as NUMERIC(38,0).

    BIGINT would overflow at 9.2 ETH (18 decimals); NUMERIC(38,0) holds any sane amount of any
    asset exactly. Python sees a plain int, never a Decimal or a float.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 38)
        kwargs.setdefault("decimal_places", 0)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        for key, default in (("max_digits", 38), ("decimal_places", 0)):
            if kwargs.get(key) == default:
                kwargs.pop(key)
        return name, path, args, kwargs

    def from_db_value(self, value, expression, connection):
        return None if value is None else int(value)

    def to_python(self, value):
        if value is None or isinstance(value, int):
            return value
        number = super().to_python(value)
        if number != number.to_integral_value():
            raise ValueError("minor units must be whole")
        return int(number)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        # Sent as NUMERIC, the column's own type, whatever the int's size.
        return Decimal(value) if isinstance(value, int) else value

    def run_validators(self, value):
        # DecimalField's validator reads a Decimal's digits: the int this field holds is checked as one
        # (a model form's full_clean of it failed, a 500).
        super().run_validators(Decimal(value) if isinstance(value, int) else value)
