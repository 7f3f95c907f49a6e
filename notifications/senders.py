"""The two ways out of the platform: email through Django's mail backend, SMS through Twilio.

Each sender either returns, or raises one of three errors that tell the caller what to do next:
retry later (the error can heal), record a failure (it cannot), or record a skip (not configured).
"""

from __future__ import annotations

import logging
import smtplib

import requests
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.mail import EmailMessage
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

logger = logging.getLogger("paygo.notifications")


class DeliveryError(Exception):
    """A send that did not happen; str() is the reason recorded on the notification."""


class TransientDeliveryError(DeliveryError):
    """Can heal (a timeout, a dropped connection, 429, 5xx, an SMTP 4xx): retried with backoff."""


class PermanentDeliveryError(DeliveryError):
    """Will not heal by retrying (an invalid number, a refused address): recorded as failed."""


class OutcomeUnknown(PermanentDeliveryError):
    """The provider may have taken the message, its answer was lost (a read timeout, a connection
    dropped after the request left): recorded as failed, not retried, which would send it twice."""


class ProviderNotConfigured(DeliveryError):
    """No provider is configured for this channel: recorded as skipped."""


def send_email(*, to: str, subject: str, body: str) -> None:
    message = EmailMessage(subject=subject, body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[to])
    try:
        sent = message.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        error_class = TransientDeliveryError if codes and all(400 <= c < 500 for c in codes) else PermanentDeliveryError
        raise error_class(f"The mail server refused the recipient: {codes}") from exc
    except smtplib.SMTPResponseException as exc:  # sender refused, data refused, auth, connect...
        error_class = TransientDeliveryError if 400 <= exc.smtp_code < 500 else PermanentDeliveryError
        raise error_class(f"The mail server answered {exc.smtp_code}: {_text(exc.smtp_error)}") from exc
    except smtplib.SMTPServerDisconnected as exc:
        raise TransientDeliveryError(f"The mail server disconnected: {exc}") from exc
    except smtplib.SMTPException as exc:  # e.g. STARTTLS not supported: configuration, not weather
        raise PermanentDeliveryError(f"Email failed: {exc.__class__.__name__}: {exc}") from exc
    except OSError as exc:  # timeouts, refused or reset connections, DNS
        raise TransientDeliveryError(f"Could not reach the mail server: {exc.__class__.__name__}: {exc}") from exc
    if not sent:
        raise PermanentDeliveryError("The mail backend sent nothing.")


def sms_configured() -> bool:
    return bool(settings.TWILIO_SID and settings.TWILIO_AUTH_TOKEN and settings.TWILIO_PHONE_NUMBER)


def twilio_http_client() -> HttpClient:
    """The HTTP boundary with Twilio (tests replace this one function)."""
    return TwilioHttpClient(timeout=settings.TWILIO_TIMEOUT)


class _WatchedHttpClient(HttpClient):
    """Twilio's HTTP client, noting when the request is handed to it: from then on it may have left.

    The line is drawn there, not at the first byte on the wire: what the client does inside (DNS,
    connecting, TLS) cannot be seen from here, so a time limit landing while it connects counts as
    an answer lost. One SMS recorded as failed that never left, rather than one sent twice.
    """

    def __init__(self, client: HttpClient):
        super().__init__(logger=client.logger, is_async=client.is_async, timeout=client.timeout)
        self.client = client
        self.handed_over = False

    def request(self, *args, **kwargs):
        self.handed_over = True
        return self.client.request(*args, **kwargs)


def send_sms(*, to: str, body: str) -> str:
    """Send one SMS; the Twilio message SID.

    Celery's soft time limit (SoftTimeLimitExceeded) goes through only while the request has not yet
    been handed to the HTTP client, where it is safely retried; after, it is OutcomeUnknown.
    """
    if not sms_configured():
        logger.info("SMS not sent (Twilio is not configured) to %s: %s", mask_phone(to), body)
        raise ProviderNotConfigured("Twilio is not configured (TWILIO_SID, TWILIO_AUTH_TOKEN, TWILIO_PHONE_NUMBER).")
    http_client: _WatchedHttpClient | None = None
    try:
        http_client = _WatchedHttpClient(twilio_http_client())
        client = Client(settings.TWILIO_SID, settings.TWILIO_AUTH_TOKEN, http_client=http_client)
        return _create_sms(client, to=to, body=body)
    except SoftTimeLimitExceeded as exc:
        # The limit is a signal, raised once wherever the code is: in the request, in reading the
        # answer, in turning an error into one of ours. Once handed over, Twilio may have the message.
        if http_client is None or not http_client.handed_over:
            raise
        raise OutcomeUnknown(
            "The time limit ran out while waiting for Twilio's answer; it may have sent the message, "
            "so it is not sent again."
        ) from exc


def _create_sms(client: Client, *, to: str, body: str) -> str:
    try:
        message = client.messages.create(to=to, from_=settings.TWILIO_PHONE_NUMBER, body=body)
    except TwilioRestException as exc:
        raise _twilio_error(exc.status, exc.code, exc.msg) from exc
    except TwilioServiceException as exc:
        raise _twilio_error(exc.status, exc.code, exc.detail or exc.title) from exc
    except requests.RequestException as exc:
        if _never_left(exc):  # a refused or unreachable connection, DNS, a connect timeout
            raise TransientDeliveryError(f"Could not reach Twilio: {exc.__class__.__name__}: {exc}") from exc
        raise OutcomeUnknown(
            f"Twilio's answer was lost ({exc.__class__.__name__}: {exc}); it may have sent the message, "
            "so it is not sent again."
        ) from exc
    return message.sid or ""


def _never_left(exc: requests.RequestException) -> bool:
    """Whether the request failed before it was sent: no connection was ever made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if isinstance(exc, requests.ConnectionError) and exc.args else None
    return isinstance(getattr(reason, "reason", reason), NewConnectionError)


def _twilio_error(status: int, code: int | None, text: object) -> DeliveryError:
    reason = f"Twilio answered {status} (code {code}): {_text(text)}"
    if status == 429 or status >= 500:
        return TransientDeliveryError(reason)
    return PermanentDeliveryError(reason)


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def mask_phone(phone: str) -> str:
    """Enough of a number to tell two apart in a log, not enough to call it."""
    return f"***{phone[-4:]}" if len(phone) > 4 else "***"
