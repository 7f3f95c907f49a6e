"""to_minor is exact beyond the default 28 digits of Decimal arithmetic."""

from __future__ import annotations

import pytest

from paygo.api.amounts import AmountError, to_minor


def test_thirty_digit_amounts_are_exact():
    assert to_minor("999999999999.999999999999999999", 18) == 999_999_999_999_999_999_999_999_999_999


def test_a_tiny_excess_decimal_beyond_28_digits_is_still_refused():
    with pytest.raises(AmountError, match="at most 6 decimal places"):
        to_minor("1.00000000000000000000000000001", 6)
