"""WebSocket plumbing: who a socket belongs to, and the base consumer every app uses.

The token comes in the `token` query parameter or as a `bearer.<jwt>` subprotocol (browsers cannot
set headers on a WebSocket; the scheme is case-insensitive, as HTTP's are). Without a token, a
staff member signed into the admin is recognised by the admin's session cookie, but only on a
socket opened by a page of this same site: a cookie goes along with any page's request, so another
site's page must not ride on it. A socket without a valid token is accepted and closed with 4401,
so that the client sees the code; the HTTP-level refusal of an unaccepted socket carries none. A
4401's reason says why, in the codes of the API's 401 (paygo.api.authentication): `token_expired`
(refresh the token and reconnect) apart from `not_authenticated`, `token_invalid`, `sign_in_ended`,
`password_changed`, `user_inactive` and `user_not_found` (sign in again). A
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

Limits. A handshake that reads an account (a token's, or an admin session cookie's from a page of
this site) counts against its client address first, as an API request does (paygo.api.ratelimits,
RATELIMIT_SOCKETS_PER_IP): past it, the socket is closed with 4429 and nothing is read. A user holds
at most WS_MAX_SOCKETS_PER_USER sockets open, in every server process together: the one past it is
closed with 4429 (see _OpenSockets for how they are counted).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
import weakref
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
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.http import HttpRequest
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import SignIn
from paygo.api.authentication import (
    NOT_AUTHENTICATED,
    SIGN_IN_ENDED,
    TOKEN_EXPIRED,
    token_refused,
    token_user,
)
from paygo.api.errors import error_code, pool_exhausted
from paygo.api.forwarded import client_address, trusted_networks
from paygo.api.parsers import json_loads
from paygo.api.ratelimits import Limit, count_all

logger = logging.getLogger("paygo.ws")

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_ACCESS_CHANGED = 4409
CLOSE_TOO_MANY = 4429
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


def close_sockets_of(user_id: int, *, reason: str, again: bool = False) -> None:
    """Close every open socket of this user with 4401 and `reason` (USER_INACTIVE: their account was
    deactivated, PASSWORD_CHANGED): a handshake checks the account once, and a socket stays open for
    hours. `again`: once more RECLOSE_SECONDS later, for a handshake under way as the account was
    deactivated (not after a password change: the sockets the new password opens are the user's)."""
    _close({user_id: {}}, reason=reason, again=again)


def close_sockets_of_sign_ins(sign_ins: dict[int, list], *, reason: str = SIGN_IN_ENDED, again: bool) -> None:
    """Close with 4401 and `reason` the open sockets opened with a token of these sign-ins ({user id:
    [sign-in ids]}), which have ended, and no other socket of their users; `again`: once more
    RECLOSE_SECONDS later, for a handshake under way as they ended. Sent to each user's group, which
    every socket joins already: a group of its own per sign-in cost each handshake one more round
    trip to Redis (docs/benchmarks.md)."""
    targets = {user_id: {"sign_ins": [str(sign_in) for sign_in in ids]} for user_id, ids in sign_ins.items()}
    _close(targets, reason=reason, again=again)


def close_sockets_of_admin_session(user_id: int, session_key: str) -> None:
    """Close with 4401 (`sign_in_ended`) the open sockets this admin session (its session key)
    opened, and no other socket of its staff member: they logged out of the admin, and a socket
    stays open for hours. As a logout's, not sent again (a browser that logs out closes its own
    pages)."""
    _close({user_id: {"sessions": [session_key]}}, reason=SIGN_IN_ENDED, again=False)


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


def _close(targets: dict[int, dict[str, list[str]]], *, reason: str, again: bool) -> None:
    """Send each user's sockets the close, with its reason ({user id: which of them close:
    {"sign_ins": [sign-in ids]}, {"sessions": [admin session keys]}, or {} for all of them})."""
    async_to_sync(_revoke)(targets, reason)
    if again:
        timer = threading.Timer(RECLOSE_SECONDS, _close_again, args=(targets, reason))
        timer.daemon = True
        timer.start()


async def _revoke(targets: dict[int, dict[str, list[str]]], reason: str) -> None:
    for user_id, which in targets.items():
        await group_send(sockets_group(user_id), {"type": "sockets.revoked", "reason": reason, **which})


def _close_again(targets: dict[int, dict[str, list[str]]], reason: str) -> None:
    try:
        async_to_sync(_revoke)(targets, reason)
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
    refusal: str = NOT_AUTHENTICATED  # anonymous: why, as the API's 401 says it (the 4401's reason)


def _client_address(scope: dict[str, Any]) -> str:
    """The socket's client address, as ForwardedMiddleware settles a request's: its peer's, or, when
    the peer is a trusted proxy (TRUSTED_PROXIES), the client its X-Forwarded-For names."""
    peer = (scope.get("client") or [""])[0] or ""
    forwarded = b",".join(value for name, value in scope.get("headers") or [] if name == b"x-forwarded-for")
    return client_address(str(peer), forwarded.decode("latin1"), trusted_networks())


def _handshakes_exceeded(address: str) -> bool:
    """Count a handshake against its address (RATELIMIT_SOCKETS_PER_IP), as the API counts a
    request: whether the address is over it. A cache that cannot be reached lets it through (logged),
    as it does a request."""
    request = HttpRequest()
    request.META["REMOTE_ADDR"] = address  # paygo.api.ratelimits.client_ip reads it from there
    try:
        usages = count_all(request, [Limit("sockets-ip", "ip", settings.RATELIMIT_SOCKETS_PER_IP)])
    except RedisError:
        logger.warning("Socket handshakes could not be counted (the cache is unreachable)", exc_info=True)
        return False
    return any(usage.exceeded for usage in usages)


_count_handshake = handshake_read(_handshakes_exceeded)


@handshake_read
def _user_for_token(raw: str, address: str) -> TokenHolder | None:
    """Whom the token stands for; None when its address is over its handshakes (nothing read)."""
    if _handshakes_exceeded(address):
        return None
    try:
        token = AccessToken(raw)
    except TokenError as exc:
        return TokenHolder(AnonymousUser(), refusal=error_code(token_refused(exc)))
    try:
        # active, its password unchanged since the token was issued, its sign-in going on
        return TokenHolder(token_user(token), SignIn.id_of(token), token["exp"])
    except AuthenticationFailed as exc:
        return TokenHolder(AnonymousUser(), refusal=error_code(exc))


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


async def _admin_user(scope: dict[str, Any]) -> TokenHolder | None:
    """The staff member whose admin session cookie came with a same-site socket, or anonymous; None
    when its address is over its handshakes (the session unread)."""
    if not scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME) or not _same_site(scope):
        return TokenHolder(AnonymousUser())  # nothing to read
    if await _count_handshake(_client_address(scope)):
        return None
    user = await get_user(scope)
    if not (user.is_active and user.is_staff):
        return TokenHolder(AnonymousUser())
    return TokenHolder(user, admin_session=scope["session"].session_key)


