"""Webhook signatures: hex HMAC-SHA256 of the raw body keyed with CHIPI_WEBHOOK_SECRET, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from wallets.chipi import sign_webhook, verify_webhook_signature, webhooks

BODY = b'{"event":"transaction.confirmed"}'
# Computed independently: hex HMAC-SHA256 of BODY keyed with "sk_test_webhooks".
KNOWN_SIGNATURE = "c515e69d315951509f343cf25ed3a51953ad4126df5872ddd0e22f4457b0fd76"

pytestmark = pytest.mark.usefixtures("webhook_secret")


@pytest.fixture
def webhook_secret():
    with override_settings(CHIPI_WEBHOOK_SECRET="sk_test_webhooks"):
        yield


def test_sign_webhook_is_hex_hmac_sha256_of_the_raw_body():
    assert sign_webhook(BODY) == KNOWN_SIGNATURE


def test_a_good_signature_verifies():
    assert verify_webhook_signature(BODY, sign_webhook(BODY)) is True


def test_case_and_surrounding_blanks_of_the_hex_do_not_matter():
    assert verify_webhook_signature(BODY, f" {KNOWN_SIGNATURE.upper()}\n") is True


def test_a_tampered_body_fails():
    assert verify_webhook_signature(BODY.replace(b"confirmed", b"failed"), KNOWN_SIGNATURE) is False


def test_a_signature_made_with_another_key_fails():
    with override_settings(CHIPI_WEBHOOK_SECRET="sk_someone_else"):
        forged = sign_webhook(BODY)

    assert verify_webhook_signature(BODY, forged) is False


@pytest.mark.parametrize("signature", [None, "", "   "])
def test_a_missing_signature_fails(signature):
    assert verify_webhook_signature(BODY, signature) is False


@pytest.mark.parametrize(
    "signature",
    ["not-hex-at-all", "zz" * 32, KNOWN_SIGNATURE[:-2], KNOWN_SIGNATURE + "00", "é" * 64, "sha256=" + KNOWN_SIGNATURE],
)
def test_garbage_fails_without_raising(signature):
    assert verify_webhook_signature(BODY, signature) is False


def test_the_comparison_is_constant_time(monkeypatch):
    compared = []
    real_compare_digest = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real_compare_digest(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)

    assert verify_webhook_signature(BODY, KNOWN_SIGNATURE) is True
    assert compared == [(KNOWN_SIGNATURE.encode(), KNOWN_SIGNATURE.encode())]


@override_settings(CHIPI_WEBHOOK_SECRET="")
def test_without_a_secret_nothing_verifies_and_nothing_is_signed():
    signed_with_empty_key = hmac.new(b"", BODY, hashlib.sha256).hexdigest()

    assert verify_webhook_signature(BODY, signed_with_empty_key) is False
    with pytest.raises(ImproperlyConfigured):
        sign_webhook(BODY)


def test_a_body_signed_with_the_api_secret_key_fails():
    """Webhooks have their own secret: the API's bearer secret signs nothing Chipi sends."""
    with override_settings(CHIPI_SECRET_KEY="sk_the_api_secret"):
        signed_with_api_secret = hmac.new(b"sk_the_api_secret", BODY, hashlib.sha256).hexdigest()

        assert verify_webhook_signature(BODY, signed_with_api_secret) is False
