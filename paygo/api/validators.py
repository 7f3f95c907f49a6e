"""Rules about how input is given, shared by the serializers of every app."""

from __future__ import annotations

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