class _SocketUser:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        raw, subprotocol = _token_from_scope(scope)
        holder, refused = TokenHolder(AnonymousUser()), None  # refused: the close code, decided here
        try:
            found = await _user_for_token(raw, _client_address(scope)) if raw else await _admin_user(scope)
        except Exception as exc:
            if not pool_exhausted(exc):
                raise
            refused = CLOSE_TRY_AGAIN_LATER
        else:
            if found is None:
                refused = CLOSE_TOO_MANY
            else:
                holder = found
        scope = {
            **scope,
            "user": holder.user,
            "sign_in_id": holder.sign_in_id,
            "token_expires_at": holder.expires_at,
            "admin_session": holder.admin_session,
            "auth_refusal": holder.refusal,
            "auth_subprotocol": subprotocol,
            "refused": refused,
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
    _counted: int | None = None  # the user whose open sockets count this one

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # however the consumer ends (a close, an error, cancelled): its timers go with it
            self._stop_timers()
            if self._counted is not None:  # ended without its disconnect: its lease runs out
                _open_sockets().forget(self._counted, self.channel_name)

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        await self.accept(subprotocol=self.scope.get("auth_subprotocol"))
        if self.scope.get("refused") is not None:
            await self.close(code=self.scope["refused"])
            return
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED, reason=self.scope.get("auth_refusal") or NOT_AUTHENTICATED)
            return
        try:
            if not await self.authorize(user):
                await self.close(code=CLOSE_FORBIDDEN)
                return
            if not await _open_sockets().hold(self.channel_layer, user.pk, self.channel_name):
                await self.close(code=CLOSE_TOO_MANY)
                return
            self._counted = user.pk
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
        """A handshake checks its token once: the socket closes (4401 `token_expired`: a client
        refreshes and reconnects) when the token expires, as every request and handshake then
        refuses it (one timer, no polling)."""
        expires_at = self.scope.get("token_expires_at")
        if expires_at is None:
            return
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(max(0.0, expires_at - time.time()), self._token_expired)

    def _token_expired(self) -> None:
        self._closing = asyncio.ensure_future(self.close(code=CLOSE_UNAUTHENTICATED, reason=TOKEN_EXPIRED))

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
        # A close sent by a process of the release before (a rolling deploy) has no reason: sign in again.
        await self.close(code=CLOSE_UNAUTHENTICATED, reason=event.get("reason") or SIGN_IN_ENDED)

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
            if self._counted is not None:
                counted, self._counted = self._counted, None
                await _open_sockets().release(self.channel_layer, counted, self.channel_name)
            for group in getattr(self, "groups_joined", []):
                await socket_layer_call(self.channel_layer.group_discard(group, self.channel_name))
        except LAYER_ERRORS:  # the layer drops a member older than its group expiry (a day) anyway
            logger.warning("A closed socket could not leave its groups", exc_info=True)


