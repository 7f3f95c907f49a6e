"""Checking and cleaning uploaded pictures: what the bytes are (never what they claim), how big,
and a re-encoded copy without metadata or anything smuggled after the pixels."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import ExifTags, JpegImagePlugin, UnidentifiedImageError
from PIL import Image as PILImage
from rest_framework import exceptions

from paygo.api.errors import PayloadTooLarge

MAX_IMAGE_BYTES = 5 * 1024 * 1024  # sent, and stored once re-encoded
MAX_IMAGE_SIDE = 8000
# And at most this many pixels in all (a 12-megapixel camera's 4032x3024, a 4096x3072 frame; an
# 8000x1575 panorama): decoding and re-encoding is what costs, not the bytes sent, and both grow
# with the pixels. A single-colour 8000x8000 PNG of 264 KB decoded into 256 MB (RGBA) in the
# worker; at 24 million pixels a WebP of 4.7 MB took seconds of CPU in the request.
# At this bound and the settings below, the costliest picture an upload may be takes about a second
# (bench/image_clean.py), and about 50 MB decoded.
MAX_IMAGE_PIXELS = 12_600_000
# Pillow refuses (DecompressionBombError) images of more than twice this many pixels before it
# decodes a byte, and warns above it; our own checks below refuse anything over either limit.
PILImage.MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE

# How each format is re-encoded, chosen for a bounded cost (bench/image_clean.py). WebP: libwebp's
# fastest method, 0 (its default, 4, took two to three times the CPU for files at most a few
# percent smaller), at quality 80 (90 cost a fifth more and stored a third more), where its first
# partition (at most 512 KB) holds even random pixels at the bound above: at 90 and 16 million
# pixels it did not ("encoding error 6", a 500). PNG: zlib's default level, not `optimize` (level
# 9, whose longer searches took up to twice the CPU for files a tenth smaller at best).
# A JPEG is written with its own quantization tables and chroma subsampling when it has them
# (_jpeg_terms): at the quality it was sent at. JPEG_SAVE is for one whose tables cannot be used.
JPEG_SAVE = {"quality": 90}
PNG_SAVE = {"compress_level": 6}
WEBP_SAVE = {"quality": 80, "method": 0}

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
            f"The image is {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS / 1_000_000:g} million pixels."
        )
    if width < 1 or height < 1:
        raise _unsupported()
    return image


def clean_image(content: bytes) -> CleanImage:
    """Recognise the image by its content, check its size, and re-encode its first frame.

    415 for anything that is not a JPEG, PNG, WebP or GIF (SVG, HTML, scripts, PDFs...);
    413 for more than 8000 pixels a side or 12.6 million in all (decompression bombs included), and
    for a copy that would be stored over MAX_IMAGE_BYTES; 400 for a damaged image.
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
        jpeg_terms = _jpeg_terms(image) if source_format == "JPEG" else JPEG_SAVE  # read before transposing
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
    _encode(image, source_format, output, jpeg_terms)
    # The copy is what is stored and served: it keeps to the limit the upload does. Refused, not
    # encoded again smaller: each try costs what the first did (the bound above is for one), and
    # the picture stored is the one sent, never a silently degraded one. A WebP sent at a low
    # quality grows re-encoded at ours (one of 4.7 MB was stored at 7.5 MB); a JPEG keeps its own.
    if output.tell() > MAX_IMAGE_BYTES:
        raise _too_big(
            f"Re-encoded, the image would be over the limit of {MAX_IMAGE_BYTES} bytes (5 MB) that an image is "
            "stored within; send it with fewer pixels."
        )
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


def _jpeg_terms(image: PILImage.Image) -> dict:
    """How a JPEG is written again: with the quantization tables and chroma subsampling it was sent
    with, so that it is stored at the quality it was sent at, neither degraded nor inflated (a 3.4 MB
    JPEG of quality 30 re-encoded at 90 was 5.4 MB, refused as over the limit). JPEG_SAVE when its
    tables are not the usual two or three of 64 (a 12-bit JPEG's)."""
    tables = getattr(image, "quantization", None) or {}
    if not 1 <= len(tables) <= 3 or any(len(table) != 64 or max(table) > 255 for table in tables.values()):
        return JPEG_SAVE
    terms = {"qtables": [list(table) for _, table in sorted(tables.items())]}
    sampling = JpegImagePlugin.get_sampling(image)
    if sampling != -1:
        terms["subsampling"] = sampling
    return terms


def _encode(image: PILImage.Image, image_format: str, output: io.BytesIO, jpeg_terms: dict = JPEG_SAVE) -> None:
    """Write the pixels alone: no EXIF, XMP, ICC profile, comments or text chunks survive."""
    # Encoders read some metadata from .info (JPEG and GIF comments, for one): keep only what
    # the pixels need.
    transparency = image.info.get("transparency")
    image.info = {"transparency": transparency} if transparency is not None else {}
    if image_format == "JPEG":
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        try:
            image.save(output, format="JPEG", optimize=True, **jpeg_terms)
        except OSError:
            # Optimised Huffman tables need the whole file in one buffer, which Pillow sizes for at
            # most two bytes a pixel: a noisy picture at a high quality needs more ("broken data
            # stream"). Written as it is encoded instead, a few percent larger. Such a picture has
            # at most 2.6 million pixels (5 MB at over two bytes each): the second try is cheap.
            output.seek(0)
            output.truncate()
            image.save(output, format="JPEG", **jpeg_terms)
    elif image_format == "PNG":
        image.save(output, format="PNG", **PNG_SAVE)
    elif image_format == "WEBP":
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.mode or transparency is not None else "RGB")
        image.save(output, format="WEBP", **WEBP_SAVE)
    else:  # GIF
        if image.mode not in ("P", "L"):
            image = image.convert("P", palette=PILImage.Palette.ADAPTIVE)
        image.save(output, format="GIF")
