"""The operators' admin for images (with previews) and the three kinds of profile."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from accounts.models import Image
from accounts.services import profile_create
from accounts.tests.conftest import picture

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(olga) -> Client:
    olga.is_superuser = True
    olga.save(update_fields=["is_superuser"])
    client = Client()
    client.force_login(olga)
    return client


@pytest.fixture
def image(upload, alice) -> Image:
    upload(alice, picture())
    return Image.objects.get()


def test_image_changelist_and_change_page_show_previews(operator, image):
    changelist = operator.get("/admin/accounts/image/?q=alice")
    change = operator.get(f"/admin/accounts/image/{image.pk}/change/")

    assert changelist.status_code == 200
    assert f'<img src="/media/{image.file.name}"'.encode() in changelist.content
    assert change.status_code == 200
    assert b"max-width:480px" in change.content


def test_deleting_an_image_in_the_admin_removes_its_file(operator, image, django_capture_on_commit_callbacks):
    path = Path(image.file.path)

    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(f"/admin/accounts/image/{image.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Image.objects.exists()
    assert not path.exists()


def test_profile_admins_list_and_show(operator, alice, victor, olga, image):
    profile_create(user=alice, kind="user", phone="+14155550123", avatar=image)
    vendor_profile = profile_create(user=victor, kind="vendor", business_name="Victor Audio")
    profile_create(user=olga, kind="admin", department="Risk")

    users = operator.get("/admin/accounts/profile/?q=alice")
    vendors = operator.get("/admin/accounts/vendorprofile/")
    vendor = operator.get(f"/admin/accounts/vendorprofile/{vendor_profile.pk}/change/")
    admins = operator.get("/admin/accounts/adminprofile/")

    assert users.status_code == vendors.status_code == vendor.status_code == admins.status_code == 200
    assert b"+14155550123" in users.content and b"<img" in users.content
    assert b"Victor Audio" in vendors.content
    assert b"Risk" in admins.content
