"""OpenAPI helpers shared by the apps' views: the sockets' contract beside the endpoints."""

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
