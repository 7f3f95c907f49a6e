"""Who the client is behind proxies: forwarded headers count only when a trusted proxy sent them.

X-Forwarded-For and X-Forwarded-Proto are written by whoever connects, so they are believed only
from the addresses in TRUSTED_PROXIES (none by default). `ForwardedMiddleware`, the first of all,
settles both for the rest of the request: REMOTE_ADDR becomes the client's address (which the rate
limits, the logs and anything else that asks Django read), the forwarded headers of an untrusted
peer are dropped (so that SECURE_PROXY_SSL_HEADER only ever reads a trusted proxy's word), and
X-Forwarded-For, once read, is dropped too: nothing after it can read it differently.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

# Forwarded headers, as Django's META names them.
_FORWARDED_FOR = "HTTP_X_FORWARDED_FOR"
_FORWARDED_HEADERS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PROTO")


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> Networks:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"TRUSTED_PROXIES holds {entry!r}, which is neither an IP address nor a network (10.0.0.0/8)."
            ) from None
    return tuple(networks)


def trusted_networks(entries: Iterable[str] | None = None) -> Networks:
    """The networks of TRUSTED_PROXIES (or of `entries`); ImproperlyConfigured for anything else."""
    return _networks(tuple(settings.TRUSTED_PROXIES if entries is None else entries))


def parse_address(text: str) -> IPAddress | None:
    """An address as a forwarded header or a socket writes it ("1.2.3.4", "1.2.3.4:80", "[::1]:80",
    "::ffff:1.2.3.4"), or None for anything else."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, trusted: Networks) -> bool:
    return any(address in network for network in trusted)


def client_address(peer: str, forwarded_for: str, trusted: Networks) -> str:
    """The client's address: the socket's peer, unless the peer is a trusted proxy, in which case the
    X-Forwarded-For chain is walked from its right end (the entry the proxy itself wrote), skipping
    trusted proxies, to the first address that is not one.

    An entry that is not an address stops the walk at the last trusted proxy: garbage never
    becomes the client, and nothing to the left of it (which anyone may have written) is read.
    """
    current = parse_address(peer)
    if current is None:
        return peer
    for entry in reversed(forwarded_for.split(",") if forwarded_for else []):
        if not _is_trusted(current, trusted):
            break
        hop = parse_address(entry)
        if hop is None:
            break
        current = hop
    return str(current)


class ForwardedMiddleware:
    """The first middleware: settles the client's address and what the proxy said of the scheme."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        trusted_networks()  # a wrong TRUSTED_PROXIES stops the app at start, not at a request

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        trusted = trusted_networks()
        peer = meta.get("REMOTE_ADDR") or ""
        peer_address = parse_address(peer)
        forwarded_for = meta.pop(_FORWARDED_FOR, "")
        if peer_address is not None and _is_trusted(peer_address, trusted):
            meta["REMOTE_ADDR"] = client_address(peer, forwarded_for, trusted)
        else:
            for name in _FORWARDED_HEADERS:
                meta.pop(name, None)
        return self.get_response(request)
