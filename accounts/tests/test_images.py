"""Image uploads: what is accepted, what is cleaned away, and every kind of hostile file."""

from __future__ import annotations

import contextlib
import io
import random
import struct
import uuid
import zlib
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL import ImageOps, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from accounts.images import MAX_IMAGE_BYTES
from accounts.models import Image
from accounts.tests.conftest import picture, upload_file
from paygo.tests.test_rate_limits import policies

pytestmark = pytest.mark.django_db

IMAGES = "/api/v1/images"


def stored_bytes(image: Image) -> bytes:
    with image.file.open("rb") as handle:
        return handle.read()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but carries almost no data: a decompression bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_with_exif() -> bytes:
    image = PILImage.new("RGB", (60, 40), "blue")
    exif = PILImage.Exif()
    exif[0x010F] = "SpyCam Inc."  # Make
    exif[0x0131] = "<script>alert('exif')</script>"  # Software
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    exif[0x8825] = {2: (51.0, 30.0, 0.0), 1: "N"}  # GPS position
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, comment=b"secret comment")
    return out.getvalue()


# --- accepted -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_format", "content_type", "extension"),
    [
        ("PNG", "image/png", "png"),
        ("JPEG", "image/jpeg", "jpg"),
        ("WEBP", "image/webp", "webp"),
        ("GIF", "image/gif", "gif"),
    ],
)
def test_each_accepted_format(upload, alice, image_format, content_type, extension):
    response = upload(alice, picture(image_format, size=(40, 30)), name="whatever.bin", content_type="text/plain")

    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "Image uploaded."
    image = Image.objects.get()
    assert body["image"] == {
        "id": str(image.pk),
        "url": f"http://testserver/media/{image.file.name}",
        "contentType": content_type,
        "width": 40,
        "height": 30,
        "size": image.size,
        "createdAt": image.created_at.isoformat().replace("+00:00", "Z"),
    }
    assert image.owner == alice
    assert image.content_type == content_type
    assert image.file.name.startswith("images/") and image.file.name.endswith(f".{extension}")
    assert "whatever" not in image.file.name
    assert image.size == len(stored_bytes(image))
    assert PILImage.open(io.BytesIO(stored_bytes(image))).format == image_format


def test_the_stored_name_is_random(upload, alice):
    upload(alice, picture(), name="../../etc/passwd.png")
    upload(alice, picture(), name="../../etc/passwd.png")

    names = [image.file.name for image in Image.objects.all()]
    assert len(set(names)) == 2
    for name in names:
        assert name.startswith("images/") and ".." not in name and "passwd" not in name
        assert len(name) == len("images/") + 32 + len(".png")


def test_format_is_recognised_by_content_not_by_claimed_type(upload, alice):
    response = upload(alice, picture("JPEG"), name="photo.png", content_type="image/png")

    assert response.status_code == 201
    assert response.json()["image"]["contentType"] == "image/jpeg"
    assert Image.objects.get().file.name.endswith(".jpg")


def test_jpeg_metadata_is_stripped_and_orientation_applied(upload, alice):
    original = jpeg_with_exif()
    assert b"SpyCam" in original and b"secret comment" in original

    response = upload(alice, original, name="photo.jpg", content_type="image/jpeg")

    assert response.status_code == 201
    cleaned = stored_bytes(Image.objects.get())
    assert b"SpyCam" not in cleaned
    assert b"script" not in cleaned
    assert b"secret comment" not in cleaned
    reopened = PILImage.open(io.BytesIO(cleaned))
    assert dict(reopened.getexif()) == {}
    assert "comment" not in reopened.info
    # turned upright before its orientation tag went: 60x40 displayed as 40x60
    assert reopened.size == (40, 60)
    assert response.json()["image"]["width"] == 40


def two_colour_picture(image_format: str, exif: bytes | PILImage.Exif | None = None) -> bytes:
    """16x8, its left half red and its right half blue: where each half ends up shows the turn."""
    image = PILImage.new("RGB", (16, 8), "red")
    image.paste("blue", (8, 0, 16, 8))
    out = io.BytesIO()
    image.save(out, format=image_format, **({"exif": exif} if exif is not None else {}))
    return out.getvalue()


