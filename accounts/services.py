"""The write paths of accounts: creating users, deactivating them, signing in and out (tokens)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from rest_framework import exceptions
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts.images import clean_image, read_upload
from accounts.models import AdminProfile, Image, Profile, Role, SignIn, User, VendorProfile
from paygo.api.authentication import PASSWORD_CHANGED, SIGN_IN_ENDED, USER_INACTIVE, token_refused, token_user
from paygo.api.errors import Conflict, PayloadTooLarge
from paygo.api.ratelimits import LoginLockedOut, login_locked_out
from paygo.api.text import InvisibleCharacters, visible_text
from paygo.db import constraint_of, delete_in_batches

logger = logging.getLogger("paygo.accounts")


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


# An email's unique constraints: the field's own, and one per mailbox whatever its case.
EMAIL_UNIQUE = {"accounts_user_email_key", "accounts_user_email_ci_unique"}


def _email_taken() -> Conflict:
    return Conflict(
        {
            "message": "An account with this email already exists.",
            "code": "email_taken",
            "errors": {"email": ["An account with this email already exists."]},
        }
    )


def user_create(
    *,
    email: str,
    password: str | None,
    name: str,
    role: str = Role.USER,
    phone: str = "",
    is_superuser: bool = False,
    is_staff: bool | None = None,
    validate: bool = False,
) -> User:
    """Create a user of any role. Admins are staff with every permission. `validate` runs Django's
    password validators. The email is stored in its one form per mailbox (storable_email), the name
    as the visible text every name is (paygo.api.text.visible_text), whoever calls."""
    try:
        email = User.objects.storable_email(email)
    except DjangoValidationError as exc:
        raise exceptions.ValidationError({"email": list(exc.messages)}) from None
    try:
        name = visible_text(name)
    except InvisibleCharacters as exc:
        raise exceptions.ValidationError({"name": [str(exc)]}) from None
    user = User(
        email=email,
        name=name,
        role=role,
        phone=phone,
        # The seed's admins have "full system access": in the Django admin, that is a superuser.
        is_superuser=is_superuser or role == Role.ADMIN,
        is_staff=bool(is_staff) or role == Role.ADMIN or is_superuser,
    )
    if validate and password is not None:
        try:
            validate_password(password, user=user)
        except DjangoValidationError as exc:
            raise exceptions.ValidationError({"password": list(exc.messages)}) from None
    user.set_password(password) if password else user.set_unusable_password()
    if User.objects.filter(email=email).exists():
        raise _email_taken()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        # The email's unique constraints are the backstop for two concurrent sign-ups; any other
        # constraint a row breaks is a bug of its caller's, not a taken email.
        if constraint_of(exc) not in EMAIL_UNIQUE:
            raise
        raise _email_taken() from None
    return user


def user_register(*, name: str, email: str, password: str, role: str) -> User:
    """Self-service sign-up: users and vendors only; staff and admins are made by operators."""
    if role not in (Role.USER, Role.VENDOR):
        raise exceptions.ValidationError({"role": ["Choose 'user' or 'vendor'; admins are created by operators."]})
    user = user_create(email=email, password=password, name=name, role=role, validate=True)
    _open_wallet(user)
    return user


def _open_wallet(user: User) -> None:
    """Ask wallets for the new user's deposit address. Chipi being down must not stop a sign-up:
    the address is then opened on first use (GET /wallet/address, a deposit)."""
    from wallets.chipi import ChipiError
    from wallets.services import wallet_open

    try:
        wallet_open(user=user)
    except ChipiError:
        logger.warning("Could not open a wallet for user %s at sign-up; it will open on first use", user.pk)


def user_login(*, request, email: str, password: str) -> User:
    """The user for these credentials, or 401. Unknown email, wrong password and a deactivated
    account all answer the same, so the endpoint tells nobody which emails exist. The same rule as
    the admin's login counts the failures (paygo/api/ratelimits.py): a locked-out pair gets 429."""
    user = authenticate(request, email=email, password=password)
    if user is None:
        if login_locked_out(request):
            raise LoginLockedOut(request)
        raise exceptions.AuthenticationFailed("Invalid email or password.", code="invalid_credentials")
    # What django.contrib.auth.login() says for a session: a success clears the pair's failures.
    user_logged_in.send(sender=user.__class__, request=request, user=user)
    return user


