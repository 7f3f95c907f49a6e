"""The OpenAPI schema's plumbing: every operation's error answers, the paginated envelope, the rate
limits every operation answers with, and the sockets' contract beside the endpoints.

A client reads from the schema what it can be answered, so the schema lists every status an
operation can give. The errors all views share are derived from the view and from what the
operation documents (`derived_error_responses`); the ones a service raises (a 402, a 409 on a
taken name, a 503 from Chipi) are named by the view with `error_responses(...)` in its
@extend_schema, since no class of the view says them. The API-wide rate limits' 429 and headers
are added to every operation by `document_rate_limits`, the last postprocessing hook.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAuthenticated

from paygo.api.pagination import Pagination

WEBSOCKETS_START = "<!-- websockets:start"
WEBSOCKETS_END = "<!-- websockets:end -->"

# What each error status means here, as the schema says it.
ERROR_STATUSES: dict[int, str] = {
    400: "Invalid input: the field names in `errors` say what (nothing was changed). `code` is `invalid` for a "
    "value missing or of the wrong shape, else the reason a rule refused it (`insufficient_funds`, "
    "`self_transfer`, `below_minimum`, ...).",
    401: "No valid access token (`Authorization: Bearer <token>`). Its `code`: `not_authenticated` (none sent), "
    "`token_expired` (refresh it, or sign in again), `token_invalid` (not one of PayGo's access tokens), "
    "`sign_in_ended` (a logout, or ended for the account's safety), `password_changed`, `user_inactive` or "
    "`user_not_found` (sign in again).",
    402: "Insufficient funds.",
    403: "The caller may not do this (role or staff permission).",
    404: "No such object, or not one of the caller's.",
    409: "Conflicts with the current state, or an Idempotency-Key reused with another request.",
    413: "The request body is over its size limit.",
    415: "The request body is not of a media type the operation takes (JSON, or multipart for an upload).",
    429: "Too many requests: wait for Retry-After seconds.",
    503: "A service PayGo depends on is unavailable (Chipi, the cache, or every database connection busy): "
    "nothing was done, try again shortly.",
    # From the production edge (deploy/nginx.conf), not from the application (whose 500 is a defect).
    500: "The server failed while handling the request (code `outcome_unknown`: the proxy failing on its own "
    "after the request reached the application): it may have been done. Send it again only with the same "
    "Idempotency-Key, or read your history first.",
    502: "The server that took the request failed before answering (code `outcome_unknown`): it may have been "
    "done. Send it again only with the same Idempotency-Key, or read your history first.",
    504: "The server that took the request did not answer in time (code `outcome_unknown`): it may have been "
    "done. Send it again only with the same Idempotency-Key, or read your history first.",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "The scheme to authenticate with."}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before trying again."}},
}
_PAGING = set(Pagination.parameter_schemas())  # paging is strict: `page=` is a 400
_NO_CLAIM = (AllowAny, IsAuthenticated)  # permissions whose refusal is a 401, never a 403


class ErrorSerializer(serializers.Serializer):
    """The API's one error format (paygo.api.errors)."""

    message = serializers.CharField()
    status_code = serializers.IntegerField()
    code = serializers.CharField(help_text="A stable machine-readable reason (`invalid`, `not_found`, ...).")
    errors = serializers.DictField(
        child=serializers.JSONField(), required=False, help_text="Per invalid field (camelCase), its messages."
    )


@dataclass(frozen=True)
class ErrorCode:
    """One refusal an operation may answer, as the schema tells it: its status, its `code`, what it
    means, and the fields its body carries beside the error format's (name: serializer field)."""

    status: int
    code: str
    meaning: str
    fields: dict[str, serializers.Field] = field(default_factory=dict, hash=False, compare=False)

    def told(self) -> str:
        return f"`{self.code}`: {self.meaning}"


# Derived from the operation (derived_error_responses), told wherever it applies.
IDEMPOTENCY_KEY_REUSED = ErrorCode(
    409,
    "idempotency_key_reused",
    "the Idempotency-Key was used with another request (use a new key for a new request); nothing was done.",
)


