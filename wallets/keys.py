"""The wallets' encryptKeys, sealed under the master key (CHIPI_KEY_ENCRYPTION_KEY).

Chipi keeps each wallet's private key encrypted with that wallet's encryptKey; PayGo generates the
encryptKey and keeps it only sealed here (AES-256-GCM, the key the SHA-256 of the master secret).
A sealed value names the master key it was sealed under ("v1.<key id>.<base64 nonce+ciphertext>"),
so the master key can be rotated: set the new one as CHIPI_KEY_ENCRYPTION_KEY, the old one in
CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS, run `manage.py chipi_reseal_keys`, then drop the old one.
Neither the encryptKeys nor the master key are ever logged or returned by any API or admin page.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q

_VERSION = "v1"
_NONCE_BYTES = 12


class KeyUnsealError(Exception):
    """A sealed key that no configured master key opens (wrong, rotated away, or tampered with)."""


class MasterKeyMissing(KeyUnsealError):
    """A sealed key whose master key is neither CHIPI_KEY_ENCRYPTION_KEY nor one of the previous ones."""


def _key_id(master: str) -> str:
    return hashlib.sha256(b"paygo-chipi-key-id:" + master.encode()).hexdigest()[:12]


def _aead(master: str) -> AESGCM:
    return AESGCM(hashlib.sha256(b"paygo-chipi-key:" + master.encode()).digest())


def _masters() -> list[str]:
    current = settings.CHIPI_KEY_ENCRYPTION_KEY
    if not current:
        raise ImproperlyConfigured("CHIPI_KEY_ENCRYPTION_KEY is empty: wallets' keys cannot be sealed.")
    return [current, *settings.CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS]


def new_encrypt_key() -> str:
    """A fresh encryptKey for one wallet (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def seal(plaintext: str) -> str:
    master = _masters()[0]
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _aead(master).encrypt(nonce, plaintext.encode(), _VERSION.encode())
    return f"{_VERSION}.{_key_id(master)}.{base64.b64encode(nonce + sealed).decode()}"


def unseal(sealed: str) -> str:
    try:
        version, key_id, body = sealed.split(".", 2)
        data = base64.b64decode(body, validate=True)
    except ValueError:
        raise KeyUnsealError("Not a sealed key.") from None
    if version != _VERSION:
        raise KeyUnsealError(f"Unknown sealing version {version!r}.")
    for master in _masters():
        if _key_id(master) == key_id:
            try:
                return _aead(master).decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], _VERSION.encode()).decode()
            except InvalidTag:
                raise KeyUnsealError("The sealed key does not open: tampered with, or a wrong master key.") from None
    raise MasterKeyMissing("Sealed under a master key that is not configured (see CHIPI_KEY_ENCRYPTION_KEY_PREVIOUS).")


def sealed_under_current(sealed: str) -> bool:
    """Whether `sealed` is already under the current master key (rotation skips it)."""
    parts = sealed.split(".", 2)
    return len(parts) == 3 and parts[1] == _key_id(_masters()[0])


def sealed_under_configured(field: str) -> Q:
    """Rows whose sealed value in `field` names a configured master key: what unseal can open, read
    by the database (tampered values aside)."""
    condition = Q()
    for master in _masters():
        condition |= Q(**{f"{field}__startswith": f"{_VERSION}.{_key_id(master)}."})
    return condition
