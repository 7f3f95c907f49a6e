"""The one error format of the API: {"message", "statusCode", "code", "errors"?}."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from django_ratelimit.exceptions import Ratelimited
from psycopg_pool import PoolTimeout
from redis.exceptions import RedisError
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger("paygo.api")


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"

    def __init__(self, detail: Any = None, code: str | None = None, *, extra: dict[str, Any] | None = None):
        super().__init__(detail, code)
        # Fields of the body beside its message and code, as they are: DRF turns every value of a
        # detail into a string (a number "2", a null "None"), which a client reads wrongly.
        self.extra = extra or {}


class PaymentRequired(exceptions.APIException):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    default_detail = "Insufficient funds."
    default_code = "insufficient_funds"


class TooManyRequests(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Too many requests; slow down and try again later."
    default_code = "rate_limited"


class UpstreamUnavailable(exceptions.APIException):
    """A service PayGo depends on (Chipi) did not answer: nothing was done, try again later."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A payment network service is unavailable; nothing was done. Try again shortly."
    default_code = "upstream_unavailable"


class Unavailable(exceptions.APIException):
    """PayGo cannot do this for now for a reason of its own, which its operators must mend (not the
    client's mistake, not a service that did not answer): nothing was done."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "This is unavailable for now; nothing was done."
    default_code = "unavailable"


class DatabaseBusy(exceptions.APIException):
    """Every connection of the process's pool stayed busy for DATABASE_POOL_TIMEOUT: the request was
    refused before it read or wrote anything, and may be sent again as it is."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The service is busy: no database connection was free. Nothing was done; try again shortly."
    default_code = "database_busy"
    wait = 2  # seconds, the Retry-After


class CacheUnavailable(exceptions.APIException):
    """Redis (the cache, the rate limits' counters, the broker) failed or did not answer within
    REDIS_TIMEOUT_SECONDS. What it guards was not done (what a request writes commits only after
    it, and what runs after a commit does not raise); the request may be sent again as it is."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The service is busy: its cache did not answer. Nothing was done; try again shortly."
    default_code = "cache_unavailable"
    wait = 2  # seconds, the Retry-After


def pool_exhausted(exc: BaseException | None) -> bool:
    """Whether `exc` is a connection pool that stayed exhausted (psycopg_pool's PoolTimeout, which
    Django re-raises as its own OperationalError caused by it)."""
    while exc is not None:
        if isinstance(exc, PoolTimeout):
            return True
        exc = exc.__cause__
    return False


def unavailable(exc: BaseException | None) -> type[DatabaseBusy | CacheUnavailable] | None:
    """Whether `exc` is a resource that was busy or did not answer (a 503 to send again), and which."""
    if pool_exhausted(exc):
        return DatabaseBusy
    if isinstance(exc, RedisError):
        return CacheUnavailable
    return None


def unavailable_response(refusal: type[DatabaseBusy | CacheUnavailable]) -> JsonResponse:
    """A 503 with its Retry-After, for code outside DRF."""
    response = error_response(503, refusal.default_detail, code=refusal.default_code)
    response["Retry-After"] = str(refusal.wait)
    return response


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "too_large"


# A request refused for its form before any view reads it (a forged Host, an unreadable header or
# chunk): deploy/nginx.conf's @bad_request and paygo/server.py answer with the same words.
MALFORMED = "The request was refused as malformed."

_DEFAULT_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    402: "insufficient_funds",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "server_error",
    503: "upstream_unavailable",
}


def error_body(
    status_code: int,
    message: str | None = None,
    *,
    code: str | None = None,
    errors: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": message or _reason(status_code),
        "statusCode": status_code,
        "code": code or _DEFAULT_CODES.get(status_code, "error"),
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def error_response(status_code: int, message: str | None = None, *, code: str | None = None) -> JsonResponse:
    """A plain Django response in the error format, for code outside DRF (middleware, handlers)."""
    return JsonResponse(error_body(status_code, message, code=code), status=status_code)


def exception_to_response(exc: Exception) -> JsonResponse | None:
    """Known Django exceptions raised outside DRF views; None means 'a bug: answer 500'."""
    if isinstance(exc, Http404):
        return error_response(404)
    if isinstance(exc, Ratelimited):
        return error_response(429, TooManyRequests.default_detail)
    if isinstance(exc, DjangoPermissionDenied):
        return error_response(403)
    if isinstance(exc, RequestDataTooBig):
        return error_response(413, str(exc) or None)
    if isinstance(exc, SuspiciousOperation):
        return error_response(400, MALFORMED, code="bad_request")
    if refusal := unavailable(exc):
        return unavailable_response(refusal)
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every DRF error, and Django's, in the one format."""
    if isinstance(exc, Ratelimited):
        exc = TooManyRequests()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(MALFORMED)
    elif refusal := unavailable(exc):
        exc = refusal()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: ApiErrorMiddleware logs it and answers 500 in the same format

    headers: dict[str, str] = {}
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        # DRF downgrades these to 403 on views without an authenticator (login, refresh);
        # a bad credential is a 401 everywhere.
        exc.status_code = status.HTTP_401_UNAUTHORIZED
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    if isinstance(exc, exceptions.ValidationError):
        body = {**_validation_body(exc.detail), **getattr(exc, "extra", {})}
    else:
        detail = exc.detail
        extra: dict[str, Any] = {}
        if isinstance(detail, dict):
            # Structured details (e.g. {"message": ..., "needed": ...}) keep their extra fields.
            extra = {k: v for k, v in detail.items() if k not in ("message", "detail", "code")}
            message = str(detail.get("message") or detail.get("detail") or "")
        elif isinstance(detail, list):
            message = str(detail[0]) if detail else ""
        else:
            message = str(detail)
        code = error_code(exc)
        if isinstance(exc, exceptions.ParseError) and message.startswith("JSON parse error"):
            code = "malformed_json"
        body = error_body(exc.status_code, message, code=code, **{**extra, **getattr(exc, "extra", {})})
    return Response(body, status=exc.status_code, headers=headers)


