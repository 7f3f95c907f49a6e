"""Operators manage users here: search, filter by role, create vendors and admins, deactivate, and
see and end their sign-ins."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Q
from django.utils.html import format_html

from accounts.models import AdminProfile, Image, Profile, Role, SignIn, User, VendorProfile
from accounts.services import image_delete, sign_ins_end, user_deactivate
from paygo.admin import AdminInputMixin, EstimatedCountPaginator, ReadOnlyAdminMixin, SeenValuesAdminMixin
from paygo.api.amounts import format_minor
from paygo.api.text import NameFormField
from paygo.tokens import DEFAULT_TOKEN, decimals_of
from paygo.ws import reauthorize_sockets_of


class _AdminsAreStaff:
    """Platform admins always get the admin site with every permission, as accounts.services
    makes them (the database enforces the staff flag too); an admin given another role loses both
    (the form shows them ticked: an operator who changed only the role left a superuser behind).
    Only a superuser makes someone a platform admin: it grants every permission."""

    operator_is_superuser = False  # UserAdmin.get_form sets it for the request's operator

    def clean(self):
        cleaned = super().clean()
        # Only a role the operator sets: the one his page showed may be no longer the user's.
        if "role" not in self.changed_data:
            return cleaned
        role, was = cleaned.get("role"), self.initial.get("role")
        if role == Role.ADMIN:
            if was != Role.ADMIN and not self.operator_is_superuser:
                self.add_error("role", "Only a superuser can make someone a platform admin.")
            cleaned["is_staff"] = cleaned["is_superuser"] = True
            self.instance.is_staff = self.instance.is_superuser = True
        elif was == Role.ADMIN and role:
            cleaned["is_staff"] = cleaned["is_superuser"] = False
            self.instance.is_staff = self.instance.is_superuser = False
        else:
            return cleaned
        self.changed_by_clean = {"is_staff", "is_superuser"}  # saved with the role (SeenValuesFormMixin)
        return cleaned


class UserCreateForm(_AdminsAreStaff, AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "name", "role", "phone")
        field_classes = {"name": NameFormField}  # the rule of the API's names (RegisterSerializer)

    def clean_email(self):
        email = User.objects.storable_email(self.cleaned_data["email"])
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError("An account with this email already exists.")
        return email


class UserEditForm(_AdminsAreStaff, UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"
        field_classes = {"name": NameFormField}

    def clean_email(self):
        # Stored as every sign-in looks it up: an email changed here in capitals could not log in.
        return User.objects.storable_email(self.cleaned_data["email"])


# What decides what a user's sockets may watch.
ACCESS_FIELDS = {"role", "is_staff", "is_superuser", "groups", "user_permissions"}


def _reauthorize_on_commit(user_ids: list[int]) -> None:
    """Once the change of access commits, close these users' sockets with 4409: a socket's
    handshake decided what it may watch under the old access; reconnected, a new handshake decides
    under the new one (a staff member who lost a permission kept watching what it showed)."""

    def reauthorize() -> None:
        for user_id in user_ids:
            reauthorize_sockets_of(user_id)

    if user_ids:
        transaction.on_commit(reauthorize, robust=True)


@admin.register(User)
class UserAdmin(AdminInputMixin, SeenValuesAdminMixin, DjangoUserAdmin):
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

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)  # a class made for this request
        form.operator_is_superuser = request.user.is_superuser
        return form

    def get_readonly_fields(self, request, obj=None):
        """What grants access is a superuser's to change: staff allowed to edit users could otherwise
        give themselves (or anyone) every permission, or make a user staff (whom only a superuser
        may then change or deactivate)."""
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is not None and not request.user.is_superuser:
            fields += ("is_staff", "is_superuser", "groups", "user_permissions")
        return fields

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            user_deactivate(user=obj)  # as the action does: its open sockets close too

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if change and ACCESS_FIELDS & set(form.changed_data):
            _reauthorize_on_commit([form.instance.pk])

    # Staff accounts are a superuser's to change or deactivate: another operator allowed to change
    # users could otherwise set a superuser's (or a better-permitted colleague's) password on the password page,
    # which asks only for the change permission, and sign in as them. His own row stays his.
    @staticmethod
    def _staff_guarded(request, obj) -> bool:
        return (
            obj is not None
            and (obj.is_staff or obj.is_superuser)
            and not request.user.is_superuser
            and obj.pk != request.user.pk
        )

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and not self._staff_guarded(request, obj)

    def has_delete_permission(self, request, obj=None):
        # Users are deactivated, never deleted (README): a user's wallet is PROTECTed, and the page
        # saying so walked every row he owns first (356 s for one with 1.2M notifications).
        return False

    # The change permission, as the change form's "active" box asks: the list's viewers see no action.
    @admin.action(description="Deactivate the selected users (their tokens stop working)", permissions=["change"])
    def deactivate_users(self, request, queryset):
        count = skipped = 0
        for user in queryset.filter(is_active=True):
            if self._staff_guarded(request, user):
                skipped += 1
                continue
            user_deactivate(user=user)
            count += 1
        self.message_user(request, f"{count} user(s) deactivated.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"{skipped} staff account(s) left active: only a superuser deactivates staff.",
                messages.WARNING,
            )


@admin.register(SignIn)
class SignInAdmin(AdminInputMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who is signed in, since when, and how each sign-in ended; staff allowed to change sign-ins end
    them (a phone reported lost to support): no refresh accepts their tokens any more. A sign-in is
    written by accounts.services only, so nothing here edits one."""

    list_display = ("user", "created_at", "refreshed_at", "expires_at", "ended_at", "end_reason")
    list_filter = ("end_reason", ("ended_at", admin.EmptyFieldListFilter))
    search_fields = ("user__email",)
    list_select_related = ("user",)
    paginator = EstimatedCountPaginator  # every refresh of a token is a row: the whole list is big
    show_full_result_count = False
    fields = ("user", "created_at", "refreshed_at", "expires_at", "ended_at", "end_reason")
    readonly_fields = fields
    actions = ["end_sign_ins"]

    def has_end_permission(self, request) -> bool:
        return request.user.has_perm("accounts.change_signin")

    @admin.action(
        description="End the selected sign-ins (their tokens stop working, their sockets close)", permissions=["end"]
    )
    def end_sign_ins(self, request, queryset):
        skipped = 0
        if not request.user.is_superuser:
            # Staff accounts are a superuser's, as in UserAdmin: his own sign-ins stay his to end.
            guarded = (Q(user__is_staff=True) | Q(user__is_superuser=True)) & ~Q(user=request.user)
            skipped = queryset.filter(guarded, ended_at__isnull=True).count()
            queryset = queryset.exclude(guarded)
        ended = sign_ins_end(sign_ins=queryset, reason=SignIn.EndReason.STAFF)
        self.message_user(request, f"{ended} sign-in(s) ended.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} sign-in(s) of staff accounts left: only a superuser ends them.", messages.WARNING
            )


