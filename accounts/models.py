"""The PayGo user: email login, a role, and the deposit address of their wallet."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class Role(models.TextChoices):
    USER = "user", "User"
    VENDOR = "vendor", "Vendor"
    ADMIN = "admin", "Admin"


class UserManager(BaseUserManager):
    use_in_migrations = True

    @classmethod
    def normalize_email(cls, email: str | None) -> str:
        return (email or "").strip().lower()

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
    # Stored lower-cased (see normalize_email); the Lower() constraint below is the backstop.
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
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"
