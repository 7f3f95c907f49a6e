"""WebSocket plumbing: JWT authentication for sockets and the base consumer every app uses.

The token comes in the `token` query parameter or as a `bearer.<jwt>` subprotocol (browsers cannot
set headers on a WebSocket; the scheme is case-insensitive, as HTTP's are). A socket without a
valid token is accepted and closed with 4401, so that the client sees the code; the HTTP-level
refusal of an unaccepted socket carries none. A frame that is not a JSON text closes the socket
with 1003 (unsupported data).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken

from paygo.api.parsers import json_loads

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
BEARER_PREFIX = "bearer."


def _token_from_scope(scope: dict[str, Any]) -> tuple[str | None, str | None]:
    """(token, subprotocol to echo) from the query string or the subprotocols."""
    for subprotocol in scope.get("subprotocols") or []:
        if subprotocol.lower().startswith(BEARER_PREFIX):
            return subprotocol[len(BEARER_PREFIX) :], subprotocol
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    tokens = query.get("token")
    return (tokens[0], None) if tokens else (None, None)


@database_sync_to_async
def _user_for_token(raw: str):
    try:
        token = AccessToken(raw)
    except TokenError:
        return AnonymousUser()
    user_id = token.get(api_settings.USER_ID_CLAIM)
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    return user or AnonymousUser()


class JwtAuthMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        raw, subprotocol = _token_from_scope(scope)
        user = await _user_for_token(raw) if raw else AnonymousUser()
        scope = {**scope, "user": user, "auth_subprotocol": subprotocol}
        return await self.app(scope, receive, send)


class AuthenticatedConsumer(AsyncJsonWebsocketConsumer):
    """Accepts authenticated sockets (echoing a bearer subprotocol) and closes the rest with 4401.

    Subclasses implement `authorize()` (return False to close with 4403) and `joined()`.
    """

    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        await self.accept(subprotocol=self.scope.get("auth_subprotocol"))
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await self.authorize(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.joined(user)

    async def authorize(self, user) -> bool:
        return True

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs) -> None:
        # Channels' JSON consumer raises on a binary frame or text that is not JSON, which kills the
        # consumer with a logged traceback: the client sent something it should not, so it is told
        # so (1003) and nothing else happens.
        try:
            if text_data is None:
                raise ValueError("a binary frame")
            content = await self.decode_json(text_data)
        except ValueError:
            await self.close(code=CLOSE_UNSUPPORTED_DATA)
            return
        await self.receive_json(content, **kwargs)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        return json_loads(text_data)  # as the API reads JSON: depth-bounded, strict numbers

    async def joined(self, user) -> None:
        """Called once the socket is accepted for an authorised user."""

    async def join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.append(group)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
