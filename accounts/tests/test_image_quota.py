"""Each user stores at most IMAGE_QUOTA_COUNT images and IMAGE_QUOTA_BYTES bytes of them."""

from __future__ import annotations

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Image
from accounts.tests.conftest import picture
from conftest import in_thread, money_db

IMAGES = "/api/v1/images"


def stored_files(media_root) -> list:
    folder = media_root / "images"
    return sorted(folder.iterdir()) if folder.exists() else []


def assert_over_quota(response, media_root, *, images: int, message: str) -> None:
    assert response.status_code == 413, response.json()
    body = response.json()
    assert (body["statusCode"], body["code"], body["message"]) == (413, "image_quota_exceeded", message)
    assert Image.objects.count() == images
    assert len(stored_files(media_root)) == images  # nothing of the refused upload stays


@pytest.mark.django_db
def test_one_image_past_the_count_quota_is_refused_and_stores_nothing(upload, alice, media_root, settings):
    settings.IMAGE_QUOTA_COUNT = 2
    assert upload(alice, picture()).status_code == 201
    assert upload(alice, picture()).status_code == 201

    response = upload(alice, picture())

    assert_over_quota(response, media_root, images=2, message="One account keeps at most 2 images; delete one first.")


@pytest.mark.django_db
def test_an_image_past_the_byte_quota_is_refused_and_stores_nothing(upload, alice, media_root, settings):
    assert upload(alice, picture(size=(40, 30))).status_code == 201
    used = Image.objects.get().size
    settings.IMAGE_QUOTA_BYTES = used + 10  # room for 10 more bytes

    response = upload(alice, picture(size=(400, 300)))

    limit = used + 10
    assert_over_quota(
        response,
        media_root,
        images=1,
        message=f"One account keeps at most {limit} bytes of images; delete some first.",
    )


@pytest.mark.django_db
def test_the_quota_is_each_users_own_and_deleting_frees_it(api, upload, alice, bob, media_root, settings):
    settings.IMAGE_QUOTA_COUNT = 1
    assert upload(alice, picture()).status_code == 201

    assert upload(bob, picture()).status_code == 201  # alice's image is not bob's
    assert upload(alice, picture()).status_code == 413

    assert api(alice).delete(f"{IMAGES}/{Image.objects.get(owner=alice).pk}").status_code == 200
    assert upload(alice, picture()).status_code == 201


@money_db
def test_concurrent_uploads_never_pass_the_quota_together(alice, media_root, settings):
    from accounts.services import image_upload

    settings.IMAGE_QUOTA_COUNT = 1
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    @in_thread
    def upload_one():
        barrier.wait()
        try:
            image_upload(owner=alice, upload=SimpleUploadedFile("p.png", picture(), content_type="image/png"))
            outcomes.append("stored")
        except Exception as exc:  # the refusal
            outcomes.append(getattr(exc, "default_code", type(exc).__name__))

    threads = [threading.Thread(target=upload_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["image_quota_exceeded"] * 3 + ["stored"]
    assert Image.objects.filter(owner=alice).count() == 1
    assert len(stored_files(media_root)) == 1
