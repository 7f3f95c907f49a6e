"""Chipi webhook signatures: header `chipi-signature` = hex HMAC-SHA256 of the raw body, keyed with the
webhook secret (CHIPI_WEBHOOK_SECRET, its own value in Chipi's dashboard, not the API's secret key)."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SIGNATURE_HEADER = "chipi-signature"


def sign_webhook(raw_body: bytes) -> str:
    """The signature Chipi sends with `raw_body` (the sandbox and tests sign with it)."""
    secret = settings.CHIPI_WEBHOOK_SECRET
    if not secret:
        raise ImproperlyConfigured("CHIPI_WEBHOOK_SECRET is empty: there is no key to sign webhooks with.")
    return hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify_webhook_signature(raw_body: bytes, signature: str | None) -> bool:
    """True only when `signature` is the body's signature; compared in constant time.

    False for a missing, empty or non-ASCII signature and whenever no secret is configured: an empty
    key would let anyone forge a signature.
    """
    secret = settings.CHIPI_WEBHOOK_SECRET
    if not secret or not signature or not isinstance(signature, str):
        return False
    try:
        given = signature.strip().lower().encode("ascii")
    except UnicodeEncodeError:
        return False
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest().encode("ascii")
    return hmac.compare_digest(expected, given)
