"""Idempotency-Key for money POSTs: the same key and body replay the first response and move
money once; the same key with another body is a 409.

The key row is inserted in the same database transaction as the money movement, before it: a
concurrent request with the same key waits on the unique index until the first commits, then
replays its response. A request that fails (4xx raised, or a crash) rolls its key back with
everything else, so a retry runs afresh.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from djangorestframework_camel_case.render import CamelCaseJSONRenderer
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from paygo.api.errors import Conflict
from paygo.api.parsers import exact_numbers
from paygo.db import delete_in_batches
from wallets.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Printable ASCII without spaces or commas: a header sent twice reaches Django as its values joined
# by a comma, which is then no key at all rather than a third one.
_KEY_PATTERN = re.compile(r"^[\x21-\x2b\x2d-\x7e]{1,255}$")
_KEY_RULE = "Idempotency-Key must be one value of 1 to 255 printable characters, without spaces or commas."
# How long a key replays its first answer. A client retries a request whose answer it lost within
# minutes (a mobile client back online within hours); a week covers both with room to spare, and
# a key used after it is a new request: the look-up ignores an older key whether or not the daily
# expiry has deleted it yet (_past_retention), so what a retry does never depends on when it ran.
KEY_RETENTION = timedelta(days=7)
# How views that honour the header document it in the OpenAPI schema.
SCHEMA_PARAMETER = OpenApiParameter(
    HEADER,
    {"type": "string", "pattern": _KEY_PATTERN.pattern, "minLength": 1, "maxLength": 255},
    OpenApiParameter.HEADER,
    description=f"Replays the first response for the same key and body for {KEY_RETENTION.days} days after "
    "the first request; a request with a key older than that is a new request.",
)

T = TypeVar("T")


class _Discard(Exception):
    """Roll the key back with everything else and answer this response."""

    def __init__(self, response: Response):
        self.response = response


def replays_first(post):
    """Decorates a money write's view method: a key used before answers its first answer before
    anything reads the request, its validation included. Validated first, the retry of a transfer
    that went through was refused once its token was deactivated (or anything it checks changed):
    a client told 400 about money that moved."""

    @functools.wraps(post)
    def replaying(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is not None and _KEY_PATTERN.match(key):
            earlier = IdempotencyKey.objects.filter(user=request.user, key=key).first()
            if earlier is not None and not _past_retention(earlier):
                return _replay(earlier, request, _fingerprint(request))
        return post(view, request, *args, **kwargs)

    return replaying


def idempotent(
    request: Request,
    execute: Callable[[T | None], Response],
    *,
    prepare: Callable[[], T] | None = None,
) -> Response:
    """Run a money POST under the request's Idempotency-Key (if it sent one).

    `prepare` runs first, outside any database transaction (slow I/O: Chipi); `execute(prepared)`
    runs inside the transaction that records the key, and must be where money moves.
    """
    # The body is read (and a malformed one refused) with a key or without: an operation that takes
    # none read it only for the key's fingerprint, so `null` or broken JSON was a 400 with a key and
    # ignored without one.
    request.data  # noqa: B018
    key = request.headers.get(HEADER)
    if key is None:
        return execute(prepare() if prepare else None)
    if not _KEY_PATTERN.match(key):
        raise exceptions.ValidationError({"idempotency_key": [_KEY_RULE]})
    fingerprint = _fingerprint(request)
    if prepare is None:
        return _run(request, key, fingerprint, execute, None)
    # `prepare` runs before the key is recorded, and may act outside the database (the Chipi
    # sandbox's simulated payment): requests with one key take turns through it, and a later one
    # finds the key the first recorded and replays its answer.
    with _one_at_a_time(request.user.pk, key):
        return _run(request, key, fingerprint, execute, prepare)


def _run(request: Request, key: str, fingerprint: str, execute, prepare) -> Response:
    earlier = IdempotencyKey.objects.filter(user=request.user, key=key).first()
    if earlier is not None and not _past_retention(earlier):
        return _replay(earlier, request, fingerprint)

    prepared = prepare() if prepare else None
    try:
        with transaction.atomic():
            if earlier is not None:
                # Forgotten, but not deleted by the daily expiry yet: its row gives way to this
                # request's (a concurrent retry deleting it too waits for us, then replays ours).
                IdempotencyKey.objects.filter(pk=earlier.pk).delete()
            try:
                with transaction.atomic():
                    record = IdempotencyKey.objects.create(
                        user=request.user,
                        key=key,
                        method=request.method,
                        # For the operator's eye (the fingerprint holds the whole path): a route
                        # takes an id in spellings of any length ("0000...1"), and a path longer
                        # than the column failed the insert, a 500.
                        path=request.path[: IdempotencyKey._meta.get_field("path").max_length],
                        fingerprint=fingerprint,
                        response_status=0,
                        response_body={},
                    )
            except IntegrityError:
                # Another request with this key committed while we prepared: answer as it did.
                return _replay(IdempotencyKey.objects.get(user=request.user, key=key), request, fingerprint)
            response = execute(prepared)
            if response.status_code >= 400:
                raise _Discard(response)
            record.response_status = response.status_code
            record.response_body = json.loads(CamelCaseJSONRenderer().render(response.data))
            record.save(update_fields=["response_status", "response_body"])
            return response
    except _Discard as discard:
        return discard.response


@contextlib.contextmanager
def _one_at_a_time(user_id: int, key: str):
    """A PostgreSQL advisory lock on (user, key) for the block, outside any transaction."""
    name = f"idempotency:{user_id}:{key}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [name])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [name])


def _fingerprint(request: Request) -> str:
    # Numbers as the client wrote them: two amounts that round to one float are two requests.
    canonical = json.dumps(
        {"method": request.method, "path": request.path, "body": exact_numbers(request.data)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(record: IdempotencyKey, request: Request, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        raise Conflict(
            {
                "message": "This Idempotency-Key was used with another request; use a new key for a new request.",
                "code": "idempotency_key_reused",
            }
        )
    if record.response_status == 0:  # cannot happen outside a transaction; kept as a guard
        raise Conflict({"message": "A request with this Idempotency-Key is in progress.", "code": "in_progress"})
    return Response(record.response_body, status=record.response_status, headers={REPLAYED_HEADER: "true"})


def idempotency_keys_expire(*, now: datetime) -> int:
    """Forget the keys created more than KEY_RETENTION before `now` (daily, wallets.idempotency_expire);
    returns how many went."""
    return delete_in_batches(IdempotencyKey.objects.filter(created_at__lt=now - KEY_RETENTION).order_by("created_at"))


def _past_retention(record: IdempotencyKey) -> bool:
    """Forgotten, as idempotency_keys_expire forgets it, whether it has run since or not."""
    return record.created_at < timezone.now() - KEY_RETENTION
