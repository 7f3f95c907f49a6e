"""Text the database can keep: PostgreSQL refuses NUL (U+0000) in text and jsonb.

A NUL reaching a query or an INSERT is an error of the database driver, a 500; this checks input
first so that the client gets a 400 naming the field. DRF's CharField already refuses it on its
own; the fields here are the others that pass a client's text to the database (lookups by name,
JSON). The other text no column keeps, a lone surrogate (U+D800 to U+DFFF), never gets this far:
only a JSON escape can spell one, and the API's JSON reader refuses it (paygo.api.parsers).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

from rest_framework import serializers

NUL = "\x00"
NUL_MESSAGE = "Must not contain the NUL character."


def strings_in(value: Any) -> Iterator[str]:
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
    return any(NUL in text for text in strings_in(value))


def validate_storable_text(value: Any) -> None:
    """A DRF validator (and a check for a field's to_internal_value): a 400 when `value`, a string
    or JSON, holds text the database cannot store."""
    if contains_nul(value):
        raise serializers.ValidationError(NUL_MESSAGE, code="null_characters_not_allowed")


# Format characters visible text may keep: the zero-width joiner, inside emoji sequences.
_KEPT_FORMAT = {"\u200d"}


class VisibleTextField(serializers.CharField):
    """Text people read, in which nothing hides: in one Unicode form (NFKC: "Café" typed either way,
    a full-width "Foo" as "Foo"), its runs of spaces as one, and without characters that show
    nothing or reorder what follows (controls, zero-width spaces, direction overrides). With
    `multiline`, its line breaks are kept (each written as one newline); without, they are spaces."""

    default_error_messages = {
        "invisible": "Use visible characters only (no control, zero-width or text-direction characters)."
    }

    def __init__(self, *, multiline: bool = False, **kwargs):
        self.multiline = multiline
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> str:
        text = unicodedata.normalize("NFKC", super().to_internal_value(data))
        if self.multiline:
            lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            text = "\n".join(" ".join(line.split()) for line in lines).strip("\n")
        else:
            text = " ".join(text.split())
        kept = _KEPT_FORMAT | {"\n"} if self.multiline else _KEPT_FORMAT
        if any(unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn") and char not in kept for char in text):
            self.fail("invisible")
        if not text and not self.allow_blank:
            self.fail("blank")
        return text


class NameField(VisibleTextField):
    """A name people read and tell apart (a service's, a business's), as visible text on one line.
    Names that looked the same were two names, and one could pose as another."""
