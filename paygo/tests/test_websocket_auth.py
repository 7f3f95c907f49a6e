"""Socket authentication: a valid JWT (query or subprotocol) is accepted, anything else gets 4401,
whose reason is the code the API's 401 would say (paygo.api.authentication): `token_expired` (refresh
and reconnect) apart from the refusals after which only a new sign-in helps."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import token_pair_for, user_deactivate
from paygo.asgi import application
from paygo.tests.test_websocket_frames import _close_code, _closed

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def _access_token(user) -> str:
    return token_pair_for(user).access  # a sign-in is recorded: database work, off the event loop


def unauthenticated(reason: str) -> dict:
    """The close of a socket refused for its credentials, with the reason a client acts on."""
    return {"type": "websocket.close", "code": 4401, "reason": reason}


async def _connect(path: str, subprotocols=None):
    communicator = WebsocketCommunicator(application, path, subprotocols=subprotocols)
    connected, subprotocol = await communicator.connect()
    return communicator, connected, subprotocol


async def test_valid_token_in_query_is_accepted(alice):
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()

    communicator, connected, _ = await _connect(f"/ws/notifications/?token={token}")

    assert connected
    assert await communicator.receive_json_from() == {"type": "connected", "userId": alice.pk}
    await communicator.disconnect()


async def test_valid_token_as_subprotocol_is_accepted_and_echoed(alice):
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()

    communicator, connected, subprotocol = await _connect("/ws/notifications/", [f"bearer.{token}"])

    assert connected
    assert subprotocol == f"bearer.{token}"
    assert (await communicator.receive_json_from())["userId"] == alice.pk
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("query", "reason"),
    [("", "not_authenticated"), ("?token=", "not_authenticated"), ("?token=garbage.token.here", "token_invalid")],
)
async def test_missing_or_bad_token_closes_4401(query, reason):
    communicator, connected, _ = await _connect(f"/ws/notifications/{query}")

    assert connected  # accepted so that the client can read the close code
    assert await communicator.receive_output() == unauthenticated(reason)


async def test_an_expired_token_closes_4401_token_expired(alice):
    """The one refusal a refresh mends: a client tells it from the others by the reason alone."""
    import time_machine
    from rest_framework_simplejwt.tokens import AccessToken

    token = await _access_token(alice)
    with time_machine.travel(AccessToken(token)["exp"] + 1, tick=False):
        communicator, _, _ = await _connect(f"/ws/notifications/?token={token}")

        assert await communicator.receive_output() == unauthenticated("token_expired")


async def test_a_token_of_an_ended_sign_in_closes_4401_sign_in_ended(alice):
    from accounts.services import token_logout

    pair = await database_sync_to_async(token_pair_for)(alice)
    await database_sync_to_async(token_logout)(refresh_token=pair.refresh)

    communicator, _, _ = await _connect(f"/ws/notifications/?token={pair.access}")

    assert await communicator.receive_output() == unauthenticated("sign_in_ended")


async def test_deactivated_users_token_closes_4401(alice):
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()
    await database_sync_to_async(user_deactivate)(user=alice)

    communicator, _, _ = await _connect(f"/ws/notifications/?token={token}")

    assert await communicator.receive_output() == unauthenticated("user_inactive")


async def test_a_token_issued_before_the_password_changed_closes_4401(alice):
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()
    alice.set_password("a-brand-new-Password-42")
    await database_sync_to_async(alice.save)(update_fields=["password"])

    communicator, _, _ = await _connect(f"/ws/notifications/?token={token}")

    assert await communicator.receive_output() == unauthenticated("password_changed")


async def test_refresh_token_is_not_an_access_token(alice):
    token = await database_sync_to_async(lambda: token_pair_for(alice).refresh)()

    communicator, _, _ = await _connect(f"/ws/notifications/?token={token}")

    assert await communicator.receive_output() == unauthenticated("token_invalid")


@pytest.mark.parametrize("scheme", ["BEARER", "Bearer", "bEaReR"])
async def test_the_subprotocols_scheme_is_case_insensitive(alice, scheme):
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()

    communicator, connected, subprotocol = await _connect("/ws/notifications/", [f"{scheme}.{token}"])

    assert connected
    assert subprotocol == f"{scheme}.{token}"
    assert (await communicator.receive_json_from())["userId"] == alice.pk
    await communicator.disconnect()


async def _stream_socket(user, vendor):
    """`user`'s socket on a running session of theirs, past its first messages."""
    from marketplace.models import Category
    from marketplace.services import service_create
    from streaming.services import session_start
    from wallets.tests.conftest import fund_wallet

    def start():
        fund_wallet(user, 10_000_000)
        category = Category.objects.filter(parent__isnull=True).first()
        service = service_create(vendor=vendor, name="Live", category=category, rate=1000, unit="per_minute")
        return session_start(user=user, service=service).session_id, token_pair_for(user).access

    session_id, token = await database_sync_to_async(start)()
    communicator, connected, _ = await _connect(f"/ws/streams/{session_id}/?token={token}")
    assert connected
    return communicator


