"""Permission-checked reads of accounts: images and the three kinds of profile."""

from __future__ import annotations

import uuid

from django.contrib.auth import get_permission_codename
from django.db.models import Exists, OuterRef, Q, QuerySet
from rest_framework import exceptions

from accounts.models import Image, User, VendorProfile
from accounts.services import PROFILE_MODELS
from paygo.api.permissions import staff_has

VIEW_IMAGE = "accounts.view_image"
# The vendor profiles the public directory lists.
_LISTED = Q(user__is_active=True, user__role="vendor")


def image_get(*, viewer: User, image_id: uuid.UUID | str) -> Image:
    """An image's metadata: its owner's; anyone's once it is a vendor's avatar (the directory shows
    it to everyone); any for staff with the admin's view permission. Else 404, as if absent: an
    upload is nobody else's business until it is published."""
    images = Image.objects.filter(pk=image_id)
    if not staff_has(viewer, VIEW_IMAGE):
        published = VendorProfile.objects.filter(_LISTED, avatar=OuterRef("pk"))
        images = images.filter(Q(owner=viewer) | Exists(published))
    image = images.first()
    if image is None:
        raise exceptions.NotFound("No such image.")
    return image


def image_get_for_owner(*, user: User, image_id: uuid.UUID | str) -> Image:
    """The caller's own image, or 404 (someone else's image is as good as absent)."""
    image = Image.objects.filter(pk=image_id, owner=user).first()
    if image is None:
        raise exceptions.NotFound("No such image.")
    return image


def _with_relations(kind: str) -> QuerySet:
    queryset = PROFILE_MODELS[kind].objects.select_related("user", "avatar")
    if kind == "vendor":
        queryset = queryset.prefetch_related("categories")
    return queryset


def profile_get_own(*, user: User, kind: str):
    """The caller's profile of this kind, or 404 when they have not made one."""
    profile = _with_relations(kind).filter(user=user).first()
    if profile is None:
        raise exceptions.NotFound("You have no profile yet.")
    return profile


def profile_find_own(*, user: User, kind: str):
    """The caller's profile of this kind, or None."""
    return _with_relations(kind).filter(user=user).first()


def profile_view_permission(kind: str) -> str:
    """The permission staff need to see others' profiles of a kind: the admin's view permission on its model."""
    opts = PROFILE_MODELS[kind]._meta
    return f"{opts.app_label}.{get_permission_codename('view', opts)}"


def profile_list(*, kind: str) -> QuerySet:
    """Every profile of a kind, newest first (staff with profile_view_permission only: the view checks)."""
    return _with_relations(kind).order_by("-created_at", "-id")


def sees_whole_vendor_directory(viewer) -> bool:
    """Staff who may view vendor profiles see the directory whole: inactive vendors, private fields."""
    return staff_has(viewer, profile_view_permission("vendor"))


def vendor_directory(*, viewer) -> QuerySet[VendorProfile]:
    """Vendor profiles for the public directory: active vendors only, unless staff who may see them all look."""
    profiles = _with_relations("vendor").order_by("-created_at", "-id")
    if not sees_whole_vendor_directory(viewer):
        profiles = profiles.filter(_LISTED)
    return profiles
