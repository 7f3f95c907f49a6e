"""The API's JSON parser: camelCase keys to snake_case, and numbers that keep what the client wrote.

Python's json turns a number with a fraction or an exponent into a float, which has 15 to 17
significant digits: 12345678901.234567 would arrive as 12345678901.234568, and an amount parsed
from it would move a unit the client never sent. Such numbers are parsed into `JSONNumber`, a
float (so that every other field, JSON storage and comparison behave as before) that also keeps
the client's text, from which amounts are read exactly (paygo.api.amounts.parse_decimal).
"""

from __future__ import annotations

import json

from django.conf import settings
from djangorestframework_camel_case.parser import CamelCaseJSONParser
from djangorestframework_camel_case.util import underscoreize
from rest_framework.exceptions import ParseError


class JSONNumber(float):
    """A JSON number with a fraction or an exponent: its float value, and `text` as written."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> JSONNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number


class JSONParser(CamelCaseJSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(stream.read().decode(encoding), parse_float=JSONNumber)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        return underscoreize(data, **self.json_underscoreize)
