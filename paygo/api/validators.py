"""Rules about how input is given, shared by the serializers of every app."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from paygo.api.errors import camel


def exactly_one_of(attrs: Mapping[str, Any], *fields: str, what: str) -> str:
    """The one of `fields` that validated `attrs` holds; a 400 when they hold none or several.

    For a thing the client may name in several ways (a recipient by id or by email): naming it
    twice is refused even when both name the same thing, rather than one silently winning. A new
    way of naming it is one more field here.
    """
    names = [camel(field) for field in fields]
    spelled = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
    given = [field for field in fields if field in attrs]
    if not given:
        raise serializers.ValidationError({fields[0]: [f"Name {what}: {spelled}."]})
    if len(given) > 1:
        message = f"Name {what} one way only: {spelled}."
        raise serializers.ValidationError({field: [message] for field in given})
    return given[0]


# A whole number as text: ASCII digits and nothing else. Unsigned: every whole number the API takes
# is an id or a count (a quantity, seconds, a version), none of which a client writes with a sign;
# "+1" read as 1 was staff's look at user 1's dashboard. (An amount, which staff may give as a debit,
# has its own rule with a sign: paygo.api.amounts.DECIMAL_TEXT.)
WHOLE_NUMBER_TEXT = re.compile(r"[0-9]+")


class WholeNumberField(serializers.IntegerField):
    """An integer the client sends: a JSON integer, or a string of ASCII digits (a query parameter,
    a form field). DRF's IntegerField reads int(str(x)), which also takes other scripts' digits
    (Arabic-Indic one and zero as 10), "1_000", spaces around, 10.0 and a sign: none is a number a
    client means, and a usage report's quantity so read was billed. (A JSON integer's sign is its
    value's: min_value bounds it.)"""

    def to_internal_value(self, data: Any) -> int:
        is_integer = isinstance(data, int) and not isinstance(data, bool)
        if not (is_integer or (isinstance(data, str) and WHOLE_NUMBER_TEXT.fullmatch(data))):
            self.fail("invalid")
        return super().to_internal_value(data)
