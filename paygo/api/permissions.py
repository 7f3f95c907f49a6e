"""Role permissions (user, vendor, staff), and the one rule for what staff may do: the admin's.

`is_staff` only lets one log into the admin; each thing done or seen there needs its own Django
model permission (view, change, delete, add), and the API asks staff for the same one. Superusers
hold every permission. A staff member without it is answered as anyone else without a claim on
the object: the role checks and selectors decide, exactly as for an ordinary user.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission


def _named(permissions: tuple[str, ...]) -> str:
    return f"{' and '.join(permissions)} permission{'s' if len(permissions) > 1 else ''}"


def _admin_grants(user, permission: str) -> bool:
    # The admin shows a model's objects to whoever may view or change them (ModelAdmin.has_view_permission).
    app_label, _, codename = permission.partition(".")
    if codename.startswith("view_") and user.has_perm(f"{app_label}.change_{codename.removeprefix('view_')}"):
        return True
    return user.has_perm(permission)


def staff_has(user, *permissions: str) -> bool:
    """Whether `user` is staff whom the admin grants every one of `permissions` ("app_label.codename");
    as there, a model's change permission lets one view it too."""
    if not (user and user.is_authenticated and user.is_staff):
        return False
    return all(_admin_grants(user, permission) for permission in permissions)


class IsUserRole(BasePermission):
    message = "Only users (not vendors or admins) can do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.role == "user")


class IsVendor(BasePermission):
    message = "Only vendors can do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.role == "vendor")


class IsStaff(BasePermission):
    """Staff, for what is the staff member's own (their admin profile): never for anyone else's data."""

    message = "Only staff can do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class StaffWithPermission(BasePermission):
    """Staff who hold these Django permissions, as the admin asks of them."""

    def __init__(self, *permissions: str) -> None:
        self.permissions = permissions
        self.message = f"Only staff with the {_named(permissions)} can do this."

    def has_permission(self, request, view) -> bool:
        return staff_has(request.user, *self.permissions)


class IsVendorOrStaffWithPermission(StaffWithPermission):
    """Vendors (on their own objects: the view's selector narrows) and staff with the permissions."""

    def __init__(self, *permissions: str) -> None:
        super().__init__(*permissions)
        self.message = f"Only vendors and staff with the {_named(permissions)} can do this."

    def has_permission(self, request, view) -> bool:
        return IsVendor().has_permission(request, view) or super().has_permission(request, view)