# --- How many sockets each user holds open ------------------------------------------------------
#
# In Redis, one sorted set per user of the channel names of their open sockets, in every server
# process, each scored with when its lease ends. A handshake, in one script, drops the leases that
# have ended, and is refused (4429) if WS_MAX_SOCKETS_PER_USER remain, else adds its own; a socket
# that closes removes its own. A server process that dies removes nothing, so a lease lasts only
# SOCKET_LEASE_SECONDS unless renewed: each process renews all of its sockets' every third of that,
# in one pipelined round trip (not a timer per socket), and a dead process's sockets stop counting
# within SOCKET_LEASE_SECONDS. (A counter per user, incremented and decremented, would stay wrong
# for good after a crash; a key per socket, with its own expiry, would need a scan to be counted.)
# The set itself expires with its last lease. With the in-memory channel layer (one process, the
# embedded default) the process's own register of its sockets is the count.
SOCKET_LEASE_SECONDS = 90

# KEYS: the user's set; ARGV: the channel, now, its lease's end, the most sockets, the set's expiry (ms).
_HOLD = AsyncScript(
    None,
    b"""
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
""",
)

# KEYS: users' sets; ARGV: their leases' end, the sets' expiry (ms), then for each set in turn the
# number of its channels and the channels (one command, where a ZADD and a PEXPIRE per user made
# redis-py pack and parse two thousand commands on the event loop, 45 ms for 1,000 sockets).
_RENEW = AsyncScript(
    None,
    b"""
local at = 3
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  for i = at + 1, at + n do
    redis.call('ZADD', key, 'XX', ARGV[1], ARGV[i])
  end
  redis.call('PEXPIRE', key, ARGV[2])
  at = at + n + 1
end
return 0
""",
)
RENEW_AT_ONCE = 500  # users' sets renewed by one call of _RENEW


