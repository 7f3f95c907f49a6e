"""Operators manage users here: search, filter by role, create vendors and admins, deactivate."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from accounts.models import Role, User
from accounts.services import user_deactivate


class _AdminsAreStaff:
    """Platform admins always get the admin site with every permission, as accounts.services
    makes them (the database enforces the staff flag too)."""

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("role") == Role.ADMIN:
            cleaned["is_staff"] = cleaned["is_superuser"] = True
            self.instance.is_staff = self.instance.is_superuser = True
        return cleaned


class UserCreateForm(_AdminsAreStaff, AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "name", "role", "phone")

    def clean_email(self):
        email = User.objects.normalize_email(self.cleaned_data["email"])
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError("An account with this email already exists.")
        return email


class UserEditForm(_AdminsAreStaff, UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreateForm
    list_display = ("email", "name", "role", "is_active", "is_verified", "is_staff", "date_joined")
    list_filter = ("role", "is_active", "is_verified", "is_staff")
    search_fields = ("email", "name", "phone", "wallet_address")
    ordering = ("-date_joined",)
    readonly_fields = ("wallet_address", "date_joined", "last_login")
    actions = ["deactivate_users"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name", "role", "phone", "is_verified", "wallet_address")}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("date_joined", "last_login")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "name", "role", "phone", "password1", "password2")}),
    )

    @admin.action(description="Deactivate the selected users (their tokens stop working)")
    def deactivate_users(self, request, queryset):
        count = 0
        for user in queryset.filter(is_active=True):
            user_deactivate(user=user)
            count += 1
        self.message_user(request, f"{count} user(s) deactivated.", messages.SUCCESS)
