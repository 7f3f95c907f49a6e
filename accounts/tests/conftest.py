"""Accounts fixtures: uploads go to a temporary MEDIA_ROOT, and pictures are made in memory."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
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


def while_deactivating(who, act: Callable[[], object]) -> object:
    """act() against a deactivation of `who` it cannot see yet (while_writing)."""
    from accounts.services import user_deactivate

    return while_writing(lambda: user_deactivate(user=who), act)


def while_writing(write: Callable[[], object], act: Callable[[], object]) -> object:
    """Run write() in one thread and keep its transaction open while act() runs in another (each on
    a connection of its own), until act() waits for it on a lock or is through; then commit.
    Returns what act() returned or raised: how it fared against a change it could not see yet.
    act() gets fresh rows itself, not the objects write() changes in memory."""
    written, done, outcome = threading.Event(), threading.Event(), {}

    def change():
        try:
            with transaction.atomic():
                write()
                written.set()
                for _ in range(1000):  # until act() waits for this transaction, or is through
                    if done.wait(0.01) or another_waits_on_a_lock():
                        break
        finally:
            connection.close()

    def run():
        try:
            written.wait(10)
            outcome["result"] = act()
        except Exception as exc:
            outcome["result"] = exc
        finally:
            done.set()
            connection.close()

    threads = [threading.Thread(target=change), threading.Thread(target=run)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a thread never finished"
    return outcome["result"]


def another_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock')"
        )
        return cursor.fetchone()[0]


def held_while_the_other_waits(holder, other, *, held, other_done, release) -> tuple:
    """Run `holder` (which sets `held` inside its transaction, then waits for `release`) and `other`
    at once; once `other` has ended or waits on a lock (the holder's), release the holder. Both
    functions' results."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        one, two = pool.submit(holder), pool.submit(other)
        assert held.wait(60)
        while not (other_done.wait(0.01) or another_waits_on_a_lock()):
            pass
        release.set()
        return one.result(60), two.result(60)