def exif_with_a_tag_of_another_type(orientation: int) -> bytes:
    """EXIF with this orientation whose tag 0x0119 (MaxSampleValue, a SHORT by the standard) is
    written as a RATIONAL, as cameras and editors write such tags."""
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    exif[0x011A] = TiffImagePlugin.IFDRational(72, 1)  # XResolution, a RATIONAL
    blob = exif.tobytes()
    assert blob.count(b"\x01\x1a\x00\x05") == 1
    return blob.replace(b"\x01\x1a\x00\x05", b"\x01\x19\x00\x05")  # the same entry as tag 0x0119


def colour_at(image: PILImage.Image, xy: tuple[int, int]) -> str:
    red, _, blue = image.convert("RGB").getpixel(xy)
    return "red" if red > blue else "blue"


@pytest.mark.parametrize("image_format", ["JPEG", "WEBP"])
def test_a_photo_whose_exif_holds_a_tag_of_another_type_is_accepted_upright(upload, alice, image_format):
    """Turning it upright wrote its EXIF back (ImageOps.exif_transpose), which failed on the odd tag:
    a 500. The picture is fine; it is turned as its orientation says (6: a quarter turn clockwise)."""
    original = two_colour_picture(image_format, exif_with_a_tag_of_another_type(orientation=6))

    response = upload(alice, original, name="photo", content_type="image/jpeg")

    assert response.status_code == 201, response.json()
    assert (response.json()["image"]["width"], response.json()["image"]["height"]) == (8, 16)
    cleaned = PILImage.open(io.BytesIO(stored_bytes(Image.objects.get())))
    assert cleaned.format == image_format
    assert dict(cleaned.getexif()) == {}
    assert cleaned.size == (8, 16)
    assert (colour_at(cleaned, (4, 2)), colour_at(cleaned, (4, 13))) == ("red", "blue")  # the left half on top


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_orientation_is_turned_as_pillow_turns_it(upload, alice, orientation):
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    original = two_colour_picture("PNG", exif)
    expected = ImageOps.exif_transpose(PILImage.open(io.BytesIO(original)))

    response = upload(alice, original)

    assert response.status_code == 201
    cleaned = PILImage.open(io.BytesIO(stored_bytes(Image.objects.get())))
    assert cleaned.size == expected.size
    assert list(cleaned.convert("RGB").getdata()) == list(expected.convert("RGB").getdata())


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_an_orientation_out_of_the_standard_leaves_the_picture_as_taken(upload, alice, orientation):
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    original = two_colour_picture("PNG", exif)

    response = upload(alice, original)

    assert response.status_code == 201
    cleaned = PILImage.open(io.BytesIO(stored_bytes(Image.objects.get())))
    assert cleaned.size == (16, 8)
    assert (colour_at(cleaned, (2, 4)), colour_at(cleaned, (13, 4))) == ("red", "blue")


def test_an_exif_block_that_cannot_be_read_leaves_the_picture_as_taken(upload, alice, monkeypatch):
    """Pillow's EXIF parser raises what its reads raise on a broken block: any of it means no
    orientation, not a 500."""
    original = two_colour_picture("JPEG", exif_with_a_tag_of_another_type(orientation=6))

    def broken(self):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(PILImage.Image, "getexif", broken)
    response = upload(alice, original, content_type="image/jpeg")

    assert response.status_code == 201
    assert (response.json()["image"]["width"], response.json()["image"]["height"]) == (16, 8)


def multi_picture_jpeg() -> bytes:
    """A JPEG carrying a second picture after its first (Multi-Picture Format, MPO: what phones save
    for photos with a depth map or an HDR gain map). Every JPEG reader shows the first picture."""
    first, second = PILImage.new("RGB", (32, 16), "red"), PILImage.new("RGB", (8, 4), "blue")
    out = io.BytesIO()
    first.save(out, format="MPO", save_all=True, append_images=[second])
    return out.getvalue()