def error_codes(*codes: ErrorCode, lead: str | None = None) -> dict[int, OpenApiResponse]:
    """The errors of a service an operation answers, by code: per status, its description names each
    code and what it means, and its body is the error format plus the fields those codes carry (each
    optional: the description says which code carries it). `lead` says the status's meaning where the
    operation gives it another than everywhere (a refresh's 401 is about a refresh token).
    For @extend_schema(responses={..., **error_codes(...)})."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in codes:
        by_status.setdefault(code.status, []).append(code)
    return {
        status: OpenApiResponse(_error_serializer(tuple(told)), description=_described(lead, status, told))
        for status, told in by_status.items()
    }


def _described(lead: str | None, status: int, codes: list[ErrorCode]) -> str:
    # A 400's rules are told where a client acts on them; `invalid` and the rest are the fields' own.
    told = " Among its rules' codes: " if status == 400 else " Its `code`: "
    return f"{lead or ERROR_STATUSES[status]}{told}" + "; ".join(code.told() for code in codes)


@functools.cache
def _error_serializer(codes: tuple[ErrorCode, ...]) -> type[serializers.Serializer]:
    """The error format, with the fields `codes` carry: one component per set of codes of which one
    carries fields (named after them all), the plain Error for the others."""
    carrying = [code for code in codes if code.fields]
    if not carrying:
        return ErrorSerializer
    fields: dict[str, serializers.Field] = {}
    for code in carrying:
        for name, declared in code.fields.items():
            fields.setdefault(name, declared)
    # Optional, each: another code of the status (an Idempotency-Key reused, say) carries none.
    attrs = {
        name: type(declared)(*declared._args, **{**declared._kwargs, "required": False})
        for name, declared in fields.items()
    }
    names = "".join(part.title() for code in codes for part in code.code.split("_"))  # one set, one name
    attrs["__doc__"] = f"The error format, and the fields of {', '.join(code.code for code in carrying)}."
    return type(f"{names}ErrorSerializer", (ErrorSerializer,), attrs)


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """Errors an operation gives that its view's classes do not say (a service's 402, 409, 503),
    for @extend_schema(responses={..., **error_responses(409)})."""
    return {status: OpenApiResponse(ErrorSerializer, description=ERROR_STATUSES[status]) for status in statuses}


def error_response(status: int, why: str) -> dict[int, OpenApiResponse]:
    """One error an operation gives, told beyond what its status means everywhere (a code a client
    acts on, the fields that come with it), for @extend_schema(responses={..., **error_response(...)})."""
    return {status: OpenApiResponse(ErrorSerializer, description=f"{ERROR_STATUSES[status]} {why}")}


def derived_error_responses(auto: openapi.AutoSchema, operation: dict[str, Any]) -> set[int]:
    """The errors every operation of this shape can give, from its view and what it documents.

    400: it takes input (a body, query or header parameters, paging), beyond its path;
    401: it authenticates (a token that is sent is checked, even where none is needed);
    403: a permission beyond being signed in (a role, a staff permission);
    404: it looks an object up by path, or pages (a page past the last does not exist);
    409: it honours Idempotency-Key (the same key with another request);
    413, 415: it takes a body (over its size limit; of another media type, where the view parses it);
    429: it is throttled.
    """
    view = auto.view
    parameters = operation.get("parameters", [])
    inputs = [parameter for parameter in parameters if parameter["in"] != "path"]  # a bad path is no route: 404
    takes_body = "requestBody" in operation
    pages = getattr(view, "results_key", None) is not None and auto.method == "GET"
    statuses: set[int] = set()
    if takes_body or inputs or pages:
        statuses.add(400)
    if any("jwtAuth" in requirement for requirement in operation.get("security", [])):
        statuses.add(401)
    if any(not isinstance(permission, _NO_CLAIM) for permission in view.get_permissions()):
        statuses.add(403)
    if pages or any(parameter["in"] == "path" for parameter in parameters):
        statuses.add(404)
    if any(parameter["in"] == "header" and parameter["name"] == "Idempotency-Key" for parameter in parameters):
        statuses.add(409)
    if takes_body:
        statuses.add(413)
        if view.get_parsers():
            statuses.add(415)
    if view.get_throttles():
        statuses.add(429)
    return statuses


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, telling the truth about errors and pages."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and parameter["name"] not in _PAGING and not parameter.get("required"):
                parameter["allowEmptyValue"] = True  # an empty filter is no filter (paygo.api.filters)
        responses = operation["responses"]
        for status in derived_error_responses(self, operation):
            responses.setdefault(str(status), self._error_response(status))
        if any(parameter["name"] == "Idempotency-Key" for parameter in operation.get("parameters", [])):
            conflict = responses["409"]
            if f"`{IDEMPOTENCY_KEY_REUSED.code}`" not in conflict["description"]:
                told = " Its `code`: " if "Its `code`:" not in conflict["description"] else "; "
                conflict["description"] += told + IDEMPOTENCY_KEY_REUSED.told()
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _error_response(self, status: int) -> dict[str, Any]:
        response = self._get_response_for_code(ErrorSerializer, str(status))
        response["description"] = ERROR_STATUSES[status]
        return response

    def _get_response_headers_for_code(self, status_code, direction="response"):
        headers = super()._get_response_headers_for_code(status_code, direction)
        return {**_HEADERS.get(int(status_code), {}), **headers} if status_code.isdigit() else headers

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        # Fields a serializer leaves out for some readers (`sometimes_omitted`) are not required.
        omitted = set(getattr(serializer, "sometimes_omitted", ()))
        if omitted and "required" in schema:
            schema["required"] = [name for name in schema["required"] if name not in omitted]
            if not schema["required"]:
                del schema["required"]
        return schema

    def _get_paginator(self):
        """A view that names its list's key (`results_key`) answers pages of paygo.api.pagination,
        whether DRF pages it or the view does it by hand."""
        key = getattr(self.view, "results_key", None)
        if key is None:
            return super()._get_paginator()
        paginator = Pagination()
        paginator.results_key = key
        return paginator


def websocket_contract() -> str:
    """The README's WebSockets section: the sockets' messages, close codes and presence rule,
    written once and shown both there and at the end of the API docs' description."""
    from django.conf import settings

    readme = (settings.BASE_DIR / "README.md").read_text(encoding="utf-8")
    start, end = readme.find(WEBSOCKETS_START), readme.find(WEBSOCKETS_END)
    if start < 0 or end < start:
        return "The WebSockets are described in the README's WebSockets section."
    body = readme[readme.index("-->", start) + 3 : end].strip()
    return f"## WebSockets\n\n{body}"