@pytest.mark.parametrize("how", ["service", "admin form"])
async def test_deactivating_closes_the_sockets_already_open_4401(alice, bob, victor, olga, how):
    """A handshake checks the account once: the sockets open when it is deactivated close then, every
    one of the user's, and nobody else's."""
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()
    alices = [(await _connect(f"/ws/notifications/?token={token}"))[0], await _stream_socket(alice, victor)]
    assert (await alices[0].receive_json_from())["type"] == "connected"
    bobs = (await _connect(f"/ws/notifications/?token={await _access_token(bob)}"))[0]
    assert (await bobs.receive_json_from())["type"] == "connected"

    if how == "service":
        await database_sync_to_async(user_deactivate)(user=alice)
    else:
        await database_sync_to_async(_deactivate_in_the_admin)(olga, alice)

    for communicator in alices:  # the account's: not its sign-ins', which end with it
        assert await _closed(communicator) == unauthenticated("user_inactive")
    assert await bobs.receive_nothing(timeout=0.5)
    await bobs.disconnect()


async def test_a_changed_password_closes_the_sockets_its_old_tokens_opened(alice, bob):
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()
    alices = (await _connect(f"/ws/notifications/?token={token}"))[0]
    assert (await alices.receive_json_from())["type"] == "connected"
    bobs = (await _connect(f"/ws/notifications/?token={await _access_token(bob)}"))[0]
    assert (await bobs.receive_json_from())["type"] == "connected"

    alice.set_password("a-brand-new-Password-42")
    await database_sync_to_async(alice.save)(update_fields=["password"])

    assert await _closed(alices) == unauthenticated("password_changed")
    assert await bobs.receive_nothing(timeout=0.5)
    await bobs.disconnect()


async def test_a_sign_in_that_ends_closes_the_sockets_its_tokens_opened_and_no_other(alice):
    """A logout ends the sign-in's access tokens (accounts.services.sign_ins_end): the sockets they
    opened close then, the same user's sockets of another sign-in stay open, and the token opens no
    new one."""
    from accounts.models import SignIn
    from accounts.services import token_logout

    here, there = await database_sync_to_async(lambda: (token_pair_for(alice), token_pair_for(alice)))()
    ending = (await _connect(f"/ws/notifications/?token={here.access}"))[0]
    staying = (await _connect(f"/ws/notifications/?token={there.access}"))[0]
    for communicator in (ending, staying):
        assert (await communicator.receive_json_from())["type"] == "connected"

    assert await database_sync_to_async(token_logout)(refresh_token=here.refresh) == 1

    assert await _closed(ending) == unauthenticated("sign_in_ended")
    assert await staying.receive_nothing(timeout=0.5)
    again, _, _ = await _connect(f"/ws/notifications/?token={here.access}")
    assert await again.receive_output() == unauthenticated("sign_in_ended")
    await staying.disconnect()
    ended = await database_sync_to_async(lambda: SignIn.objects.filter(ended_at__isnull=False).count())()
    assert ended == 1