def test_a_multi_picture_jpeg_is_kept_as_a_jpeg_of_its_first_picture(upload, alice):
    """It was a 415, "only JPEG ... accepted", for a phone's JPEG photo."""
    original = multi_picture_jpeg()
    assert original[:3] == b"\xff\xd8\xff" and PILImage.open(io.BytesIO(original)).format == "MPO"

    response = upload(alice, original, name="IMG_0001.jpg", content_type="image/jpeg")

    assert response.status_code == 201, response.json()
    body = response.json()["image"]
    assert (body["contentType"], body["width"], body["height"]) == ("image/jpeg", 32, 16)
    image = Image.objects.get()
    assert image.content_type == "image/jpeg" and image.file.name.endswith(".jpg")
    cleaned = PILImage.open(io.BytesIO(stored_bytes(image)))
    assert (cleaned.format, cleaned.size, getattr(cleaned, "n_frames", 1)) == ("JPEG", (32, 16), 1)
    assert "mp" not in cleaned.info
    assert colour_at(cleaned, (16, 8)) == "red"


def test_png_text_chunks_and_icc_profile_are_stripped(upload, alice):
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<?php system($_GET['c']); ?>")
    info.add_itxt("Author", "Mallory")
    original = picture("PNG", pnginfo=info, icc_profile=b"\x00" * 128 + b"ICC-PAYLOAD")
    assert b"php" in original

    response = upload(alice, original)

    assert response.status_code == 201
    cleaned = stored_bytes(Image.objects.get())
    assert b"php" not in cleaned and b"Mallory" not in cleaned and b"ICC-PAYLOAD" not in cleaned
    assert PILImage.open(io.BytesIO(cleaned)).text == {}


def test_webp_exif_is_stripped(upload, alice):
    exif = PILImage.Exif()
    exif[0x010F] = "SpyCam Inc."
    original = picture("WEBP", exif=exif)
    assert b"SpyCam" in original

    response = upload(alice, original, content_type="image/webp")

    assert response.status_code == 201
    assert b"SpyCam" not in stored_bytes(Image.objects.get())


def test_an_animated_gif_keeps_its_first_frame(upload, alice):
    frames = [PILImage.new("P", (20, 10), color) for color in (1, 2, 3)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], comment=b"gif comment", loop=0)

    response = upload(alice, out.getvalue(), content_type="image/gif")

    assert response.status_code == 201
    cleaned = PILImage.open(io.BytesIO(stored_bytes(Image.objects.get())))
    assert getattr(cleaned, "n_frames", 1) == 1
    assert "comment" not in cleaned.info


def test_transparency_survives(upload, alice):
    response = upload(alice, picture("PNG", mode="RGBA"))

    assert response.status_code == 201
    assert PILImage.open(io.BytesIO(stored_bytes(Image.objects.get()))).mode == "RGBA"


def test_the_largest_allowed_side_is_accepted(upload, alice):
    response = upload(alice, picture("PNG", size=(8000, 1), mode="L"))

    assert response.status_code == 201
    assert (response.json()["image"]["width"], response.json()["image"]["height"]) == (8000, 1)


def test_the_file_may_come_as_field_file(upload, alice):
    assert upload(alice, picture(), field="file").status_code == 201


# --- refused ------------------------------------------------------------------------------------


def assert_refused(response, status: int, code: str, media_root) -> None:
    assert response.status_code == status, response.json()
    assert response.json()["statusCode"] == status
    assert response.json()["code"] == code
    assert Image.objects.count() == 0
    assert not (media_root / "images").exists() or not any((media_root / "images").iterdir())


def test_a_script_renamed_png_is_415(upload, alice, media_root):
    response = upload(alice, b"<script>alert(document.cookie)</script>", name="evil.png", content_type="image/png")

    assert_refused(response, 415, "unsupported_media_type", media_root)
    assert response.json()["message"] == "Only JPEG, PNG, WebP and GIF images are accepted."


def test_an_svg_with_a_script_is_415(upload, alice, media_root):
    svg = (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b"<script>alert(1)</script><rect width='10' height='10'/></svg>"
    )

    assert_refused(
        upload(alice, svg, name="logo.svg", content_type="image/svg+xml"), 415, "unsupported_media_type", media_root
    )


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (b"<!doctype html><html><body onload=alert(1)></body></html>", "page.html"),
        (b"%PDF-1.4\n%...", "doc.pdf"),
        (b"GIF89a<script>alert(1)</script>", "fake.gif"),  # a GIF signature and nothing of a GIF
        (b"\x89PNG\r\n\x1a\n<script>alert(1)</script>", "fake.png"),
        (b"\xff\xd8\xff<html>", "fake.jpg"),
        (picture("BMP"), "bitmap.png"),  # an image, but not one of the four
        (picture("TIFF"), "scan.png"),
    ],
)
def test_anything_else_is_415(upload, alice, media_root, content, name):
    assert_refused(upload(alice, content, name=name), 415, "unsupported_media_type", media_root)


