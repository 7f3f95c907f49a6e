"""The client's address and scheme: forwarded headers count only when a trusted proxy sent them."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from django.test import override_settings

from conftest import money_db
from paygo.api.forwarded import client_address, trusted_networks
from paygo.tests.conftest import exchange

LOGIN = "/api/v1/auth/login"


# --- client_address ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "client"),
    [
        # Nobody trusted (the default): the socket's peer, whatever the header claims.
        ("203.0.113.7", "1.2.3.4", [], "203.0.113.7"),
        ("127.0.0.1", "1.2.3.4, 5.6.7.8", [], "127.0.0.1"),
        # An untrusted peer's header is ignored even when proxies are configured.
        ("203.0.113.7", "1.2.3.4", ["10.0.0.0/8"], "203.0.113.7"),
        # A trusted proxy: the address it saw, the rightmost entry.
        ("10.0.0.2", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        # The client prepended a lie; the proxy appended the truth.
        ("10.0.0.2", "6.6.6.6, 1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        # Two trusted proxies in a row are skipped, right to left.
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.9", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 192.168.1.1", ["10.0.0.2", "192.168.1.1/32"], "1.2.3.4"),
        # All trusted: the farthest one.
        ("10.0.0.2", "10.0.0.3, 10.0.0.4", ["10.0.0.0/8"], "10.0.0.3"),
        # No header from a trusted proxy: the proxy itself.
        ("10.0.0.2", "", ["10.0.0.0/8"], "10.0.0.2"),
        # IPv6, and an IPv4 peer written as IPv6.
        ("::1", "2001:db8::5", ["::1"], "2001:db8::5"),
        ("::ffff:10.0.0.2", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        # Ports that some proxies add.
        ("10.0.0.2", "1.2.3.4:5678", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "[2001:db8::5]:443", ["10.0.0.0/8"], "2001:db8::5"),
        # Garbage where the trusted proxy's entry should be: the proxy, never the garbage.
        ("10.0.0.2", "1.2.3.4, unknown", ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", "1.2.3.4, ", ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", "1.2.3.4, 10.0.0.3, 999.1.1.1", ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", "\x00;'" + "x" * 5000, ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", ",,,,", ["10.0.0.0/8"], "10.0.0.2"),
        # Garbage beyond the first untrusted address is never read.
        ("10.0.0.2", "unknown, 1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
    ],
)
def test_client_address(peer, forwarded_for, trusted, client):
    assert client_address(peer, forwarded_for, trusted_networks(trusted)) == client


def test_trusted_proxies_that_are_not_addresses_stop_the_app():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES"):
        trusted_networks(["10.0.0.0/8", "proxy.example.com"])


# --- Through Django: rate limits and the scheme ---------------------------------------------------


def _login(anon, forwarded_for: str, n: int, **extra):
    return anon.post(
        LOGIN,
        {"email": f"x{n}@example.com", "password": "wrong-one"},
        format="json",
        HTTP_X_FORWARDED_FOR=forwarded_for,
        **extra,
    )


@pytest.mark.django_db
@override_settings(RATELIMIT_LOGIN_PER_IP="3/m")
def test_an_untrusted_forwarded_for_does_not_dodge_the_per_ip_limit(anon, still_clock):
    statuses = [_login(anon, f"198.51.100.{n}", n).status_code for n in range(4)]

    assert statuses == [401, 401, 401, 429]


@pytest.mark.django_db
@override_settings(RATELIMIT_LOGIN_PER_IP="3/m", TRUSTED_PROXIES=["127.0.0.1"])
def test_behind_a_trusted_proxy_each_client_has_its_own_limit(anon, still_clock):
    for n in range(3):
        assert _login(anon, "198.51.100.1", n).status_code == 401

    assert _login(anon, "198.51.100.1", 3).status_code == 429
    assert _login(anon, "198.51.100.2", 4).status_code == 401  # another client behind the same proxy
    assert _login(anon, "6.6.6.6, 198.51.100.1", 5).status_code == 429  # a prepended lie changes nothing


@pytest.mark.django_db
@pytest.mark.parametrize(("trusted", "client"), [([], "127.0.0.1"), (["127.0.0.1"], "198.51.100.9")])
def test_log_records_carry_the_client_address(anon, caplog, trusted, client):
    from paygo.api.middleware import RequestIdLogFilter

    with override_settings(TRUSTED_PROXIES=trusted), caplog.at_level(logging.WARNING, logger="django.request"):
        assert _login(anon, "198.51.100.9", 1).status_code == 401

    [record] = [record for record in caplog.records if record.name == "django.request"]
    RequestIdLogFilter().filter(record)
    assert record.client_ip == client


@pytest.mark.django_db
@pytest.mark.parametrize(
    "forwarded_for", ["unknown", "", "1.2.3.4:99999999", "[zz]:1", "\u00e9", "1.2.3.4, " * 2000, "::ffff:"]
)
@pytest.mark.parametrize("trusted", [[], ["127.0.0.1"]])
def test_garbage_forwarded_headers_never_give_a_500(anon, forwarded_for, trusted):
    with override_settings(TRUSTED_PROXIES=trusted):
        response = _login(anon, forwarded_for, 1, HTTP_X_FORWARDED_PROTO="\u00e9, https")

    assert response.status_code == 401


@pytest.mark.django_db
@override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), SECURE_SSL_REDIRECT=True)
def test_only_a_trusted_proxy_can_say_the_request_came_over_https(anon):
    """Django redirects what it takes for plain http to https: the header decides what it takes."""
    untrusted = anon.get("/api/v1/health", HTTP_X_FORWARDED_PROTO="https")
    with override_settings(TRUSTED_PROXIES=["127.0.0.0/8"]):
        trusted = anon.get("/api/v1/health", HTTP_X_FORWARDED_PROTO="https")
        trusted_plain = anon.get("/api/v1/health", HTTP_X_FORWARDED_PROTO="http")

    assert untrusted.status_code == 301
    assert untrusted["Location"] == "https://testserver/api/v1/health"
    assert trusted.status_code == 200
    assert trusted_plain.status_code == 301


# --- The real server -----------------------------------------------------------------------------


def test_manage_py_serve_does_not_trust_forwarded_headers_itself(monkeypatch, settings):
    """Daphne's --proxy-headers trusts anyone's X-Forwarded-For: PayGo decides whom to trust."""
    from django.core.management import call_command

    from paygo import server

    calls = []
    monkeypatch.setattr(server.CommandLineInterface, "run", lambda self, args: calls.append(args))
    settings.EMBEDDED = False

    call_command("serve", host="127.0.0.1", port=8123, stdout=io.StringIO())

    assert calls == [["--bind", "127.0.0.1", "--port", "8123", "paygo.asgi:application"]]


def _raw_login(address, n: int, forwarded_for: str, *, source: str | None = None) -> int:
    body = json.dumps({"email": f"x{n}@example.com", "password": "wrong-one"}).encode()
    head = (
        f"POST {LOGIN} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"X-Forwarded-For: {forwarded_for}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return exchange(address, head + body, source=source).status


def _a_client_address_with_a_whole_window_ahead(rate: str, room: int = 600) -> str:
    """A loopback address to connect from whose window (as the server counts `rate` per address)
    has `room` seconds left, so that the test's requests all fall in one window. The server counts in
    a process of its own, whose clock no test can stop, but where a window ends depends on the
    address counted (django-ratelimit's _get_window shifts it by crc32(address) % period): rather
    than wait for the next window, the client picks an address whose window has room."""
    from django_ratelimit.core import _get_window, _split_rate

    period = _split_rate(rate)[1]
    for n in range(2, 255):
        address = f"127.0.0.{n}"  # the whole of 127.0.0.0/8 is this machine
        if _get_window(address, period) - time.time() >= room:
            return address
    raise AssertionError(f"no loopback address has {room} s left in its window of {period} s")


@money_db
def test_the_server_counts_a_forging_client_by_its_own_address(live_daphne):
    address = live_daphne(RATELIMIT_LOGIN_PER_IP="3/d")
    client = _a_client_address_with_a_whole_window_ahead("3/d")

    statuses = [_raw_login(address, n, f"198.51.100.{n}", source=client) for n in range(4)]
    elsewhere = _raw_login(address, 4, "198.51.100.3", source="127.0.0.1")

    assert statuses == [401, 401, 401, 429]
    assert elsewhere == 401  # another client's first attempt: the count was the forging client's own


@money_db
def test_the_server_behind_a_trusted_proxy_counts_each_client(live_daphne):
    address = live_daphne(RATELIMIT_LOGIN_PER_IP="3/d", TRUSTED_PROXIES="10.0.0.0/8,127.0.0.1")

    statuses = [_raw_login(address, n, f"198.51.100.{n}") for n in range(4)]

    assert statuses == [401, 401, 401, 401]


@money_db
async def test_a_request_that_came_with_no_address_is_counted_not_a_500():
    """An ASGI server on a Unix socket sends no client: the per-address limits count it as
    NO_ADDRESS (django-ratelimit raised on the empty address)."""
    from channels.testing import HttpCommunicator

    from paygo.asgi import application

    body = json.dumps({"email": "alice@example.com", "password": "wrong"}).encode()
    communicator = HttpCommunicator(
        application, "POST", LOGIN, body=body, headers=[(b"host", b"localhost"), (b"content-type", b"application/json")]
    )
    assert "client" not in communicator.scope

    response = await communicator.get_response(timeout=10)

    assert response["status"] == 401
    assert json.loads(response["body"])["code"] == "invalid_credentials"