@pytest.mark.parametrize(("everywhere", "closes"), [(False, 1), (True, 2)], ids=["logout", "logout everywhere"])
async def test_only_a_sign_in_ended_for_the_accounts_safety_is_closed_again_later(
    alice, monkeypatch, everywhere, closes
):
    """The sockets of an ended sign-in are closed once, and once more RECLOSE_SECONDS later (for a
    handshake under way as it ended) when it ended for the account's safety: a logout everywhere,
    a reused refresh token, staff. A plain logout is the device's own, which closes its own sockets:
    closed once, with no timer in the server process. Counted as every socket of alice hears it."""
    import threading

    from channels.layers import get_channel_layer
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import SignIn
    from accounts.services import token_logout
    from paygo import ws

    monkeypatch.setattr(ws, "RECLOSE_SECONDS", 0.05)
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(ws.sockets_group(alice.pk), listener)
    pair = await database_sync_to_async(token_pair_for)(alice)
    timers_before = set(threading.enumerate())

    await database_sync_to_async(token_logout)(refresh_token=pair.refresh, everywhere=everywhere)
    for thread in set(threading.enumerate()) - timers_before:  # a close sent again has been sent
        if isinstance(thread, threading.Timer):
            await asyncio.to_thread(thread.join, 5)

    heard = [await asyncio.wait_for(layer.receive(listener), timeout=5) for _ in range(closes)]
    with pytest.raises(TimeoutError):  # and no more: anything sent is in the layer by now
        await asyncio.wait_for(layer.receive(listener), timeout=0.5)
    sign_in = str(SignIn.id_of(AccessToken(pair.access)))
    assert all(message["type"] == "sockets.revoked" and sign_in in message["sign_ins"] for message in heard)
    await layer.group_discard(ws.sockets_group(alice.pk), listener)