def test_a_file_over_5_mb_is_413(upload, alice, media_root):
    oversized = picture("PNG") + b"\x00" * MAX_IMAGE_BYTES

    response = upload(alice, oversized)

    assert_refused(response, 413, "too_large", media_root)
    assert "5 MB" in response.json()["message"]


def test_a_body_over_the_upload_limit_is_413_before_it_is_read(upload, alice, media_root):
    assert_refused(upload(alice, b"\x00" * (7 * 1024 * 1024)), 413, "too_large", media_root)


def test_a_decompression_bomb_is_413(upload, alice, media_root):
    bomb = png_header_only(40_000, 40_000)  # 1.6 billion pixels in a few hundred bytes
    assert len(bomb) < 1000

    response = upload(alice, bomb)

    assert_refused(response, 413, "too_large", media_root)
    assert "pixels" in response.json()["message"]


@pytest.mark.parametrize(("width", "height"), [(8001, 10), (10, 8001), (8001, 8001)])
def test_more_than_8000_pixels_a_side_is_413(upload, alice, media_root, width, height):
    # Pillow warns (DecompressionBombWarning) past 8000x8000 pixels in all; the side check refuses it.
    with pytest.warns(PILImage.DecompressionBombWarning) if width * height > 64_000_000 else contextlib.nullcontext():
        response = upload(alice, png_header_only(width, height))

    assert_refused(response, 413, "too_large", media_root)
    assert f"{width}x{height}" in response.json()["message"]


@pytest.mark.parametrize(("width", "height"), [(8000, 8000), (6000, 4000), (4100, 3074), (4098, 3075)])
def test_more_than_12_6_million_pixels_is_413_before_a_byte_is_decoded(upload, alice, media_root, width, height):
    """Decoding and re-encoding is what costs: a single-colour 8000x8000 PNG of 264 KB decoded into
    256 MB, and a 6000x4000 WebP of 4.7 MB took seconds of CPU in the request."""
    response = upload(alice, png_header_only(width, height))

    assert_refused(response, 413, "too_large", media_root)
    assert response.json()["message"] == f"The image is {width}x{height} pixels; the limit is 12.6 million pixels."


def test_a_12_megapixel_cameras_photo_is_accepted(upload, alice):
    response = upload(alice, picture("PNG", size=(4032, 3024), mode="L"))

    assert response.status_code == 201
    assert (response.json()["image"]["width"], response.json()["image"]["height"]) == (4032, 3024)


def tiled_noise(size: tuple[int, int]) -> PILImage.Image:
    """Random pixels up close (what costs most to encode), one 64x64 tile repeated."""
    tile = PILImage.frombytes("RGB", (64, 64), random.Random(13).randbytes(64 * 64 * 3))
    image = PILImage.new("RGB", size)
    for x in range(0, size[0], 64):
        for y in range(0, size[1], 64):
            image.paste(tile, (x, y))
    return image


def test_an_image_that_re_encodes_past_5_mb_is_413_and_stores_nothing(upload, alice, media_root):
    """The stored copy keeps to the limit the upload does: a 6000x4000 WebP of 4.7 MB was stored at
    7.5 MB. One sent at quality 10 and re-encoded at 80 grows as much."""
    sent = io.BytesIO()
    tiled_noise((4000, 3000)).save(sent, format="WEBP", quality=10)
    assert sent.tell() <= MAX_IMAGE_BYTES

    response = upload(alice, sent.getvalue(), name="photo.webp", content_type="image/webp")

    assert_refused(response, 413, "too_large", media_root)
    assert response.json()["message"] == (
        "Re-encoded, the image would be over the limit of 5242880 bytes (5 MB) that an image is stored within; "
        "send it with fewer pixels."
    )


