"""The API's JSON parser: camelCase keys to snake_case, and numbers that keep what the client wrote.

Python's json turns a number with a fraction or an exponent into a float, which has 15 to 17
significant digits: 12345678901.234567 would arrive as 12345678901.234568, and an amount parsed
from it would move a unit the client never sent. Such numbers are parsed into `JSONNumber`, a
float (so that every other field, JSON storage and comparison behave as before) that also keeps
the client's text, from which amounts are read exactly (paygo.api.amounts.parse_decimal).
NaN, Infinity and numbers beyond a float's range are a parse error (400), as in strict JSON.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from django.conf import settings
from djangorestframework_camel_case.parser import CamelCaseJSONParser
from djangorestframework_camel_case.util import underscoreize
from rest_framework.exceptions import ParseError


class JSONNumber(float):
    """A JSON number with a fraction or an exponent: its float value, and `text` as written."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> JSONNumber:
        number = super().__new__(cls, text)
        if not math.isfinite(number):
            raise ValueError(f"Number out of range: {text[:40]}")
        number.text = text
        return number


def _refuse_constant(name: str):
    # NaN and Infinity are not JSON (Python's json takes them), and no column can store them.
    raise ValueError(f"{name} is not a JSON value")


def exact_numbers(data: Any) -> Any:
    """A copy of parsed JSON with each JSONNumber as the Decimal of its text: for comparing two
    bodies exactly (as floats, 12345678901.234567 and ...568 are the same number).

    Walked with a stack rather than recursion: a body may nest as deep as the parser allows.
    """
    root = [data]
    pending: list[tuple[Any, Any]] = [(root, 0)]
    while pending:
        container, key = pending.pop()
        value = container[key]
        if isinstance(value, JSONNumber):
            container[key] = Decimal(value.text)
        elif type(value) is dict:
            container[key] = copy = dict(value)
            pending.extend((copy, name) for name in copy)
        elif type(value) is list:
            container[key] = copy = list(value)
            pending.extend((copy, index) for index in range(len(copy)))
    return root[0]


class JSONParser(CamelCaseJSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(stream.read().decode(encoding), parse_float=JSONNumber, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        return underscoreize(data, **self.json_underscoreize)
