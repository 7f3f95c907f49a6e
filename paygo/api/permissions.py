"""Role permissions: user, vendor, staff."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


class IsUserRole(BasePermission):
    message = "Only users (not vendors or admins) can do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.role == "user")


class IsVendor(BasePermission):
    message = "Only vendors can do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.role == "vendor")


class IsStaff(BasePermission):
    message = "Only staff can do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class StaffWithPermission(IsStaff):
    """Staff who hold one Django permission (superusers hold them all), as the admin asks of them.

    The API must not let a staff member do what the admin refuses them: `is_staff` only lets one
    log into the admin, each action there needs its own permission.
    """

    def __init__(self, permission: str) -> None:
        self.permission = permission
        self.message = f"Only staff with the {permission} permission can do this."

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and request.user.has_perm(self.permission)