# --- Images and profiles --------------------------------------------------------------------------


def _thumbnail(image: Image | None, size: int) -> str:
    if image is None:
        return "-"
    return format_html(
        '<img src="{}" alt="" style="max-width:{}px;max-height:{}px;object-fit:contain">', image.file.url, size, size
    )


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(AdminInputMixin, SeenValuesAdminMixin, DjangoGroupAdmin):
    """A group's permissions are its members': changing them, or deleting the group, changes what
    each member may watch, as an edit of the member's own permissions does. Groups are a
    superuser's, as users' groups and permissions are (UserAdmin): other staff with the group
    permissions granted their own group anything, and stripped a staff colleague's."""

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if change and "permissions" in form.changed_data:
            _reauthorize_on_commit(list(form.instance.user_set.values_list("pk", flat=True)))

    def delete_model(self, request, obj):
        members = list(obj.user_set.values_list("pk", flat=True))
        super().delete_model(request, obj)
        _reauthorize_on_commit(members)

    def delete_queryset(self, request, queryset):
        members = list(User.objects.filter(groups__in=queryset).values_list("pk", flat=True).distinct())
        super().delete_queryset(request, queryset)
        _reauthorize_on_commit(members)


@admin.register(Image)
class ImageAdmin(AdminInputMixin, admin.ModelAdmin):
    """Uploads come through the API only (checked and re-encoded); here staff look and remove."""

    list_display = ("thumbnail", "id", "owner", "content_type", "width", "height", "size", "created_at")
    list_filter = ("content_type", "created_at")
    search_fields = ("id", "owner__email", "owner__name")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    fields = ("preview", "id", "owner", "file", "content_type", "width", "height", "size", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # nothing on its page can be changed: no Save button

    @admin.display(description="preview")
    def thumbnail(self, obj: Image) -> str:
        return _thumbnail(obj, 64)

    @admin.display(description="preview")
    def preview(self, obj: Image) -> str:
        return _thumbnail(obj, 480)

    def delete_model(self, request, obj: Image) -> None:
        image_delete(image=obj)

    def delete_queryset(self, request, queryset) -> None:
        for image in queryset:
            image_delete(image=image)


class _ProfileAdmin(AdminInputMixin, admin.ModelAdmin):
    """Profiles are their owners' to write (through the API); staff look them up and may remove one."""

    list_select_related = ("user", "avatar")
    search_fields = ("user__email", "user__name", "phone")
    list_filter = ("created_at",)
    date_hierarchy = "created_at"
    common = ("avatar_preview", "user", "phone", "address", "bio", "social_links", "created_at", "updated_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # nothing on its page can be changed: no Save button

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    @admin.display(description="avatar")
    def avatar_preview(self, obj) -> str:
        return _thumbnail(obj.avatar, 64)


@admin.register(Profile)
class ProfileAdmin(_ProfileAdmin):
    list_display = ("avatar_preview", "user", "phone", "created_at")
    fields = _ProfileAdmin.common


@admin.register(VendorProfile)
class VendorProfileAdmin(_ProfileAdmin):
    list_display = ("avatar_preview", "business_name", "user", "website", "payout_address", "created_at")
    search_fields = ("business_name", "user__email", "user__name", "phone", "payout_address")
    list_filter = ("categories", "created_at")
    fields = (
        *_ProfileAdmin.common,
        "business_name",
        "description",
        "website",
        "category_names",
        "payout_address",
        "payout_threshold_in_units",
    )

    @admin.display(description="payout threshold")
    def payout_threshold_in_units(self, obj: VendorProfile) -> str:
        if obj.payout_threshold is None:
            return "-"
        return f"{format_minor(obj.payout_threshold, decimals_of(DEFAULT_TOKEN))} {DEFAULT_TOKEN}"

    @admin.display(description="categories")
    def category_names(self, obj: VendorProfile) -> str:
        return ", ".join(category.name for category in obj.categories.all()) or "-"


@admin.register(AdminProfile)
class AdminProfileAdmin(_ProfileAdmin):
    list_display = ("avatar_preview", "user", "department", "created_at")
    search_fields = ("user__email", "user__name", "department")
    fields = (*_ProfileAdmin.common, "department")
