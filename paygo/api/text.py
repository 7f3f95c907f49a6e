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

from django import forms
from django.core.exceptions import ValidationError
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
INVISIBLE_MESSAGE = "Use visible characters only (no control, zero-width or text-direction characters)."


class InvisibleCharacters(ValueError):
    """Text holding characters that show nothing or reorder what follows."""


def _hides(char: str, *, multiline: bool) -> bool:
    """Whether `char` shows nothing or reorders what follows: a control, a format character
    (zero-width spaces, direction overrides), a private-use, surrogate or unassigned code point;
    the zero-width joiner and, in multiline text, the newline aside."""
    if char in _KEPT_FORMAT or (multiline and char == "\n"):
        return False
    return unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn")


def _one_form(text: str, *, multiline: bool) -> str:
    text = unicodedata.normalize("NFKC", text)
    if not multiline:
        return " ".join(text.split())
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(" ".join(line.split()) for line in lines).strip("\n")


def visible_text(text: str, *, multiline: bool = False) -> str:
    """Text people read, in which nothing hides: in one Unicode form (NFKC: "Café" typed either way,
    a full-width "Foo" as "Foo"), its runs of spaces as one, and without characters that show
    nothing or reorder what follows (controls, zero-width spaces, direction overrides): those are
    refused, InvisibleCharacters. With `multiline`, its line breaks are kept (each written as one
    newline); without, they are spaces. The one rule of the API's fields and the admin's below."""
    text = _one_form(text, multiline=multiline)
    if any(_hides(char, multiline=multiline) for char in text):
        raise InvisibleCharacters(INVISIBLE_MESSAGE)
    return text


def without_hidden_characters(text: str, *, multiline: bool = False) -> str:
    """`text` without what visible_text refuses, dropped instead (a control that spaces, a tab, as a
    space; without `multiline`, line breaks too), and otherwise as written: for text put before
    people that may have been stored before visible_text checked it."""
    if multiline:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = []
    for char in text:
        if not _hides(char, multiline=multiline):
            kept.append(char)
        elif char.isspace():
            kept.append(" ")
    return "".join(kept)


class VisibleTextField(serializers.CharField):
    """Text people read, in which nothing hides (visible_text) in the API. With `multiline`, its line
    breaks are kept; without, they are spaces."""

    default_error_messages = {"invisible": INVISIBLE_MESSAGE}

    def __init__(self, *, multiline: bool = False, **kwargs):
        self.multiline = multiline
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> str:
        try:
            text = visible_text(super().to_internal_value(data), multiline=self.multiline)
        except InvisibleCharacters:
            self.fail("invisible")
        if not text and not self.allow_blank:
            self.fail("blank")
        return text


class NameField(VisibleTextField):
    """A name people read and tell apart (a service's, a business's, a user's), as visible text on
    one line. Names that looked the same were two names, and one could pose as another."""


class VisibleTextFormField(forms.CharField):
    """VisibleTextField's rule in a Django form (the admin's). With `multiline`, its line breaks are
    kept; without, they are spaces."""

    def __init__(self, *, multiline: bool = False, **kwargs):
        self.multiline = multiline
        super().__init__(**kwargs)

    def to_python(self, value) -> str:
        value = super().to_python(value)
        if value in self.empty_values:
            return value
        try:
            return visible_text(value, multiline=self.multiline)
        except InvisibleCharacters:
            raise ValidationError(INVISIBLE_MESSAGE, code="invisible") from None


class NameFormField(VisibleTextFormField):
    """NameField's rule in a Django form (the admin's): a name as visible text on one line."""
