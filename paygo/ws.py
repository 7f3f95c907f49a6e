"""WebSocket plumbing: who a socket belongs to, and the base consumer every app uses.

The token comes in the `token` query parameter or as a `bearer.<jwt>` subprotocol (browsers cannot
set headers on a WebSocket; the scheme is case-insensitive, as HTTP's are). Without a token, a
staff member signed into the admin is recognised by the admin's session cookie, but only on a
socket opened by a page of this same site: a cookie goes along with any page's request, so another
site's page must not ride on it. A socket without a valid token is accepted and closed with 4401,
so that the client sees the code; the HTTP-level refusal of an unaccepted socket carries none. A
path no route knows is closed with 4404 alike. A frame that is not a JSON text closes the socket
with 1003 (unsupported data). A handshake that finds every database connection of the process's
pool busy (past DATABASE_POOL_TIMEOUT) is accepted and closed with 1013, "try again later", as an
HTTP request gets a 503: the client reconnects after a pause, and nothing is logged as an error;
so is one whose channel layer (Redis) fails or stays silent past SOCKET_LAYER_SECONDS while it
joins its groups (logged as a warning).
Every socket of a user also joins that user's group (sockets_group): when the account is
deactivated, close_sockets_of() closes them all with 4401, in every server process, as every later
request and handshake is refused. When a sign-in ends (a logout, a stolen refresh token caught),
close_sockets_of_sign_ins() closes, through the same group, the sockets its tokens opened, and when
a staff member logs out of the admin, close_sockets_of_admin_session() those its session opened. A
socket opened with a token is closed with 4401 when the token expires (a timer per socket, on the
event loop): a client that refreshes its token opens a new socket with the new one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import async_to_sync
from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from redis.exceptions import RedisError
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import SignIn
from paygo.api.authentication import token_user
from paygo.api.errors import pool_exhausted
from paygo.api.parsers import json_loads

logger = logging.getLogger("paygo.ws")

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_ACCESS_CHANGED = 4409
BEARER_PREFIX = "bearer."


# What a channel layer's call raises when Redis fails (a refused connection, a reset one) or stays
# silent past its bound (TimeoutError, an OSError).
LAYER_ERRORS = (RedisError, OSError)

# A socket's own calls to the layer (its joins, leaving its groups) wait longer than a push: when a
# thousand sockets open at once (clients reconnecting after a deploy) they queue for the layer's
# connections, which redis-py's asyncio pool opens one at a time, under a lock: up to 1.8 s each on
# the bench machine (docs/benchmarks.md), where a bound of 2 s closed most of them with 1013.
SOCKET_LAYER_SECONDS = 10.0


async def layer_call(call, *, seconds: float | None = None):
    """The channel layer's `call` (an awaitable), given up after `seconds` (REDIS_TIMEOUT_SECONDS
    unless said; TimeoutError): the layer's Redis client has no read timeout (paygo/settings.py),
    and a Redis that stays connected and silent would hold its caller for good."""
    async with asyncio.timeout(seconds or settings.REDIS_TIMEOUT_SECONDS):  # no task of its own, as wait_for's
        return await call


async def socket_layer_call(call):
    """A socket's own call to the layer, bounded by SOCKET_LAYER_SECONDS (or REDIS_TIMEOUT_SECONDS,
    if longer)."""
    return await layer_call(call, seconds=max(SOCKET_LAYER_SECONDS, settings.REDIS_TIMEOUT_SECONDS))


async def group_send(group: str, message: dict) -> None:
    """The channel layer's group_send, bounded (layer_call): a request whose money has moved among
    the senders must not wait on a silent Redis."""
    layer = get_channel_layer()
    if layer is not None:
        await layer_call(layer.group_send(group, message))


def sockets_group(user_id: int) -> str:
    """The group every socket of this user joins, whatever it watches."""
    return f"sockets.user.{user_id}"


def reauthorize_sockets_of(user_id: int) -> None:
    """Close every open socket of this user with 4409 (an operator changed their role, staff flag or
    permissions): a handshake decides once what a socket may watch, so the client reconnects and a
    new handshake decides again."""
    async_to_sync(group_send)(sockets_group(user_id), {"type": "sockets.reauthorize"})


# A handshake reads the account, then (once it may watch what it asked for) joins the user's group:
# a deactivation committed between the two sends its close to a group the socket is not in yet. The
# close is sent again this much later, when such a handshake has long joined (a look at the account
# after joining, or joining before the read, cost the live hub: docs/benchmarks.md).
RECLOSE_SECONDS = 15.0


def close_sockets_of(user_id: int, *, again: bool = False) -> None:
    """Close every open socket of this user with 4401 (their account was deactivated, or their
    password changed): a handshake checks the account once, and a socket stays open for hours.
    `again`: once more RECLOSE_SECONDS later, for a handshake under way as the account was
    deactivated (not after a password change: the sockets the new password opens are the user's)."""
    _close({user_id: {}}, again=again)


def close_sockets_of_sign_ins(sign_ins: dict[int, list], *, again: bool) -> None:
    """Close with 4401 the open sockets opened with a token of these sign-ins ({user id: [sign-in
    ids]}), which have ended, and no other socket of their users; `again`: once more RECLOSE_SECONDS
    later, for a handshake under way as they ended. Sent to each user's group, which every socket
    joins already: a group of its own per sign-in cost each handshake one more round trip to Redis
    (docs/benchmarks.md)."""
    _close({user_id: {"sign_ins": [str(sign_in) for sign_in in ids]} for user_id, ids in sign_ins.items()}, again=again)


def close_sockets_of_admin_session(user_id: int, session_key: str) -> None:
    """Close with 4401 the open sockets this admin session (its session key) opened, and no other
    socket of its staff member: they logged out of the admin, and a socket stays open for hours. As
    a logout's, not sent again (a browser that logs out closes its own pages)."""
    _close({user_id: {"sessions": [session_key]}}, again=False)


def admin_logged_out(sender, request, user, **kwargs) -> None:
    """Django's user_logged_out (the admin's logout, sent before the session is flushed): close the
    sockets the session opened. A channel layer that fails does not fail the logout (logged)."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is None or user.pk is None or not session_key:
        return
    try:
        close_sockets_of_admin_session(user.pk, session_key)
    except LAYER_ERRORS:
        logger.warning("Could not close the sockets of an admin session of user %s", user.pk, exc_info=True)


def _close(targets: dict[int, dict[str, list[str]]], *, again: bool) -> None:
    """Send each user's sockets the close ({user id: which of them close: {"sign_ins": [sign-in
    ids]}, {"sessions": [admin session keys]}, or {} for all of them})."""
    async_to_sync(_revoke)(targets)
    if again:
        timer = threading.Timer(RECLOSE_SECONDS, _close_again, args=(targets,))
        timer.daemon = True
        timer.start()


async def _revoke(targets: dict[int, dict[str, list[str]]]) -> None:
    for user_id, which in targets.items():
        await group_send(sockets_group(user_id), {"type": "sockets.revoked", **which})


def _close_again(targets: dict[int, dict[str, list[str]]]) -> None:
    try:
        async_to_sync(_revoke)(targets)
    except Exception:  # the first close went out; this one is for a handshake that may not exist
        logger.warning("Could not close the sockets of users %s a second time", list(targets), exc_info=True)


def _token_from_scope(scope: dict[str, Any]) -> tuple[str | None, str | None]:
    """(token, subprotocol to echo) from the query string or the subprotocols."""
    for subprotocol in scope.get("subprotocols") or []:
        if subprotocol.lower().startswith(BEARER_PREFIX):
            return subprotocol[len(BEARER_PREFIX) :], subprotocol
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    tokens = query.get("token")
    return (tokens[0], None) if tokens else (None, None)


# A socket's handshake reads (whose token it is, what they may watch) on threads of their own,
# several at once, each with its own connection: a thousand sockets opening together (clients
# reconnecting after a deploy) would otherwise wait one round trip after another on the one thread
# that runs the consumers' synchronous code, past Daphne's handshake timeout, and behind whatever
# else that thread is doing. Only reads go here: writes keep to that one thread.
HANDSHAKE_THREADS = 4
_handshakes = ThreadPoolExecutor(max_workers=HANDSHAKE_THREADS, thread_name_prefix="ws-handshake")


def handshake_read(fn):
    """`fn` (a read a handshake needs) as a coroutine function run on the handshake threads."""

    @functools.wraps(fn)
    def read(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            # The connection goes back to the pool as the read ends, rather than when Channels'
            # close_old_connections() next runs on this thread: a handshake thread holds none
            # between sockets (Channels' test communicator turns that hook off, and a thread of
            # this pool idle until the process ends would hold its connection as long).
            connection.close()

    return database_sync_to_async(read, thread_sensitive=False, executor=_handshakes)


@dataclass(frozen=True)
class TokenHolder:
    """Whom a socket's token stands for, and the sign-in that gave it (None: anonymous)."""

    user: Any
    sign_in_id: uuid.UUID | None = None
    expires_at: float | None = None  # the token's exp (a Unix time)
    admin_session: str | None = None  # the key of the admin session whose cookie stood for the user


