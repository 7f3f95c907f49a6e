"""Checking and cleaning uploaded pictures: what the bytes are (never what they claim), how big,
and a re-encoded copy without metadata or anything smuggled after the pixels."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import ExifTags, UnidentifiedImageError
from PIL import Image as PILImage
from rest_framework import exceptions

from paygo.api.errors import PayloadTooLarge

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_SIDE = 8000
# And at most this many pixels in all (a 6000x4000 camera photo; an 8000x3000 panorama): decoding
# is what costs, not the bytes sent. A single-colour 8000x8000 PNG of 264 KB decoded into 256 MB
# (RGBA) in the worker, and a few at once could take it out of memory; now at most 96 MB.
MAX_IMAGE_PIXELS = 24_000_000
# Pillow refuses (DecompressionBombError) images of more than twice this many pixels before it
# decodes a byte, and warns above it; our own checks below refuse anything over either limit.
PILImage.MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE

# Pillow format -> (content type, file extension)
FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}
# A multi-picture JPEG (MPO: what phones save with a depth or HDR gain map after the photo) is a
# JPEG whose first picture every reader shows: kept as a JPEG of that picture.
JPEG_KINDS = {"MPO": "JPEG"}
_UNSUPPORTED = "Only JPEG, PNG, WebP and GIF images are accepted."

# EXIF Orientation -> the transposition that shows the picture upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: PILImage.Transpose.FLIP_LEFT_RIGHT,
    3: PILImage.Transpose.ROTATE_180,
    4: PILImage.Transpose.FLIP_TOP_BOTTOM,
    5: PILImage.Transpose.TRANSPOSE,
    6: PILImage.Transpose.ROTATE_270,
    7: PILImage.Transpose.TRANSVERSE,
    8: PILImage.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class CleanImage:
    content: bytes
    content_type: str
    extension: str
    width: int
    height: int


def _unsupported() -> exceptions.UnsupportedMediaType:
    return exceptions.UnsupportedMediaType("image", detail=_UNSUPPORTED)


def _too_big(message: str) -> PayloadTooLarge:
    return PayloadTooLarge({"message": message, "code": "too_large"})


def read_upload(upload) -> bytes:
    """The uploaded file's bytes, refusing more than MAX_IMAGE_BYTES without reading them all."""
    if upload.size is not None and upload.size > MAX_IMAGE_BYTES:
        raise _too_big(f"The image is {upload.size} bytes; the limit is {MAX_IMAGE_BYTES} bytes (5 MB).")
    upload.seek(0)
    content = upload.read(MAX_IMAGE_BYTES + 1)
    if len(content) > MAX_IMAGE_BYTES:
        raise _too_big(f"The image is larger than the limit of {MAX_IMAGE_BYTES} bytes (5 MB).")
    if not content:
        raise exceptions.ValidationError({"image": ["The file is empty."]})
    return content


def _open(content: bytes) -> PILImage.Image:
    """Open with only the four accepted decoders, so nothing else is ever parsed."""
    try:
        image = PILImage.open(io.BytesIO(content), formats=list(FORMATS))
    except PILImage.DecompressionBombError:
        raise _too_big(f"The image has too many pixels; the limit is {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _unsupported() from None
    if JPEG_KINDS.get(image.format, image.format) not in FORMATS:
        raise _unsupported()
    width, height = image.size
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise _too_big(f"The image is {width}x{height} pixels; the limit is {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}.")
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_big(
            f"The image is {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS // 1_000_000} million pixels."
        )
    if width < 1 or height < 1:
        raise _unsupported()
    return image


def clean_image(content: bytes) -> CleanImage:
    """Recognise the image by its content, check its size, and re-encode its first frame.

    415 for anything that is not a JPEG, PNG, WebP or GIF (SVG, HTML, scripts, PDFs...);
    413 for more than 8000 pixels a side or 24 million in all (decompression bombs included); 400
    for a damaged image.
    """
    # verify() checks the file's structure without decoding it; it leaves the image unusable,
    # so the file is opened again to decode it.
    probe = _open(content)
    try:
        probe.verify()
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError):
        raise exceptions.ValidationError({"image": ["The image is damaged or truncated."]}) from None

    image = _open(content)
    source_format = JPEG_KINDS.get(image.format, image.format)
    try:
        image.seek(0)  # an animation (or a multi-picture JPEG) keeps its first frame only
        image.load()
        # Turn the photo upright before its EXIF orientation tag is dropped with the rest.
        upright = _UPRIGHT.get(_orientation(image))
        if upright is not None:
            image = image.transpose(upright)
    except PILImage.DecompressionBombError:
        raise _too_big(f"The image has too many pixels; the limit is {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}.") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise exceptions.ValidationError({"image": ["The image is damaged or truncated."]}) from None

    content_type, extension = FORMATS[source_format]
    output = io.BytesIO()
    _encode(image, source_format, output)
    return CleanImage(
        content=output.getvalue(),
        content_type=content_type,
        extension=extension,
        width=image.width,
        height=image.height,
    )


def _orientation(image: PILImage.Image) -> int:
    """The picture's EXIF (or XMP) orientation; 1, as taken, when there is none or it cannot be read.

    Read, not ImageOps.exif_transpose: that also writes the EXIF back without the tag, and a tag
    stored with another type than the standard's (which cameras and editors write) made the writing
    fail (struct.error, AttributeError): a 500 for a picture any viewer shows. The EXIF is dropped
    anyway; only the orientation is needed. A broken EXIF block can fail in many ways (Pillow's
    parser raises what its reads raise): the picture is then kept as it was taken."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        return orientation if isinstance(orientation, int) else 1
    except Exception:
        return 1


def _encode(image: PILImage.Image, image_format: str, output: io.BytesIO) -> None:
    """Write the pixels alone: no EXIF, XMP, ICC profile, comments or text chunks survive."""
    # Encoders read some metadata from .info (JPEG and GIF comments, for one): keep only what
    # the pixels need.
    transparency = image.info.get("transparency")
    image.info = {"transparency": transparency} if transparency is not None else {}
    if image_format == "JPEG":
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(output, format="JPEG", quality=90, optimize=True)
    elif image_format == "PNG":
        image.save(output, format="PNG", optimize=True)
    elif image_format == "WEBP":
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.mode or transparency is not None else "RGB")
        image.save(output, format="WEBP", quality=90)
    else:  # GIF
        if image.mode not in ("P", "L"):
            image = image.convert("P", palette=PILImage.Palette.ADAPTIVE)
        image.save(output, format="GIF")