def users_locked_active(user_ids) -> dict[int, bool]:
    """Whether each of these accounts is active, their rows share-locked (in id order) until the
    transaction ends: call it inside transaction.atomic before what the answer allows is written (a
    session, a consultation). A deactivation (user_deactivate, which updates the row) either
    committed first and is seen here, or waits for this transaction's commit and then finds what it
    made, to stop or cancel it. Read unlocked, a start that read the account active while it was
    being deactivated made a session nobody stopped. Users' rows are locked before consultations
    and ledger accounts, the order every transaction that takes several of them keeps; shared, two
    starts on one vendor do not wait for each other."""
    ids = sorted(set(user_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, is_active FROM accounts_user WHERE id = ANY(%s) ORDER BY id FOR SHARE",
            [ids],
        )
        return dict(cursor.fetchall())


def account_no_longer_active() -> exceptions.AuthenticationFailed:
    """The 401 of a request whose account was deactivated after the request was authenticated, as
    users_locked_active found it."""
    return exceptions.AuthenticationFailed("This account is no longer active.", code="no_active_account")


def user_deactivate(*, user: User) -> User:
    """Deactivate: login is refused and every token the user holds stops working at once
    (authentication checks is_active on every request and socket handshake), their sign-ins end (a
    reactivated account signs in again), their open consultations are cancelled (the other side
    told), every session they pay for or host stops, charged up to now, and the sockets already
    open are closed once it commits."""
    from consultations.services import consultations_cancel_of, consultations_lock_open_of
    from paygo.ws import close_sockets_of
    from streaming.services import sessions_stop_of

    now = timezone.now()
    with transaction.atomic():
        user.is_active = False
        user.save(update_fields=["is_active"])
        # Before its sign-ins' close (`sign_in_ended`, registered by sign_ins_end below), so that the
        # sockets close with the reason the API's 401 now gives their tokens: the account's.
        transaction.on_commit(lambda: close_sockets_of(user.pk, reason=USER_INACTIVE, again=True), robust=True)
        # For good: reactivated, the account starts from a fresh login (every device signed in
        # before, a thief's included, would have been back).
        sign_ins_end(sign_ins=SignIn.objects.filter(user=user), reason=SignIn.EndReason.STAFF)
        # Locks in the order every transaction keeps: the user's row (above), the consultations, then
        # every session it pays for or hosts, calls included, in one stop (sessions, then accounts),
        # and only then the consultations' new status. A call stopped on its own first took accounts
        # before the next session, and deadlocked with the sweep or any stop taking them the other way.
        held = consultations_lock_open_of(user=user, now=now)
        sessions_stop_of(user=user, now=now)
        consultations_cancel_of(user=user, held=held, now=now)
    return user


# Two requests of one client that refresh with the same token at once (two browser tabs whose access
# tokens expired together) are no theft: the one that comes second within this time of the first is
# answered the sign-in's live refresh token (the one the first received, with a new access token),
# and the sign-in goes on. The reuse is still caught one rotation later: two holders of one token,
# the one whose next refresh comes after the other's presents a used token, and the sign-in ends.
# Later than this, a used token ends the sign-in at once.
REFRESH_RACE = timedelta(seconds=10)


def _token_revoked() -> exceptions.AuthenticationFailed:
    return exceptions.AuthenticationFailed(
        "This refresh token has been used already or its sign-in has ended; sign in again.", code="token_revoked"
    )


def _refresh_token(raw: str) -> RefreshToken:
    """The refresh token `raw`, signed by PayGo and not expired, or 401."""
    try:
        return RefreshToken(raw)
    except TokenError as exc:
        raise token_refused(exc) from None


def _token_owner(token: RefreshToken) -> User:
    """The active user a token stands for, whose password has not changed since it was issued and
    whose sign-in goes on, or 401."""
    try:
        return token_user(token)
    except exceptions.AuthenticationFailed as exc:
        detail = exc.detail  # simplejwt's failures carry {"detail": ..., "code": ...}
        code = detail.get("code") if isinstance(detail, dict) else None
        if code == "password_changed":
            raise  # answered as a request with an access token of before the change is
        if code == SIGN_IN_ENDED:
            raise _token_revoked() from None
        raise exceptions.AuthenticationFailed("No active account for this token.", code="no_active_account") from None


def token_pair_for(user: User) -> TokenPair:
    """Sign the user in (a login, a sign-up): a new sign-in, and its first access and refresh tokens.

    The account is checked active again under its row's lock: a deactivation that committed after
    the login read it (the password's hash takes a while) ended the sign-ins there were, not this
    one, which came back when the account was reactivated."""
    refresh = RefreshToken.for_user(user)
    with transaction.atomic():
        if not users_locked_active([user.pk]).get(user.pk):
            raise account_no_longer_active()
        sign_in = SignIn.objects.create(
            user=user,
            refresh_jti=refresh[jwt_settings.JTI_CLAIM],
            created_at=refresh.current_time,
            expires_at=datetime_from_epoch(refresh["exp"]),
        )
    refresh[SignIn.CLAIM] = str(sign_in.pk)
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


def token_refresh(*, refresh_token: str) -> TokenPair:
    """The next access and refresh tokens of a sign-in, for its live refresh token, which this uses
    up: a refresh token is good for one refresh (rotation). The next one expires when the sign-in
    does (rotation renews the token, not the sign-in).

    Of two refreshes with one token, concurrent or not, exactly one wins: the swap is one
    conditional UPDATE of the sign-in's row, and the row's lock makes the second wait for the first
    and then find the token swapped out. Whoever presents a token that was swapped out is refused,
    and the sign-in ends: two holders of one refresh token mean that one of them stole it, and which
    one cannot be told (RFC 9700, 4.14.2), so neither keeps it. The ending is committed before the
    401 is raised (no transaction is open around this in the view). Within REFRESH_RACE of the swap,
    the token it replaced is answered the live one instead (see there)."""
    refresh = _refresh_token(refresh_token)
    user = _token_owner(refresh)  # its sign-in goes on: a token issued before sign-ins were recorded has none
    sign_in_id = SignIn.id_of(refresh)
    presented = refresh[jwt_settings.JTI_CLAIM]
    refresh.set_jti()
    refresh.set_iat()
    swapped = SignIn.objects.filter(pk=sign_in_id, user=user, refresh_jti=presented, ended_at__isnull=True).update(
        refresh_jti=refresh[jwt_settings.JTI_CLAIM], previous_jti=presented, refreshed_at=timezone.now()
    )
    if not swapped:
        current = (
            SignIn.objects.filter(
                pk=sign_in_id,
                user=user,
                previous_jti=presented,
                refreshed_at__gte=timezone.now() - REFRESH_RACE,
                ended_at__isnull=True,
            )
            .values_list("refresh_jti", flat=True)
            .first()
        )
        if current is not None:
            # The sign-in's live refresh token, again: both holders now hold the one token, so the
            # next rotation by either makes the other's next refresh a reuse, which ends it.
            refresh[jwt_settings.JTI_CLAIM] = current
            logger.info(
                "Sign-in %s (user %s): a refresh raced the last one; answered its live token", sign_in_id, user.pk
            )
            return TokenPair(access=str(refresh.access_token), refresh=str(refresh))
        if sign_ins_end(sign_ins=SignIn.objects.filter(pk=sign_in_id), reason=SignIn.EndReason.REUSED):
            logger.warning(
                "A used refresh token of sign-in %s (user %s) was presented again: the sign-in is ended",
                sign_in_id,
                user.pk,
            )
        raise _token_revoked()
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


def token_logout(*, refresh_token: str, everywhere: bool = False) -> int:
    """Log out: end the sign-in this refresh token belongs to or, `everywhere`, every sign-in of its
    user. Logging out again is fine: there is nothing left to end. Returns how many sign-ins ended.

    The refresh token is all it takes, as it is all a refresh takes: whoever holds a token of a
    sign-in can end it already (presenting it twice does). Ending the user's other sign-ins takes
    more than having held a token once: the live token of a live sign-in, of an active user whose
    password has not changed since, the token a refresh would accept; a used one is refused (401)
    and ends nothing."""
    refresh = _refresh_token(refresh_token)
    sign_in_id = SignIn.id_of(refresh)
    if not everywhere:
        if sign_in_id is None:
            return 0  # a token from before sign-ins were recorded: no refresh accepts it any more
        user_id = refresh.get(jwt_settings.USER_ID_CLAIM)
        return sign_ins_end(
            sign_ins=SignIn.objects.filter(pk=sign_in_id, user_id=user_id), reason=SignIn.EndReason.LOGOUT
        )
    user = _token_owner(refresh)  # its sign-in goes on (so the token has one)
    live = SignIn.objects.filter(
        pk=sign_in_id, user=user, refresh_jti=refresh[jwt_settings.JTI_CLAIM], ended_at__isnull=True
    )
    if not live.exists():
        raise _token_revoked()
    return sign_ins_end(sign_ins=SignIn.objects.filter(user=user), reason=SignIn.EndReason.LOGOUT_EVERYWHERE)


def sign_ins_end(*, sign_ins: QuerySet[SignIn], reason: str) -> int:
    """End these sign-ins (those not ended already): from now on no request, socket handshake or
    refresh accepts their tokens, and once this commits the sockets their access tokens opened are
    closed (4401, with the code the API's 401 gives those tokens: `password_changed` for a new
    password, else `sign_in_ended`). Returns how many ended."""
    from paygo.api.ratelimits import sign_ins_ended
    from paygo.ws import close_sockets_of_sign_ins

    ending: dict[int, list] = {}
    for sign_in_id, user_id in sign_ins.filter(ended_at__isnull=True).values_list("pk", "user_id"):
        ending.setdefault(user_id, []).append(sign_in_id)
    ended = SignIn.objects.filter(
        pk__in=[sign_in_id for ids in ending.values() for sign_in_id in ids], ended_at__isnull=True
    ).update(ended_at=timezone.now(), end_reason=reason)
    if ending:
        # Closed again a little later, for a handshake under way as they ended, when it is for the
        # account's safety; a device that logs out closes its own sockets (and a timer a logout would
        # cost every server process).
        again = reason != SignIn.EndReason.LOGOUT
        closed_as = PASSWORD_CHANGED if reason == SignIn.EndReason.PASSWORD_CHANGED else SIGN_IN_ENDED
        transaction.on_commit(lambda: close_sockets_of_sign_ins(ending, reason=closed_as, again=again), robust=True)
        # Their tokens, refused from now on, no longer spend their users' rate budgets either.
        transaction.on_commit(lambda: sign_ins_ended(i for ids in ending.values() for i in ids), robust=True)
    return ended


def sign_ins_forget(*, expired_days_ago: int) -> int:
    """Delete the sign-ins that expired more than `expired_days_ago` days ago (kept that long for
    support to read how they ended). A token of a forgotten sign-in stays refused: a refresh accepts
    only the live token a sign-in names, and a logout has nothing to end. Returns how many went."""
    expired = SignIn.objects.filter(expires_at__lt=timezone.now() - timedelta(days=expired_days_ago))
    return delete_in_batches(expired.order_by("expires_at"))


# --- Images ---------------------------------------------------------------------------------------


class ImageQuotaExceeded(PayloadTooLarge):
    default_detail = "Your images take all the room one account has; delete some first."
    default_code = "image_quota_exceeded"


def _image_quota_check(owner: User, *, adding: int) -> None:
    """Refuse an image that would take the owner past IMAGE_QUOTA_COUNT images or IMAGE_QUOTA_BYTES
    bytes (as stored, after re-encoding)."""
    usage = Image.objects.filter(owner=owner).aggregate(count=Count("pk"), size=Coalesce(Sum("size"), 0))
    if usage["count"] >= settings.IMAGE_QUOTA_COUNT:
        raise ImageQuotaExceeded(f"One account keeps at most {settings.IMAGE_QUOTA_COUNT} images; delete one first.")
    if usage["size"] + adding > settings.IMAGE_QUOTA_BYTES:
        raise ImageQuotaExceeded(
            f"One account keeps at most {settings.IMAGE_QUOTA_BYTES} bytes of images; delete some first."
        )


def image_upload(*, owner: User, upload) -> Image:
    """Store a checked, re-encoded copy of an uploaded picture under a random name, within the
    owner's quota: over it, nothing is stored."""
    cleaned = clean_image(read_upload(upload))
    size = len(cleaned.content)
    _image_quota_check(owner, adding=size)  # the common refusal, before a file is written
    name = default_storage.save(f"images/{uuid.uuid4().hex}.{cleaned.extension}", ContentFile(cleaned.content))
    try:
        with transaction.atomic():
            # The owner's uploads take turns from here to the commit, so that two of them cannot
            # both fit in the room that is left for one.
            User.objects.select_for_update(no_key=True).filter(pk=owner.pk).values_list("pk").get()
            _image_quota_check(owner, adding=size)
            return Image.objects.create(
                owner=owner,
                file=name,
                content_type=cleaned.content_type,
                width=cleaned.width,
                height=cleaned.height,
                size=size,
            )
    except BaseException:
        default_storage.delete(name)  # no row, no file
        raise


def image_delete(*, image: Image) -> None:
    """Delete the row, then the file once the deletion is committed (profiles lose the avatar)."""
    name = image.file.name
    with transaction.atomic():
        # The image's row first, then the profiles that show it (the deletion clears their avatar):
        # the order in which a profile's change locks them (_lock_avatar), so that the two never
        # wait for each other.
        Image.objects.select_for_update().filter(pk=image.pk).values_list("pk").first()
        image.delete()
    transaction.on_commit(lambda: default_storage.delete(name), robust=True)


# --- Profiles -------------------------------------------------------------------------------------

# Which profile each kind is, and who may have one.
PROFILE_MODELS: dict[str, type[Profile | VendorProfile | AdminProfile]] = {
    "user": Profile,
    "vendor": VendorProfile,
    "admin": AdminProfile,
}


def profile_kind_for(user: User) -> str:
    """The kind of profile a user has: vendors vendor profiles (a vendor given the staff flag too:
    his business card stays in the directory), other staff admin profiles, users user profiles."""
    if user.role == Role.VENDOR:
        return "vendor"
    return "admin" if user.is_staff or user.role == Role.ADMIN else "user"


def _lock_avatar(*, user: User, fields: dict[str, Any]) -> None:
    """The avatar given must be one of the owner's images, and still there: inside the caller's
    transaction its row stays locked until the commit. An image deleted since the request read it
    was a profile pointing at a deleted row (a foreign key violation at the commit, a 500); now its
    deletion either commits first (refused here) or waits, and then clears it from the profile."""
    avatar = fields.get("avatar")
    if avatar is None:
        return
    if not Image.objects.select_for_update().filter(pk=avatar.pk, owner=user).values_list("pk").first():
        raise exceptions.ValidationError({"avatar": ["Unknown image."]})


def profile_create(*, user: User, kind: str, **fields: Any):
    """Create the caller's profile of this kind (one each); 409 when it exists."""
    if profile_kind_for(user) != kind:
        raise exceptions.PermissionDenied(f"Only {kind}s can have this kind of profile.")
    model = PROFILE_MODELS[kind]
    categories = fields.pop("categories", None)
    try:
        with transaction.atomic():
            _lock_avatar(user=user, fields=fields)
            if model.objects.filter(user=user).exists():
                raise Conflict({"message": "You already have a profile.", "code": "profile_exists"})
            profile = model.objects.create(user=user, **fields)
            if categories is not None:
                profile.categories.set(categories)
    except IntegrityError as exc:
        # The one-to-one's unique constraint is the backstop for two concurrent creations; anything
        # else is a bug (a foreign key's "user_id" in the message too).
        if constraint_of(exc) != f"{model._meta.db_table}_user_id_key":
            raise
        raise Conflict({"message": "You already have a profile.", "code": "profile_exists"}) from None
    return profile


def profile_update(*, profile, **fields: Any):
    """Change some fields of a profile; the avatar must be one of the owner's images. 404 when the
    profile was deleted since the caller read it."""
    categories = fields.pop("categories", None)
    with transaction.atomic():
        _lock_avatar(user=profile.user, fields=fields)  # the image first: image_delete's order
        # The row as it is now, locked: one deleted since the request read it had no row to save
        # (a DatabaseError, a 500).
        profile = type(profile).objects.select_for_update().filter(pk=profile.pk).first()
        if profile is None:
            raise exceptions.NotFound("You have no profile yet.")
        changed = [name for name, value in fields.items() if getattr(profile, name) != value]
        for name in changed:
            setattr(profile, name, fields[name])
        if changed:
            profile.save(update_fields=[*changed, "updated_at"])
        if categories is not None:
            profile.categories.set(categories)
    return profile


def profile_delete(*, profile) -> None:
    """Delete the profile (the user and their images stay)."""
    profile.delete()