@handshake_read
def _user_for_token(raw: str) -> TokenHolder:
    try:
        token = AccessToken(raw)
    except TokenError:
        return TokenHolder(AnonymousUser())
    try:
        # active, its password unchanged since the token was issued, its sign-in going on
        return TokenHolder(token_user(token), SignIn.id_of(token), token["exp"])
    except AuthenticationFailed:
        return TokenHolder(AnonymousUser())


def _same_site(scope: dict[str, Any]) -> bool:
    """Whether the page that opened the socket is one of this site's (its Origin is the socket's
    Host, or a trusted origin), as Django's CSRF check asks of a cookie-authenticated POST."""
    headers = dict(scope.get("headers") or [])
    origin = headers.get(b"origin", b"").decode("latin1")
    host = headers.get(b"host", b"").decode("latin1")
    if not origin or not host:
        return False
    scheme, _, netloc = origin.partition("://")
    return (scheme in ("http", "https") and netloc == host) or origin in getattr(settings, "CSRF_TRUSTED_ORIGINS", [])


async def _admin_user(scope: dict[str, Any]) -> TokenHolder:
    """The staff member whose admin session cookie came with a same-site socket, or anonymous."""
    if not _same_site(scope):
        return TokenHolder(AnonymousUser())
    user = await get_user(scope)
    if not (user.is_active and user.is_staff):
        return TokenHolder(AnonymousUser())
    return TokenHolder(user, admin_session=scope["session"].session_key)


