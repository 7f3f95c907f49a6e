"""Amounts at the API edge: decimal strings and numbers in, integers of minor units inside.

Inputs are parsed with Decimal of the text the client wrote, so that a JSON number like 0.1 means
exactly 0.1 (the parser keeps each number's text, paygo.api.parsers). Nothing here ever touches a
float's value.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from paygo.api.parsers import JSONNumber

# What an amount may look like, in ASCII digits: Decimal() alone also takes "1_000" and other
# scripts' digits (full-width "12", Arabic-Indic "3"), which no client means as an amount.
DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

# No single amount may reach a trillion whole units: far beyond any real payment, and safely
# inside NUMERIC(38,0) even at 18 decimals.
MAX_WHOLE_UNITS = 10**12


def max_minor_units(decimals: int) -> int:
    """MAX_WHOLE_UNITS in minor units of an asset with `decimals` decimals: the bound, for an amount
    that reaches PayGo as an integer (a payment on chain, a swap's proceeds) rather than typed."""
    return MAX_WHOLE_UNITS * 10**decimals


class AmountError(ValueError):
    """An amount that cannot be accepted; str() is the message for the client."""


def parse_decimal(value: Any) -> Decimal:
    """A finite Decimal from a JSON string or number, or AmountError."""
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        raise AmountError("Must be a number or a decimal string.")
    # A JSON number keeps the text the client wrote (a float would have rounded it).
    text = (value.text if isinstance(value, JSONNumber) else str(value)).strip()
    if not text or len(text) > 64:
        raise AmountError("Must be a number or a decimal string.")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise AmountError("Must be a number or a decimal string.") from None
    if not number.is_finite():
        raise AmountError("Must be a finite number.")
    if not DECIMAL_TEXT.fullmatch(text):
        raise AmountError("Must be a number or a decimal string.")
    return number


def parse_amount(value: Any, *, allow_zero: bool = False, signed: bool = False) -> Decimal:
    """A finite, sane-sized Decimal, or AmountError: positive, or non-negative with allow_zero, or
    any non-zero amount when `signed` (an operator's adjustment: a credit or a debit)."""
    number = parse_decimal(value)
    if number < 0 and not signed:
        raise AmountError("Must not be negative.")
    if number == 0 and signed:
        raise AmountError("Must not be zero.")
    if number == 0 and not allow_zero:
        raise AmountError("Must be greater than zero.")
    if number.copy_abs() >= MAX_WHOLE_UNITS:  # abs() would round to the context's 28 digits
        raise AmountError(f"Must be less than {MAX_WHOLE_UNITS:,}.")
    return number


def to_minor(value: Any, decimals: int, *, allow_zero: bool = False, signed: bool = False) -> int:
    """Parse `value` (as parse_amount) into integer minor units of an asset with `decimals` decimals."""
    return minor_units(parse_amount(value, allow_zero=allow_zero, signed=signed), decimals)


def minor_units(number: Decimal, decimals: int) -> int:
    """A finite Decimal in integer minor units of an asset with `decimals` decimals, exactly, or
    AmountError when it has more places than that."""
    if decimal_places(number) > decimals:
        raise AmountError(f"Must have at most {decimals} decimal places.")
    # scaleb() moves the exponent and rounds the digits to the context's precision, by default 28
    # (an 18-decimal amount has up to 30): a precision of all its digits keeps it exact.
    with localcontext(prec=max(28, len(number.as_tuple().digits))):
        return int(number.scaleb(decimals))


def decimal_places(number: Decimal) -> int:
    """The decimal places of a finite `number`, trailing zeros aside, read from its digits and
    exponent: no context rounds them. (normalize() would: 1e-1000079 underflowed to 0 under the
    context's smallest exponent, passed as no places at all, and became 0 minor units.)"""
    _, digits, exponent = number.as_tuple()
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if trailing == len(digits):
        return 0  # zero, whatever its exponent
    return max(0, -(exponent + trailing))


def format_minor(amount: int, decimals: int) -> str:
    """Integer minor units -> decimal string at the asset's precision ("12.500000")."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(int(amount)), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}" if decimals else f"{sign}{whole}"


@extend_schema_field({"type": "string", "format": "decimal", "example": "12.500000"})
class AmountField(serializers.Field):
    """A positive amount as a Decimal; the serializer converts it with the asset's decimals.

    The asset often comes in the same payload (`token`), so the decimal-places check happens in
    `to_minor`, called from the serializer's validate().
    """

    default_error_messages = {"invalid": "{message}"}

    def __init__(self, *, allow_zero: bool = False, **kwargs: Any):
        self.allow_zero = allow_zero
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        try:
            return parse_amount(data, allow_zero=self.allow_zero)
        except AmountError as exc:
            self.fail("invalid", message=str(exc))

    def to_representation(self, value: Any) -> str:
        return str(value)


def minor_from_field(serializer_field: str, value: Decimal, decimals: int, *, allow_zero: bool = False) -> int:
    """to_minor for a validated AmountField value, raising a field ValidationError."""
    try:
        return to_minor(value, decimals, allow_zero=allow_zero)
    except AmountError as exc:
        raise serializers.ValidationError({serializer_field: [str(exc)]}) from None
