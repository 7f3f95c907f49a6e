"""Accounts fixtures: uploads go to a temporary MEDIA_ROOT, and pictures are made in memory."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def picture(image_format: str = "PNG", size: tuple[int, int] = (40, 30), mode: str = "RGB", **save) -> bytes:
    image = PILImage.new(mode, size, color="red" if mode in ("RGB", "RGBA") else 1)
    out = io.BytesIO()
    image.save(out, format=image_format, **save)
    return out.getvalue()


def upload_file(content: bytes, name: str = "picture.png", content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


@pytest.fixture
def upload(api):
    """upload(user, content, name=..., content_type=...) -> the response of POST /api/v1/images."""

    def send(user, content: bytes, name: str = "picture.png", content_type: str = "image/png", field: str = "image"):
        return api(user).post("/api/v1/images", {field: upload_file(content, name, content_type)}, format="multipart")

    return send