def describe_websockets(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: the sockets' contract beside the endpoints."""
    info = result.setdefault("info", {})
    info["description"] = f"{info.get('description', '')}\n\n{websocket_contract()}".strip()
    return result


# --- Rate limits (paygo/api/ratelimits.py) -------------------------------------------------------

_RATE_LIMIT_FIELDS = {
    "RateLimit-Policy": {
        "description": "The request's quota policies (draft-ietf-httpapi-ratelimit-headers-10): its budget per "
        "user and per client address, `q` requests each `w` seconds.",
        "schema": {"type": "string", "example": '"read-user";q=300;w=60, "read-ip";q=900;w=60'},
    },
    "RateLimit": {
        "description": "Where those budgets stand: `r` requests remaining, for the next `t` seconds.",
        "schema": {"type": "string", "example": '"read-user";r=299;t=41, "read-ip";r=899;t=13'},
    },
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before asking again: when every budget the request exceeded has room.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def document_rate_limits(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: every operation is rate limited, so every success carries
    the RateLimit fields and every operation may answer 429, with them and Retry-After."""
    error = result.get("components", {}).get("schemas", {}).get("Error")
    error_schema = (
        {"$ref": "#/components/schemas/Error"}
        if error
        else {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "statusCode": {"type": "integer", "enum": [429]},
                "code": {"type": "string", "example": "rate_limited"},
            },
            "required": ["message", "statusCode", "code"],
        }
    )
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in _HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if str(status).startswith("2"):
                    response.setdefault("headers", {}).update(_RATE_LIMIT_FIELDS)
            too_many = responses.setdefault(
                "429",
                {
                    "description": "Too many requests: a budget of the caller's (per user or per client address) "
                    "is spent until the window ends.",
                    "content": {"application/json": {"schema": error_schema}},
                },
            )
            too_many.setdefault("headers", {}).update({**_RETRY_AFTER, **_RATE_LIMIT_FIELDS})
    return result


# --- A busy database or cache (paygo.api.errors.DatabaseBusy, CacheUnavailable) ------------------


def document_database_busy(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: any operation may find every connection of its server's
    pool busy, or its cache not answering, and is then answered 503 with Retry-After, having done
    nothing; behind the production edge, any may also be answered 500, 502 or 504 with its outcome
    unknown, by the proxy."""
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in _HTTP_METHODS:
                continue
            for status in (500, 502, 504):
                operation.setdefault("responses", {}).setdefault(
                    str(status),
                    {
                        "description": ERROR_STATUSES[status],
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                )
            busy = operation.setdefault("responses", {}).setdefault(
                "503",
                {
                    "description": ERROR_STATUSES[503],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            )
            busy.setdefault("headers", {}).update(
                {
                    "Retry-After": {
                        "description": "Seconds to wait before sending the request again.",
                        "schema": {"type": "integer", "minimum": 1},
                    }
                }
            )
    return result
