"""The API's JSON parser: camelCase keys to snake_case, and numbers that keep what the client wrote.

Python's json turns a number with a fraction or an exponent into a float, which has 15 to 17
significant digits: 12345678901.234567 would arrive as 12345678901.234568, and an amount parsed
from it would move a unit the client never sent. Such numbers are parsed into `JSONNumber`, a
float (so that every other field, JSON storage and comparison behave as before) that also keeps
the client's text, from which amounts are read exactly (paygo.api.amounts.parse_decimal).
An object naming a member twice is a parse error (400; I-JSON, RFC 7493, refuses it: Python's json
keeps the last value, another reader of the same body the first), and so is, in a request body, one
naming a field twice in two spellings ("recipientId" and "recipient_id" are one field once read).
NaN, Infinity and numbers beyond a float's range are a parse error (400), as in strict JSON, and so
is a string or key holding a lone surrogate (U+D800 to U+DFFF): a JSON escape can spell one
("\\ud800"), but it is no character (RFC 8259, section 8.2; I-JSON, RFC 7493, refuses it), UTF-8
cannot encode it and PostgreSQL cannot store it. The escape is the only way one gets in: a body,
query string or form is decoded from UTF-8, which has none.

Every reader of JSON (json.loads, the camelCase conversion, the API's walks over a body) recurses
once per level of nesting, and a few hundred levels exhaust Python's stack: `json_loads` refuses
JSON nested deeper than API_JSON_MAX_DEPTH before any of them runs. Every JSON a client sends is
read with it: request bodies here, Chipi's webhook, WebSocket frames (paygo.ws).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from django.conf import settings
from djangorestframework_camel_case.parser import CamelCaseJSONParser
from djangorestframework_camel_case.util import underscoreize
from rest_framework.exceptions import ParseError

from paygo.api.text import strings_in


class JSONNumber(float):
    """A JSON number with a fraction or an exponent: its float value, and `text` as written."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> JSONNumber:
        number = super().__new__(cls, text)
        if not math.isfinite(number):
            raise ValueError(f"Number out of range: {text[:40]}")
        number.text = text
        return number


class JSONRefused(ValueError):
    """JSON that is refused though Python's json would read it; `code` says why."""

    code = "parse_error"

    def parse_error(self) -> ParseError:
        """The 400 a client gets for it."""
        return ParseError(str(self), code=self.code)


class JSONTooDeep(JSONRefused):
    """JSON nested deeper than the limit."""

    code = "json_too_deep"

    def __init__(self, limit: int):
        super().__init__(f"The JSON nests deeper than {limit} levels.")


class JSONNotText(JSONRefused):
    """A string or key of the JSON holds a lone surrogate."""

    code = "lone_surrogate"

    def __init__(self, surrogate: str):
        super().__init__(
            f"The JSON holds a lone surrogate (U+{ord(surrogate):04X}), which is not a character: "
            "send text as UTF-8, or escape a character beyond U+FFFF as a pair."
        )


class JSONDuplicateName(JSONRefused):
    """An object of the JSON names a member twice (I-JSON, RFC 7493, section 2.3: Python's json keeps
    the last, where another reader of the same body may take the first)."""

    code = "duplicate_name"

    def __init__(self, name: str):
        super().__init__(
            f"The JSON names a member twice ({name[:40]!r}): send each once."
            if name
            else "The JSON names a member twice (in camelCase and in snake_case, say): send each once."
        )


def _object(pairs: list[tuple[str, Any]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise JSONDuplicateName(name)
            seen.add(name)
    return data


def _names(data: Any) -> int:
    """How many members the objects of parsed JSON have in all (walked with a stack)."""
    count, pending = 0, [data]
    while pending:
        value = pending.pop()
        if type(value) is dict:
            count += len(value)
            pending.extend(value.values())
        elif type(value) is list:
            pending.extend(value)
    return count


# A JSON string with its escapes, to its closing quote or (unterminated) to the end of the text:
# with the closing quote optional, no match ever backtracks, so the scan stays linear.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_json_depth(text: str, limit: int) -> None:
    """Raise JSONTooDeep when the JSON `text` nests deeper than `limit` arrays and objects.

    Linear, and without recursion: brackets inside strings do not count. Malformed text is
    measured as best it can be; the parser refuses it afterwards anyway.
    """
    if text.count("[") + text.count("{") <= limit:
        return
    depth = 0
    for bracket in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > limit:
            raise JSONTooDeep(limit)


def json_loads(text: str | bytes) -> Any:
    """A client's JSON: nested at most API_JSON_MAX_DEPTH deep, numbers kept exactly (JSONNumber),
    NaN, Infinity, lone surrogates and a name twice in one object refused. Any refusal is a
    ValueError (a JSONRefused, with its code, for the depth, the surrogates and the names)."""
    if isinstance(text, bytes | bytearray):
        text = text.decode(json.detect_encoding(text))
    check_json_depth(text, settings.API_JSON_MAX_DEPTH)
    data = json.loads(text, parse_float=JSONNumber, parse_constant=_refuse_constant, object_pairs_hook=_object)
    if "\\u" in text:  # only an escape spells a surrogate: decoded text has none
        for string in strings_in(data):
            if found := _SURROGATE.search(string):
                raise JSONNotText(found.group())
    return data


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
            data = json_loads(stream.read().decode(encoding))
        except JSONRefused as exc:
            raise exc.parse_error() from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except LookupError:  # a charset that is no text encoding (the servers' requests refuse it first)
            raise ParseError(f"JSON parse error - {encoding!r} is not a text encoding") from None
        if type(data) is not dict:
            # Every operation takes an object; DRF would say "No data provided" (code "null") of a
            # null and "Invalid data. Expected a dictionary" of the rest.
            raise ParseError("Send a JSON object.", code="invalid")
        converted = underscoreize(data, **self.json_underscoreize)
        if _names(converted) != _names(data):  # "recipientId" and "recipient_id": one field, twice
            raise JSONDuplicateName("").parse_error()
        return converted
