"""The PayGo user (email login, a role, the deposit address of their wallet), their sign-ins, images
and profiles."""

from __future__ import annotations

import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from paygo.emails import EmailDomainInvalid, email_key, normalize_email


class Role(models.TextChoices):
    USER = "user", "User"
    VENDOR = "vendor", "Vendor"
    ADMIN = "admin", "Admin"


class UserManager(BaseUserManager):
    use_in_migrations = True

    @classmethod
    def normalize_email(cls, email: str | None) -> str:
        """The email as every lookup compares it (paygo.emails.email_key): one mailbox, one spelling,
        whatever Unicode form or case its domain was typed in. Never an error."""
        return email_key(email)

    @classmethod
    def storable_email(cls, email: str | None) -> str:
        """The email as stored (paygo.emails.normalize_email), or ValidationError when its domain has
        no ASCII form or the stored form is longer than its column: a domain in Punycode is longer
        than in Unicode, after a form's or serializer's length check passed."""
        try:
            email = normalize_email(email)
        except EmailDomainInvalid as exc:
            raise ValidationError(str(exc), code="invalid") from None
        limit = User._meta.get_field("email").max_length
        if len(email) > limit:
            raise ValidationError(
                f"As it is stored (its domain in ASCII), this email has {len(email)} characters; "
                f"at most {limit} are allowed.",
                code="max_length",
            )
        return email

    def get_by_natural_key(self, email: str):
        return self.get(email=self.normalize_email(email))

    def create_user(self, email: str, password: str | None = None, **fields):
        from accounts.services import user_create

        return user_create(email=email, password=password, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields):
        from accounts.services import user_create

        fields.setdefault("name", email.split("@")[0])
        return user_create(email=email, password=password, role=Role.ADMIN, is_superuser=True, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    # Stored in one form per mailbox (UserManager.storable_email); the Lower() constraint below is the
    # backstop.
    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=120)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.USER)
    phone = models.CharField(max_length=20, blank=True, default="")
    is_verified = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="Can log into this admin site.")
    wallet_address = models.CharField(max_length=80, blank=True, default="")
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["name"]

    class Meta:
        ordering = ["-date_joined", "-id"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="accounts_user_role_valid"),
            # Platform admins operate the platform from the admin site.
            models.CheckConstraint(
                condition=~models.Q(role=Role.ADMIN) | models.Q(is_staff=True),
                name="accounts_user_admin_is_staff",
            ),
            # A wallet address is kept in the one spelling every comparison uses ("0x" + 64 lower-case
            # hex digits, wallets.starknet), and names one user: a transfer to it pays no one else.
            models.CheckConstraint(
                condition=models.Q(wallet_address="") | models.Q(wallet_address__regex=r"^0x[0-9a-f]{64}$"),
                name="accounts_user_wallet_address_normalised",
            ),
            models.UniqueConstraint(
                fields=["wallet_address"],
                condition=~models.Q(wallet_address=""),
                name="accounts_user_wallet_address_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    def save(self, *args, **kwargs) -> None:
        # A new password (set_password: its owner's, an operator's reset in the admin) ends the
        # tokens issued before it (simplejwt's revoke claim), and with them the sign-ins that hold
        # them (so that their tokens spend no rate budget of the user's either: paygo.api.ratelimits);
        # the sockets they opened close with it.
        new_password = self.pk is not None and self._password is not None
        super().save(*args, **kwargs)
        if new_password:
            from accounts.services import sign_ins_end
            from paygo.api.authentication import PASSWORD_CHANGED
            from paygo.ws import close_sockets_of

            sign_ins_end(sign_ins=SignIn.objects.filter(user_id=self.pk), reason=SignIn.EndReason.PASSWORD_CHANGED)
            user_id = self.pk
            transaction.on_commit(lambda: close_sockets_of(user_id, reason=PASSWORD_CHANGED), robust=True)


class SignInEndReason(models.TextChoices):
    LOGOUT = "logout", "Logged out"
    LOGOUT_EVERYWHERE = "logout_everywhere", "Logged out everywhere"
    REUSED = "reused", "A used refresh token was presented again"
    STAFF = "staff", "Ended by staff"
    PASSWORD_CHANGED = "password_changed", "The password changed"


class SignIn(models.Model):
    """One sign-in of a user on one device (a login or a sign-up) and the tokens it is given, one
    after the other. Every token it gives carries its id (the `sid` claim, CLAIM). Only its latest
    refresh token (`refresh_jti`) is live: a refresh swaps it for the next one (rotation), so a
    refresh token is good for one refresh. A token of it presented after it was swapped out means
    two holders (a stolen copy): the sign-in is then ended (`reused`), for both of them. Logging out
    ends it. Its access tokens are good while it lasts (paygo.api.authentication): once it ends, its
    tokens of every kind are refused and the sockets they opened closed. accounts.services is its one
    write path (token_pair_for, token_refresh, token_logout, sign_ins_end)."""

    # The claim naming the sign-in a token belongs to (OpenID Connect's name for a session's id); the
    # access tokens a refresh token mints carry it too (simplejwt copies every claim but jti, exp, iat).
    CLAIM = "sid"

    EndReason = SignInEndReason

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="sign_ins")
    refresh_jti = models.CharField(max_length=64, help_text="The id (jti) of its one live refresh token.")
    # The one it replaced, for a refresh that raced the last one (accounts.services.REFRESH_RACE).
    previous_jti = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # Its refresh tokens all expire then (REFRESH_TOKEN_LIFETIME after it began): rotation renews
    # the token, not the sign-in.
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=SignInEndReason.choices, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The admin's list, newest first.
            models.Index(fields=["-created_at", "-id"], name="accounts_signin_created_idx"),
            # What the daily forgetting finds (accounts.services.sign_ins_forget).
            models.Index(fields=["expires_at"], name="accounts_signin_expires_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ended_at__isnull=True, end_reason="")
                | models.Q(ended_at__isnull=False, end_reason__in=SignInEndReason.values),
                name="accounts_signin_ended_with_a_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"Sign-in of {self.user_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def id_of(cls, token) -> uuid.UUID | None:
        """The sign-in a (validated) token belongs to; None for a token issued before sign-ins were
        recorded, which nothing accepts any more."""
        try:
            return uuid.UUID(str(token[cls.CLAIM]))
        except (KeyError, ValueError):
            return None


# --- Images and profiles --------------------------------------------------------------------------

IMAGE_CONTENT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


def _image_name(instance: Image, filename: str) -> str:
    # accounts.images names every file at random before it gets here; this only keeps the folder.
    return f"images/{filename}"


class Image(models.Model):
    """An uploaded picture, checked and re-encoded by accounts.images (metadata stripped)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to=_image_name, max_length=200)
    content_type = models.CharField(max_length=20, choices=[(t, t) for t in IMAGE_CONTENT_TYPES])
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size = models.PositiveIntegerField(help_text="Bytes stored (after re-encoding).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(content_type__in=IMAGE_CONTENT_TYPES), name="accounts_image_content_type_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(width__gt=0, height__gt=0, width__lte=8000, height__lte=8000),
                name="accounts_image_dimensions_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.content_type} {self.width}x{self.height} ({self.id})"


class ProfileBase(models.Model):
    """What every kind of profile has: contact details, a short bio, links and an avatar."""

    phone = models.CharField(max_length=16, blank=True, default="", help_text="E.164, e.g. +14155550123.")
    address = models.CharField(max_length=300, blank=True, default="")
    bio = models.TextField(blank=True, default="")
    social_links = models.JSONField(default=list, blank=True)
    avatar = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]


class Profile(ProfileBase):
    """A user's (a customer's) profile."""

    user = models.OneToOneField("accounts.User", on_delete=models.CASCADE, related_name="profile")

    def __str__(self) -> str:
        return f"Profile of {self.user}"


class VendorProfile(ProfileBase):
    """A vendor's business card (partly public, in the vendor directory) and payout settings."""

    user = models.OneToOneField("accounts.User", on_delete=models.CASCADE, related_name="vendor_profile")
    business_name = models.CharField(max_length=120)
    description = models.TextField(blank=True, default="")
    website = models.URLField(max_length=300, blank=True, default="")
    categories = models.ManyToManyField("marketplace.Category", blank=True, related_name="vendor_profiles")
    payout_address = models.CharField(max_length=66, blank=True, default="", help_text="Starknet address, 0x + hex.")
    # Minor units of the default token (USDC); empty means no automatic payout.
    payout_threshold = models.BigIntegerField(null=True, blank=True)

    class Meta(ProfileBase.Meta):
        constraints = [
            models.CheckConstraint(
                condition=models.Q(payout_threshold__isnull=True) | models.Q(payout_threshold__gt=0),
                name="accounts_vendorprofile_payout_threshold_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(payout_address="") | models.Q(payout_address__regex=r"^0x[0-9a-fA-F]{1,64}$"),
                name="accounts_vendorprofile_payout_address_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.business_name


class AdminProfile(ProfileBase):
    """A staff member's profile."""

    user = models.OneToOneField("accounts.User", on_delete=models.CASCADE, related_name="admin_profile")
    department = models.CharField(max_length=120, blank=True, default="")

    def __str__(self) -> str:
        return f"Admin profile of {self.user}"