def _deactivate_in_the_admin(operator, user) -> None:
    from django.test import Client

    from conftest import admin_form

    client = Client()
    client.force_login(operator)
    form = admin_form(client, f"/admin/accounts/user/{user.pk}/change/")
    del form["is_active"]  # unticked
    response = client.post(f"/admin/accounts/user/{user.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    user.refresh_from_db()
    assert not user.is_active


@pytest.mark.parametrize(
    "when",
    [
        "after the socket joined its user's group",
        "between the handshake's read of the account and its joining the group",
    ],
)
async def test_a_deactivation_during_the_handshake_closes_the_socket(alice, monkeypatch, when):
    """A deactivation that commits while a socket's handshake runs closes it: after the socket has
    joined its user's group, the close reaches it there. Between the handshake's read of the account
    and its joining, the close goes to a group the socket is not in yet (it stayed open): the close
    sent again later (ws.RECLOSE_SECONDS, here 0.5 s) reaches it."""
    from notifications.consumers import NotificationsConsumer
    from paygo import ws

    monkeypatch.setattr(ws, "RECLOSE_SECONDS", 0.5)

    def deactivate():
        from accounts.models import User

        user_deactivate(user=User.objects.get(pk=alice.pk))

    if when == "after the socket joined its user's group":
        join = ws.AuthenticatedConsumer.join

        async def joined_then_deactivated(self, group):
            await join(self, group)
            if group == ws.sockets_group(alice.pk):
                await database_sync_to_async(deactivate)()

        monkeypatch.setattr(ws.AuthenticatedConsumer, "join", joined_then_deactivated)
    else:
        authorize = NotificationsConsumer.authorize

        async def deactivated_then_authorized(self, user):
            await database_sync_to_async(deactivate)()
            return await authorize(self, user)

        monkeypatch.setattr(NotificationsConsumer, "authorize", deactivated_then_authorized)
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()

    communicator, connected, _ = await _connect(f"/ws/notifications/?token={token}")

    assert connected
    assert await _closed(communicator) == unauthenticated("user_inactive")


async def test_a_user_reactivated_after_a_deactivation_opens_sockets_again(alice):
    """A deactivation ends nothing for later: an account an operator made active again connects."""
    await database_sync_to_async(user_deactivate)(user=alice)
    alice.is_active = True
    await database_sync_to_async(alice.save)(update_fields=["is_active"])
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()

    communicator, connected, _ = await _connect(f"/ws/notifications/?token={token}")

    assert connected
    assert (await communicator.receive_json_from())["type"] == "connected"
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


class _Later:
    """A `time` module as channels_redis reads it, `seconds` later."""

    def __init__(self, real, seconds: float):
        self._real, self._seconds = real, seconds

    def time(self) -> float:
        return self._real.time() + self._seconds

    def __getattr__(self, name):
        return getattr(self._real, name)


async def _until_joined_again(user, *, since: float) -> None:
    """Until the user's one socket is in both of its groups as joined at `since` or after (channels_redis
    scores a member with when it joined), polled rather than slept on: in time on a loaded machine,
    no longer than needed on an idle one."""
    import time

    from channels.layers import get_channel_layer

    from notifications.consumers import user_group
    from paygo.ws import sockets_group

    layer = get_channel_layer()
    groups = [user_group(user.pk), sockets_group(user.pk)]
    deadline = time.monotonic() + 10
    while True:
        joined = [
            await layer.connection(layer.consistent_hash(group)).zrange(layer._group_key(group), 0, -1, withscores=True)
            for group in groups
        ]
        if all(len(members) == 1 and members[0][1] >= since for members in joined):
            return
        assert time.monotonic() < deadline, f"the socket never joined its groups again: {joined}"
        await asyncio.sleep(0.02)


async def test_a_socket_open_longer_than_the_layers_group_expiry_stays_in_its_groups(alice, monkeypatch):
    """channels_redis drops a group's members older than its group expiry (a day) as it sends: a
    socket open longer (a tab left on a dashboard) silently got nothing more, its account's closing
    included. Sockets join their groups again well before then (here every 0.2 s)."""
    import time

    import channels_redis.core

    from notifications import notify
    from paygo import ws

    monkeypatch.setattr(ws, "_rejoin_every", lambda layer: 0.2)
    token = await database_sync_to_async(lambda: token_pair_for(alice).access)()
    communicator, connected, _ = await _connect(f"/ws/notifications/?token={token}")
    assert connected
    assert (await communicator.receive_json_from())["type"] == "connected"

    later = _Later(time, 86_401)  # a day and a second later
    monkeypatch.setattr(channels_redis.core, "time", later)
    await _until_joined_again(alice, since=later.time())
    await database_sync_to_async(notify)(alice.pk, "system", "Hello", "a day later")

    assert (await communicator.receive_json_from(timeout=5))["type"] == "notification"
    await database_sync_to_async(user_deactivate)(user=alice)
    assert await _closed(communicator) == unauthenticated("user_inactive")


def _edit_in_the_admin(operator, user, **changes) -> None:
    from django.test import Client

    from accounts.tests.test_admin_users import _change_form

    client = Client()
    client.force_login(operator)
    response = client.post(f"/admin/accounts/user/{user.pk}/change/", {**_change_form(client, user), **changes})
    assert response.status_code == 302, response.content[:2000]


async def test_an_operator_changing_someones_access_makes_their_sockets_reconnect_4409(stan, olga, alice):
    """A handshake decides once what a socket may watch: a staff member whose permissions an
    operator changes reconnects (4409), and the new handshake decides under the new access. An
    edit that changes no access closes nothing."""
    from django.contrib.auth.models import Permission

    token = await database_sync_to_async(lambda: token_pair_for(stan).access)()
    stans = (await _connect(f"/ws/notifications/?token={token}"))[0]
    assert (await stans.receive_json_from())["type"] == "connected"
    alices = (await _connect(f"/ws/notifications/?token={await _access_token(alice)}"))[0]
    assert (await alices.receive_json_from())["type"] == "connected"

    await database_sync_to_async(_edit_in_the_admin)(olga, alice, name="Alice Renamed")
    assert await alices.receive_nothing(timeout=0.5)
    view = await database_sync_to_async(
        lambda: Permission.objects.get(content_type__app_label="streaming", codename="view_streamingsession").pk
    )()
    await database_sync_to_async(_edit_in_the_admin)(olga, stan, user_permissions=[view])

    assert await _close_code(stans) == 4409
    assert await alices.receive_nothing(timeout=0.5)
    await alices.disconnect()


def _group_in_the_admin(operator, group, *, permissions=None, delete=False) -> None:
    from django.test import Client

    client = Client()
    client.force_login(operator)
    if delete:
        response = client.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"})
    else:
        from conftest import admin_form

        url = f"/admin/auth/group/{group.pk}/change/"
        response = client.post(url, {**admin_form(client, url), "permissions": permissions or []})
    assert response.status_code == 302, response.content[:2000]


async def test_an_operator_changing_a_groups_permissions_makes_its_members_sockets_reconnect_4409(stan, olga, alice):
    """A group's permissions are its members': an operator who changes them, or deletes the group,
    makes each member's sockets reconnect, as an edit of the member's own permissions does."""
    from django.contrib.auth.models import Group, Permission

    def a_group_of_stan() -> tuple[Group, int]:
        view = Permission.objects.get(content_type__app_label="streaming", codename="view_streamingsession")
        group = Group.objects.create(name="Support")
        group.permissions.add(view)
        stan.groups.add(group)
        return group, view.pk

    group, view = await database_sync_to_async(a_group_of_stan)()

    async def sockets():
        opened = []
        for user in (stan, alice):
            token = await database_sync_to_async(lambda user=user: token_pair_for(user).access)()
            communicator = (await _connect(f"/ws/notifications/?token={token}"))[0]
            assert (await communicator.receive_json_from())["type"] == "connected"
            opened.append(communicator)
        return opened

    stans, alices = await sockets()
    await database_sync_to_async(_group_in_the_admin)(olga, group, permissions=[view])  # no change
    assert await stans.receive_nothing(timeout=0.5)
    await database_sync_to_async(_group_in_the_admin)(olga, group, permissions=[])
    assert await _close_code(stans) == 4409
    assert await alices.receive_nothing(timeout=0.5)
    await alices.disconnect()

    stans, alices = await sockets()
    await database_sync_to_async(_group_in_the_admin)(olga, group, delete=True)
    assert await _close_code(stans) == 4409
    assert await alices.receive_nothing(timeout=0.5)
    await alices.disconnect()


@pytest.mark.parametrize("socket", ["notifications", "streams"])
async def test_a_socket_closes_when_its_token_expires(alice, victor, socket):
    """A handshake checks the token once: its socket went on receiving after the token expired
    (bounded only by Daphne's websocket_timeout, a day), a payer's stream socket counting as a sign
    of life all along. It closes (4401) at the token's expiry; a socket of a newer token stays.

    The clock stands still moments before the expiry while the session is set up and both sockets
    shake hands, so that however slow the machine, the expiring token is still valid at its
    handshake; only the socket's own timer (the 1.5 s the token had left) runs in real time."""
    import time_machine
    from rest_framework_simplejwt.tokens import AccessToken

    from marketplace.models import Category
    from marketplace.services import service_create
    from streaming.services import session_start
    from wallets.tests.conftest import fund_wallet

    expiring = await _access_token(alice)
    expires_at = AccessToken(expiring)["exp"]

    def path() -> str:
        if socket == "notifications":
            return "/ws/notifications/"
        fund_wallet(alice, 10_000_000)
        category = Category.objects.filter(parent__isnull=True).first()
        service = service_create(vendor=victor, name="Live", category=category, rate=1000, unit="per_minute")
        return f"/ws/streams/{session_start(user=alice, service=service).session_id}/"

    with time_machine.travel(expires_at - 1.5, tick=False) as clock:  # moments before it expires
        where = await database_sync_to_async(path)()
        newer = await _access_token(alice)  # valid for a whole lifetime from here
        ending = (await _connect(f"{where}?token={expiring}"))[0]
        staying = (await _connect(f"{where}?token={newer}"))[0]
        for communicator in (ending, staying):
            assert (await communicator.receive_output())["type"] == "websocket.send"  # accepted

        clock.move_to(expires_at)  # the instant it expires: every check refuses it from here on
        # its timer: no revocation, and the newer socket stays; refreshing and reconnecting mends it
        assert await _closed(ending) == unauthenticated("token_expired")
        if socket == "notifications":
            assert await staying.receive_nothing(timeout=0.5)
        else:
            assert (await staying.receive_json_from(timeout=3))["type"] == "cost.tick"
        again, _, _ = await _connect(f"{where}?token={expiring}")
        assert await again.receive_output() == unauthenticated("token_expired")
        await staying.disconnect()
        await ending.disconnect()


async def test_logging_out_of_the_admin_closes_the_sockets_its_session_opened(olga):
    """A staff member's socket opened by the admin's pages stands on the admin's session cookie,
    with no sign-in: after a logout (the session flushed, its cookie opening nothing) it stayed open
    and kept receiving (on a shared computer, a stream socket kept showing a payer's balance). It
    closes (4401) at the logout; the member's sockets of another admin session or of a token stay."""
    from django.test import Client

    from notifications import notify

    def signed_in() -> tuple[Client, list]:
        client = Client()
        client.force_login(olga)
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        return client, [(b"cookie", cookie), (b"origin", b"http://testserver"), (b"host", b"testserver")]

    async def opened(headers=None, path="/ws/notifications/"):
        communicator = WebsocketCommunicator(application, path, headers=headers or [])
        connected, _ = await communicator.connect()
        assert connected
        assert (await communicator.receive_json_from())["type"] == "connected"
        return communicator

    (leaving, cookie), (_, other_cookie) = [await database_sync_to_async(signed_in)() for _ in range(2)]
    ending = await opened(cookie)
    others = [await opened(other_cookie), await opened(path=f"/ws/notifications/?token={await _access_token(olga)}")]

    response = await database_sync_to_async(leaving.post)("/admin/logout/")

    assert response.status_code == 200
    assert await _closed(ending) == unauthenticated("sign_in_ended")
    await database_sync_to_async(notify)(olga.pk, "system", "Hello", "For staff", {})
    for communicator in others:
        assert (await communicator.receive_json_from(timeout=5))["type"] == "notification"
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
    again = WebsocketCommunicator(application, "/ws/notifications/", headers=cookie)
    assert (await again.connect())[0]
    assert await again.receive_output() == unauthenticated("not_authenticated")


@pytest.mark.timeout(120)
async def test_through_daphne_the_client_reads_the_reason(alice, live_daphne):
    """Daphne passed on the close's code and dropped its reason: a client read 4401 alone, whether
    its token had expired or its account was gone."""
    from datetime import timedelta

    import aiohttp
    import time_machine
    from django.utils import timezone

    host, port = live_daphne()
    with time_machine.travel(timezone.now() - timedelta(days=30)):
        expired = await _access_token(alice)
    url = f"ws://{host}:{port}/ws/notifications/"

    closes = []
    async with aiohttp.ClientSession() as http:
        for token in (expired, "garbage.token.here"):
            async with http.ws_connect(url, protocols=[f"bearer.{token}"]) as socket:
                message = await socket.receive(timeout=30)
            closes.append((message.type, message.data, message.extra))

    assert closes == [
        (aiohttp.WSMsgType.CLOSE, 4401, "token_expired"),
        (aiohttp.WSMsgType.CLOSE, 4401, "token_invalid"),
    ]
