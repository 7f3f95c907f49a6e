"""to_minor is exact beyond the default 28 digits of Decimal arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest

from paygo.api.amounts import AmountError, to_minor


def test_thirty_digit_amounts_are_exact():
    assert to_minor("999999999999.999999999999999999", 18) == 999_999_999_999_999_999_999_999_999_999


def test_a_tiny_excess_decimal_beyond_28_digits_is_still_refused():
    with pytest.raises(AmountError, match="at most 6 decimal places"):
        to_minor("1.00000000000000000000000000001", 6)


@pytest.mark.parametrize("text", ["1e-1000079", "1e-7", "0.0000001", "1E-999999999", "100e-9"])
def test_an_amount_too_small_for_the_asset_is_refused_whatever_its_exponent(text):
    # normalize() under a Decimal context underflowed 1e-1000079 to zero: no places, 0 minor units.
    with pytest.raises(AmountError, match="at most 6 decimal places"):
        to_minor(text, 6)


@pytest.mark.parametrize(
    ("text", "minor"), [("1e-6", 1), ("10e-7", 1), ("0.000001000", 1), ("1e6", 10**12), ("0.5E1", 5_000_000)]
)
def test_places_are_counted_without_trailing_zeros(text, minor):
    assert to_minor(text, 6) == minor


@pytest.mark.parametrize(("text", "places"), [("0e-1000079", 0), ("0", 0), ("1.50", 1), ("-2.25", 2), ("7E+3", 0)])
def test_decimal_places(text, places):
    from paygo.api.amounts import decimal_places

    assert decimal_places(Decimal(text)) == places


def test_the_parser_keeps_a_json_numbers_text_and_its_float_value():
    import io
    import json

    from paygo.api.amounts import parse_decimal
    from paygo.api.parsers import JSONParser

    data = JSONParser().parse(io.BytesIO(b'{"someAmount": 12345678901.234567, "nested": {"rate": 2e-3}, "count": 3}'))

    assert data["some_amount"] == 12345678901.234567  # still a float to everything else
    assert parse_decimal(data["some_amount"]) == Decimal("12345678901.234567")  # the float says ...568
    assert data["nested"]["rate"] == 0.002 and data["nested"]["rate"].text == "2e-3"
    assert data["count"] == 3 and type(data["count"]) is int
    assert json.loads(json.dumps(data)) == {"some_amount": 12345678901.234567, "nested": {"rate": 0.002}, "count": 3}


@pytest.mark.parametrize("text", ["1_000", "\uff11\uff12", "\u0663", "1 000", "0x10", "--1", "1e", ".", ""])
def test_only_ascii_decimal_text_is_an_amount(text):
    from paygo.api.amounts import parse_decimal

    with pytest.raises(AmountError):
        parse_decimal(text)


@pytest.mark.parametrize(
    ("text", "value"), [("12", "12"), ("+5", "5"), ("-1.5", "-1.5"), (".5", "0.5"), ("1e-6", "0.000001")]
)
def test_ascii_decimal_text_parses(text, value):
    from paygo.api.amounts import parse_decimal

    assert parse_decimal(text) == Decimal(value)
