"""Text the database can keep: PostgreSQL refuses NUL (U+0000) in text and jsonb, and UTF-8 has no
lone surrogates (U+D800 to U+DFFF, which a JSON body may still spell as "\\ud800").

Either one reaching a query or an INSERT is an error of the database driver, a 500; this checks
input first so that the client gets a 400 naming the field. DRF's CharField already refuses both
on its own; the fields here are the others that pass a client's text to the database (lookups by
name, JSON).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

NUL = "\x00"
NUL_MESSAGE = "Must not contain the NUL character."

_no_surrogates = ProhibitSurrogateCharactersValidator()


def _strings(value: Any) -> Iterator[str]:
    """Every string in `value`: itself, or each key and string of JSON nested in dicts and lists.

    Walked with a list rather than recursion: a client's JSON may be nested as deep as the parser
    allows, deeper than Python's recursion limit leaves room for here.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)


def contains_nul(value: Any) -> bool:
    """Whether `value` (a string, or JSON of dicts and lists) holds a NUL in any key or string."""
    return any(NUL in text for text in _strings(value))


def validate_storable_text(value: Any) -> None:
    """A DRF validator (and a check for a field's to_internal_value): a 400 when `value`, a string
    or JSON, holds text the database cannot store."""
    if contains_nul(value):
        raise serializers.ValidationError(NUL_MESSAGE, code="null_characters_not_allowed")
    for text in _strings(value):
        _no_surrogates(text)  # DRF's own check and message, as its CharField gives
