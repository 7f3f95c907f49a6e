"""The API's authentication: `Authorization: Bearer <access JWT>`, the scheme in any case."""

from __future__ import annotations

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import AUTH_HEADER_TYPE_BYTES, JWTAuthentication
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token


class BearerJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication, whose scheme was compared case-sensitively ("bearer xyz" was
    anonymous): HTTP authentication schemes are case-insensitive (RFC 9110, section 11.1)."""

    def get_raw_token(self, header: bytes) -> bytes | None:
        scheme, _, credentials = header.strip().partition(b" ")
        if scheme.lower() in {known.lower() for known in AUTH_HEADER_TYPE_BYTES}:
            # The scheme as simplejwt spells it; the rest (and its checks) stay simplejwt's.
            header = api_settings.AUTH_HEADER_TYPES[0].encode() + b" " + credentials
        return super().get_raw_token(header)


def token_user(token: Token):
    """The account a validated token (access or refresh) stands for, with the checks every request's
    authentication makes: it exists, is active, and its password is the one the token was issued
    under (CHECK_REVOKE_TOKEN). AuthenticationFailed otherwise."""
    return BearerJWTAuthentication().get_user(token)


class BearerJWTScheme(SimpleJWTScheme):
    """The schema's description of it: simplejwt's bearer scheme."""

    target_class = BearerJWTAuthentication
