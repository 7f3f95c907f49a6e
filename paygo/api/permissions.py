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
