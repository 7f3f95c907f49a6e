"""Admin pieces the apps share."""

from __future__ import annotations


class ReadOnlyAdminMixin:
    """For records written only through the apps' services (the ledger, messages, notifications):
    operators read them in the admin and never add, edit or delete one there. Works on model
    admins and inlines alike."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
