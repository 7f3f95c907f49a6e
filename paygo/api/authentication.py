"""The API's authentication: `Authorization: Bearer <access JWT>`, the scheme in any case."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework.exceptions import NotAuthenticated
from rest_framework_simplejwt.authentication import AUTH_HEADER_TYPE_BYTES, JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, ExpiredTokenError, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.models import SignIn

# Why a credential is refused: each 401's `code`, and the reason of a socket's 4401 close (paygo.ws),
# so that a client reads one vocabulary. TOKEN_EXPIRED alone is mended by a refresh; after the others
# only a new sign-in helps.
NOT_AUTHENTICATED = NotAuthenticated.default_code  # none sent
TOKEN_EXPIRED = "token_expired"
TOKEN_INVALID = "token_invalid"  # no token of PayGo's of the kind asked for
SIGN_IN_ENDED = "sign_in_ended"  # a logout, a reused refresh token, staff, a deactivation
PASSWORD_CHANGED = "password_changed"  # the token was issued under the password before
USER_INACTIVE = "user_inactive"  # the account was deactivated
USER_NOT_FOUND = "user_not_found"


def token_refused(error: TokenError | None) -> AuthenticationFailed:
    """The 401 for a token (access or refresh) that PayGo signed but whose time ran out
    (`token_expired`: a client refreshes, or signs in again), or that is no token of PayGo's of the
    kind asked for (`token_invalid`): simplejwt answered both `token_not_valid`, telling them apart
    only in a `messages` list the API's error format has not. A signature is checked before the
    expiry, so a forged token is never told expired."""
    if isinstance(error, ExpiredTokenError):
        return AuthenticationFailed("Your session has expired; sign in again.", code=TOKEN_EXPIRED)
    return AuthenticationFailed("This sign-in token is not valid; sign in again.", code=TOKEN_INVALID)


# The token's account and whether its sign-in goes on, in one statement. Written in SQL: built with
# the ORM (an Exists annotation), composing it cost every request and socket handshake 1 ms of CPU
# more than the lookup itself (docs/benchmarks.md, the live hub's sockets opening at once).
_USER_AND_SIGN_IN = (
    "SELECT u.*, EXISTS (SELECT 1 FROM accounts_signin s"
    "  WHERE s.id = %s AND s.user_id = u.id AND s.ended_at IS NULL) AS sign_in_live"
    " FROM accounts_user u WHERE u.id = %s"
)


class BearerJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication, whose scheme was compared case-sensitively ("bearer xyz" was
    anonymous): HTTP authentication schemes are case-insensitive (RFC 9110, section 11.1)."""

    def get_raw_token(self, header: bytes) -> bytes | None:
        scheme, _, credentials = header.strip().partition(b" ")
        if scheme.lower() in {known.lower() for known in AUTH_HEADER_TYPE_BYTES}:
            # The scheme as simplejwt spells it; the rest (and its checks) stay simplejwt's.
            header = api_settings.AUTH_HEADER_TYPES[0].encode() + b" " + credentials
        return super().get_raw_token(header)

    def get_validated_token(self, raw_token: bytes) -> Token:
        error = None
        for token_class in api_settings.AUTH_TOKEN_CLASSES:
            try:
                return token_class(raw_token)
            except TokenError as exc:
                error = error if isinstance(error, ExpiredTokenError) else exc
        raise token_refused(error)

    def get_user(self, validated_token: Token):
        """simplejwt's checks (the account exists, is active, and its password is the one the token
        was issued under), and one of PayGo's: the token's sign-in goes on. Ending a sign-in (a
        logout, a refresh token presented twice, staff) ends its access tokens at once, not when they
        expire. One query, as simplejwt's alone: the sign-in is looked up with the account."""
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise token_refused(None) from exc
        user = next(
            iter(self.user_model.objects.raw(_USER_AND_SIGN_IN, [SignIn.id_of(validated_token), user_id])), None
        )
        if user is None:
            raise AuthenticationFailed(_("User not found"), code=USER_NOT_FOUND)
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code=USER_INACTIVE)
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(_("The user's password has been changed."), code=PASSWORD_CHANGED)
        if not user.sign_in_live:
            raise AuthenticationFailed(
                "This sign-in has ended (logged out, or ended for the account's safety); sign in again.",
                code=SIGN_IN_ENDED,
            )
        return user


def token_user(token: Token):
    """The account a validated token (access or refresh) stands for, with the checks every request's
    authentication makes: it exists, is active, its password is the one the token was issued under
    (CHECK_REVOKE_TOKEN), and the token's sign-in has not ended. AuthenticationFailed otherwise."""
    return BearerJWTAuthentication().get_user(token)


class BearerJWTScheme(SimpleJWTScheme):
    """The schema's description of it: simplejwt's bearer scheme."""

    target_class = BearerJWTAuthentication