# The codes DRF's fields and Django's validators give a value of the wrong shape (missing, too long,
# not a number, ...), and PayGo's own fields (a hex number past Starknet's field). A 400 for one of
# them is `invalid`: the field's message says what. Any other code is the reason a rule refused a
# well-formed value (`insufficient_funds`, `self_transfer`, ...), the one a client branches on, and
# is the body's code.
SHAPE_CODES = frozenset(
    {
        *("invalid", "required", "null", "blank", "empty", "invalid_choice", "does_not_exist", "incorrect_type"),
        *("max_length", "min_length", "max_value", "min_value", "max_digits", "max_decimal_places"),
        *("max_whole_digits", "max_string_length", "overflow", "date", "datetime", "make_aware"),
        *("not_a_list", "not_a_dict", "no_name", "invalid_image", "invalid_unicode", "incorrect_match"),
        *("no_match", "unique", "step_size", "null_characters_not_allowed", "surrogate_characters_not_allowed"),
        "not_a_felt",
    }
)


def validation_code(detail: Any) -> str:
    """The code of a 400 for `detail` (a ValidationError's, or one field's): the code of its first
    error, unless that only says the value's shape was wrong."""
    while isinstance(detail, dict | list | tuple) and detail:
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    code = getattr(detail, "code", None)
    return code if code and code not in SHAPE_CODES else "invalid"


def _validation_body(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        errors = {key: _plain(value) for key, value in detail.items()}
        general = errors.pop("non_field_errors", None)
        if general and not errors:
            return error_body(400, _first(general), code=validation_code(detail["non_field_errors"]))
        field, messages = next(iter(errors.items())) if errors else (None, None)
        message = f"{camel(field)}: {_first(messages)}" if field else "Invalid input."
        if general:
            errors["nonFieldErrors"] = general
        code = validation_code(detail[field]) if field else "invalid"
        return error_body(400, message, code=code, errors=errors)
    messages = _plain(detail)
    return error_body(400, _first(messages) or "Invalid input.", code=validation_code(detail))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def _first(value: Any) -> str:
    while isinstance(value, list | tuple) and value:
        value = value[0]
    if isinstance(value, dict) and value:
        key, inner = next(iter(value.items()))
        return f"{camel(key)}: {_first(inner)}"
    return str(value) if value else ""


def error_code(exc: exceptions.APIException) -> str:
    """The `code` of the API's answer to `exc`, other than a 400's (the one a client branches on);
    also the reason of a socket closed for what would be a 401 (paygo.ws)."""
    detail = exc.detail
    if isinstance(detail, dict) and "code" in detail:  # simplejwt's exceptions: {"detail", "code"}
        return str(detail["code"])
    return _code_of(detail) or exc.default_code


def _code_of(detail: Any) -> str | None:
    while isinstance(detail, list | tuple) and detail:
        detail = detail[0]
    return getattr(detail, "code", None)


def camel(name: str) -> str:
    """A field's name as the API spells it (recipient_id -> recipientId)."""
    head, *rest = str(name).split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _reason(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase + "."
    except ValueError:
        return "Error."