@pytest.mark.parametrize(("quality", "size"), [(30, (4000, 3000)), (50, (4000, 3000)), (95, (1600, 1200))])
def test_a_jpeg_is_stored_at_the_quality_it_was_sent_at(upload, alice, media_root, quality, size):
    """Re-encoded at quality 90 whatever it was sent at, a JPEG of quality 30 or 50 near 4 MB grew past
    the 5 MB limit (refused, 413) and one of 95 lost detail: its own tables and subsampling are kept."""
    sent = io.BytesIO()
    tiled_noise(size).save(sent, format="JPEG", quality=quality, subsampling="4:4:4" if quality > 90 else -1)
    original = PILImage.open(io.BytesIO(sent.getvalue()))

    response = upload(alice, sent.getvalue(), name="photo.jpg", content_type="image/jpeg")

    assert response.status_code == 201, response.json()
    [stored] = (media_root / "images").iterdir()
    kept = PILImage.open(stored)
    assert kept.format == "JPEG" and kept.size == size
    assert kept.quantization == original.quantization
    assert JpegImagePlugin.get_sampling(kept) == JpegImagePlugin.get_sampling(original)
    # Not inflated: the same tables (Huffman's optimised, or for the noisy 95, streamed as sent).
    assert stored.stat().st_size <= sent.tell() * 1.01


def test_uploads_have_a_budget_of_their_own(upload, alice, bob, settings, still_clock, media_root):
    """Each upload is decoded and re-encoded in the request (up to a second of CPU): they spent only
    the write budget (120 a minute per user), so one account could keep every worker busy."""
    settings.RATELIMIT_CACHE_PREFIX = f"rl-test-{uuid.uuid4().hex}:"
    settings.RATELIMIT_UPLOADS_PER_USER, settings.RATELIMIT_UPLOADS_PER_IP = "2/h", "4/h"

    alices = [upload(alice, picture()) for _ in range(3)]
    bobs = [upload(bob, picture()) for _ in range(2)]  # from the same address

    assert [answer.status_code for answer in alices + bobs] == [201, 201, 429, 201, 429]
    assert Image.objects.filter(owner=alice).count() == 2 and Image.objects.filter(owner=bob).count() == 1
    assert len(list((media_root / "images").iterdir())) == 3  # nothing of a refused upload is stored
    accepted = policies(alices[1])
    assert {name: (p["q"], p["w"], p["r"]) for name, p in accepted.items() if name.startswith("upload-")} == {
        "upload-user": (2, 3600, 0),
        "upload-ip": (4, 3600, 2),
    }
    for refused, whose, quota in ((alices[2], "from this account", 2), (bobs[1], "from your address", 4)):
        reset = policies(refused)["upload-user" if quota == 2 else "upload-ip"]["t"]
        assert refused["Retry-After"] == str(reset)
        assert refused.json() == {
            "message": f"Too many image uploads {whose}: at most {quota} every 3600 seconds. "
            f"Try again in {reset} seconds.",
            "statusCode": 429,
            "code": "rate_limited",
        }

    still_clock.shift(3601)  # the next window
    assert upload(alice, picture()).status_code == 201


def test_a_polyglot_is_cleaned_of_its_payload(upload, alice):
    # A real GIF with an HTML/JS payload after its trailer (and a zip after that, GIFAR-style):
    # browsers sniffing it as HTML would run the script. The re-encoded copy carries pixels only.
    payload = b"<html><script>alert('polyglot')</script></html>PK\x03\x04zip-bytes"
    polyglot = picture("GIF") + payload

    response = upload(alice, polyglot, name="avatar.gif", content_type="image/gif")

    assert response.status_code == 201
    cleaned = stored_bytes(Image.objects.get())
    assert b"script" not in cleaned and b"PK\x03\x04" not in cleaned
    assert PILImage.open(io.BytesIO(cleaned)).format == "GIF"


def test_a_png_with_a_script_in_a_chunk_and_after_iend_is_cleaned(upload, alice):
    original = picture("PNG")
    iend = original.rindex(b"IEND") - 4
    hostile = original[:iend] + png_chunk(b"tEXt", b"x\x00<script>alert(1)</script>") + original[iend:] + b"<script>"

    response = upload(alice, hostile)

    assert response.status_code == 201
    assert b"script" not in stored_bytes(Image.objects.get())