class _OpenSockets:
    """The sockets of one server process (its event loop) that count against their users' limit,
    {user id: channel names}, and the task that renews their leases while there are any."""

    def __init__(self) -> None:
        self.held: dict[int, set[str]] = {}
        self.renewing: asyncio.Task | None = None

    async def hold(self, layer, user_id: int, channel: str) -> bool:
        """Count this socket against its user's limit; False (not counted) when the user is at it."""
        if isinstance(layer, RedisChannelLayer):
            key, now, lease = _open_sockets_key(layer, user_id), time.time(), SOCKET_LEASE_SECONDS
            args = [channel, now, now + lease, settings.WS_MAX_SOCKETS_PER_USER, int(lease * 1000)]
            client = layer.connection(layer.consistent_hash(key))
            if not await socket_layer_call(_HOLD(keys=[key], args=args, client=client)):
                return False
            if self.renewing is None or self.renewing.done():
                self.renewing = asyncio.create_task(self._renew(layer))
        elif len(self.held.get(user_id, ())) >= settings.WS_MAX_SOCKETS_PER_USER:
            return False
        self.held.setdefault(user_id, set()).add(channel)
        return True

    def forget(self, user_id: int, channel: str) -> None:
        """No longer renew this socket's lease."""
        channels = self.held.get(user_id)
        if channels is not None:
            channels.discard(channel)
            if not channels:
                del self.held[user_id]

    async def release(self, layer, user_id: int, channel: str) -> None:
        """The socket closed: it no longer counts."""
        self.forget(user_id, channel)
        if isinstance(layer, RedisChannelLayer):
            key = _open_sockets_key(layer, user_id)
            await socket_layer_call(layer.connection(layer.consistent_hash(key)).zrem(key, channel))

    async def _renew(self, layer) -> None:
        while self.held:
            await asyncio.sleep(SOCKET_LEASE_SECONDS / 3)
            try:
                await self.renew(layer)
            except LAYER_ERRORS:  # the leases left run out, and undercount: the next round renews them
                logger.warning("The leases of open sockets could not be renewed", exc_info=True)

    async def renew(self, layer) -> None:
        """Renew the leases of all of this process's sockets (a removed one stays out): one script
        call per RENEW_AT_ONCE users on each Redis server."""
        lease = SOCKET_LEASE_SECONDS
        by_server: dict[int, list[tuple[str, set[str]]]] = {}
        for user_id, channels in list(self.held.items()):
            key = _open_sockets_key(layer, user_id)
            by_server.setdefault(layer.consistent_hash(key), []).append((key, set(channels)))
        for index, sets in by_server.items():
            for start in range(0, len(sets), RENEW_AT_ONCE):
                batch = sets[start : start + RENEW_AT_ONCE]
                args: list = [time.time() + lease, int(lease * 1000)]
                for _, channels in batch:
                    args += [len(channels), *channels]
                keys = [key for key, _ in batch]
                await socket_layer_call(_RENEW(keys=keys, args=args, client=layer.connection(index)))


def _open_sockets_key(layer, user_id: int) -> str:
    return f"{layer.prefix}:open-sockets:{user_id}"


_open_sockets_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _open_sockets() -> _OpenSockets:
    """The register of the running event loop (a server process runs one)."""
    loop = asyncio.get_running_loop()
    found = _open_sockets_of.get(loop)
    if found is None:
        found = _open_sockets_of[loop] = _OpenSockets()
    return found


def _rejoin_every(layer) -> float:
    """A quarter of the layer's group expiry (channels_redis's and the in-memory layer's 86,400 s)."""
    return getattr(layer, "group_expiry", 86_400) / 4


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Any path no socket route knows: refused with 4404 (rather than an HTTP 500)."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NOT_FOUND)
