"""Instants as the API writes them, in every answer and live event."""

from __future__ import annotations

from datetime import datetime

from rest_framework.fields import DateTimeField

_FIELD = DateTimeField()


def instant(value: datetime) -> str:
    """`value` as DRF's DateTimeField writes it (ISO 8601 in UTC with "Z", microseconds when it has
    them): a time a view or a live event writes reads as one a serializer writes ("+00:00" beside
    "Z" in one answer made a client parse two spellings)."""
    return _FIELD.to_representation(value)