class _SocketUser:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        raw, subprotocol = _token_from_scope(scope)
        busy = False
        try:
            holder = await _user_for_token(raw) if raw else await _admin_user(scope)
        except Exception as exc:
            if not pool_exhausted(exc):
                raise
            holder, busy = TokenHolder(AnonymousUser()), True
        scope = {
            **scope,
            "user": holder.user,
            "sign_in_id": holder.sign_in_id,
            "token_expires_at": holder.expires_at,
            "admin_session": holder.admin_session,
            "auth_subprotocol": subprotocol,
            "database_busy": busy,
        }
        return await self.app(scope, receive, send)


def socket_auth(app):
    """The socket's user, in scope["user"]: from its token, else from the admin's session cookie."""
    return CookieMiddleware(SessionMiddleware(_SocketUser(app)))


class AuthenticatedConsumer(AsyncJsonWebsocketConsumer):
    """Accepts authenticated sockets (echoing a bearer subprotocol) and closes the rest with 4401.

    Subclasses implement `authorize()` (return False to close with 4403) and `joined()`.
    """

    groups_joined: list[str]
    _expiry: asyncio.TimerHandle | None = None
    _closing: asyncio.Future | None = None
    _rejoining: asyncio.Task | None = None

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # however the consumer ends (a close, an error, cancelled): its timers go with it
            self._stop_timers()

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        await self.accept(subprotocol=self.scope.get("auth_subprotocol"))
        if self.scope.get("database_busy"):
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
            return
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        try:
            if not await self.authorize(user):
                await self.close(code=CLOSE_FORBIDDEN)
                return
            await self.join(sockets_group(user.pk))
            await self.joined(user)
        except Exception as exc:
            if isinstance(exc, LAYER_ERRORS):
                logger.warning("A socket handshake could not reach the channel layer: closed 1013", exc_info=True)
            elif not pool_exhausted(exc):
                raise
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
            return
        self._close_at_expiry()

    def _close_at_expiry(self) -> None:
        """A handshake checks its token once: the socket closes (4401) when the token expires, as
        every request and handshake then refuses it (one timer, no polling)."""
        expires_at = self.scope.get("token_expires_at")
        if expires_at is None:
            return
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(max(0.0, expires_at - time.time()), self._token_expired)

    def _token_expired(self) -> None:
        self._closing = asyncio.ensure_future(self.close(code=CLOSE_UNAUTHENTICATED))

    def _stop_timers(self) -> None:
        for timer in (self._expiry, self._rejoining):
            if timer is not None:
                timer.cancel()

    async def sockets_revoked(self, event: dict) -> None:
        """The account was deactivated or its password changed (close_sockets_of: every socket of
        the user), sign-ins ended (close_sockets_of_sign_ins: the sockets they opened), or an admin
        session did (close_sockets_of_admin_session: the sockets its cookie opened)."""
        sign_ins, sessions = event.get("sign_ins"), event.get("sessions")
        if sign_ins is not None or sessions is not None:
            opened_by = str(self.scope.get("sign_in_id")) in (sign_ins or ()) or (
                self.scope.get("admin_session") in (sessions or ())
            )
            if not opened_by:
                return
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def sockets_reauthorize(self, event: dict) -> None:
        """What the account may see changed (reauthorize_sockets_of)."""
        await self.close(code=CLOSE_ACCESS_CHANGED)

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
        await socket_layer_call(self.channel_layer.group_add(group, self.channel_name))
        self.groups_joined.append(group)
        if self._rejoining is None:
            self._rejoining = asyncio.create_task(self._rejoin(_rejoin_every(self.channel_layer)))

    async def _rejoin(self, every: float) -> None:
        """The channel layer drops a member older than its group expiry (a day) from a group, and a
        socket can stay open longer (a tab left on a dashboard): it joins its groups again well
        before then, or it would silently stop getting its messages, its account's closing included."""
        while True:
            await asyncio.sleep(every)
            try:
                for group in list(self.groups_joined):
                    await socket_layer_call(self.channel_layer.group_add(group, self.channel_name))
            except LAYER_ERRORS:  # a Redis outage must not end the rejoining: the next round is in time
                logger.warning("A socket could not join its groups again", exc_info=True)

    async def disconnect(self, code: int) -> None:
        self._stop_timers()
        try:
            for group in getattr(self, "groups_joined", []):
                await socket_layer_call(self.channel_layer.group_discard(group, self.channel_name))
        except LAYER_ERRORS:  # the layer drops a member older than its group expiry (a day) anyway
            logger.warning("A closed socket could not leave its groups", exc_info=True)


def _rejoin_every(layer) -> float:
    """A quarter of the layer's group expiry (channels_redis's and the in-memory layer's 86,400 s)."""
    return getattr(layer, "group_expiry", 86_400) / 4


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Any path no socket route knows: refused with 4404 (rather than an HTTP 500)."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NOT_FOUND)