def test_a_truncated_image_is_400(upload, alice, media_root):
    whole = picture("PNG", size=(200, 200))

    response = upload(alice, whole[: len(whole) // 2])

    assert_refused(response, 400, "invalid", media_root)
    assert response.json()["errors"] == {"image": ["The image is damaged or truncated."]}


def test_an_empty_file_is_400(upload, alice, media_root):
    assert_refused(upload(alice, b""), 400, "invalid", media_root)


def test_no_file_is_400(api, alice):
    response = api(alice).post(IMAGES, {"other": "x"}, format="multipart")

    assert response.status_code == 400
    assert "image" in response.json()["errors"]


def test_json_instead_of_multipart_is_415(api, alice):
    assert api(alice).post(IMAGES, {"image": "data:image/png;base64,AAAA"}, format="json").status_code == 415


# --- who may -------------------------------------------------------------------------------------


def test_anonymous_cannot_upload(anon, media_root):
    response = anon.post(IMAGES, {"image": upload_file(picture())}, format="multipart")

    assert_refused(response, 401, "not_authenticated", media_root)


@pytest.mark.parametrize("who", ["alice", "bob", "victor", "wanda", "olga"])
def test_every_role_may_upload(request, upload, who):
    assert upload(request.getfixturevalue(who), picture()).status_code == 201


@pytest.fixture
def alices_image(upload, alice) -> Image:
    upload(alice, picture())
    return Image.objects.get()


@pytest.mark.parametrize(
    ("who", "status"), [("alice", 200), ("bob", 404), ("victor", 404), ("stan", 404), ("olga", 200)]
)
def test_an_image_is_its_owners_and_staffs_who_may_view_images(request, api, alices_image, who, status):
    """An upload is private until published: its owner and staff with accounts.view_image (olga is a
    superuser) read it; to anyone else it does not exist."""
    response = api(request.getfixturevalue(who)).get(f"{IMAGES}/{alices_image.pk}")

    assert response.status_code == status
    if status == 200:
        assert response.json()["image"]["id"] == str(alices_image.pk)


def test_a_vendors_avatar_is_anyones_while_the_directory_lists_him(api, upload, victor, bob):
    """The directory shows a vendor's avatar to everyone, so its metadata is everyone's too; no
    longer once he is deactivated (the directory drops him)."""
    from accounts.services import profile_create, user_deactivate

    upload(victor, picture())
    image = Image.objects.get()
    profile_create(user=victor, kind="vendor", business_name="Victor's", avatar=image)

    assert api(bob).get(f"{IMAGES}/{image.pk}").status_code == 200
    user_deactivate(user=victor)
    assert api(bob).get(f"{IMAGES}/{image.pk}").status_code == 404


def test_anonymous_cannot_read_image_metadata(anon, alices_image):
    assert anon.get(f"{IMAGES}/{alices_image.pk}").status_code == 401


def test_unknown_image_is_404(api, alice):
    assert api(alice).get(f"{IMAGES}/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api(alice).get(f"{IMAGES}/not-a-uuid").status_code == 404


@pytest.mark.parametrize("who", ["bob", "victor", "wanda", "olga"])
def test_only_the_owner_deletes_an_image(request, api, alices_image, who, django_capture_on_commit_callbacks):
    path = alices_image.file.path

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api(request.getfixturevalue(who)).delete(f"{IMAGES}/{alices_image.pk}")

    assert response.status_code == 404
    assert callbacks == []
    assert Image.objects.filter(pk=alices_image.pk).exists()
    assert Path(path).read_bytes()  # the file is still there


def test_the_owner_deletes_the_row_and_the_file(api, alice, alices_image, django_capture_on_commit_callbacks):
    path = alices_image.file.path

    with django_capture_on_commit_callbacks(execute=True):
        response = api(alice).delete(f"{IMAGES}/{alices_image.pk}")

    assert response.status_code == 200
    assert response.json() == {"message": "Image deleted."}
    assert not Image.objects.filter(pk=alices_image.pk).exists()
    assert not Path(path).exists()
