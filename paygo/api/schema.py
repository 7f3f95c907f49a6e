"""OpenAPI helpers shared by the apps' views: the sockets' contract beside the endpoints, and the
rate limits every operation answers with."""

from __future__ import annotations

WEBSOCKETS_START = "<!-- websockets:start"
WEBSOCKETS_END = "<!-- websockets:end -->"


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
