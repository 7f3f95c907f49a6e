"""What cleaning one uploaded picture costs the request that sends it: accounts.images.clean_image
(recognise, verify, decode, turn upright, re-encode) on the costliest pictures an upload may be,
in every accepted format, at the largest size accepted (MAX_IMAGE_PIXELS, at most MAX_IMAGE_BYTES
sent).

Printed beside a baseline measured in the same run: a security review's picture as PayGo cleaned it
before, a 6000x4000 WebP of text (4.7 MB) decoded and re-encoded at quality 90 with libwebp's
default method 4, where a single upload took seconds of CPU and stored 7.5 MB.

    .venv/bin/python bench/image_clean.py [--rounds 2]

CPU seconds of this process (time.process_time), the median of the rounds: the figure a worker
spends, whatever else the machine runs. No database, no network.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import statistics
import time

from _setup import setup_django


def text(size: tuple[int, int], mode: str = "RGB"):
    """Black text on white, line after line: what libwebp spends the most on per byte sent."""
    from PIL import Image, ImageDraw

    image = Image.new(mode, size, "white")
    draw = ImageDraw.Draw(image)
    for y in range(0, size[1], 20):
        draw.text((0, y), "PayGo review " * (size[0] // 60 + 1), fill="black")
    return image


def noise(size: tuple[int, int], mode: str = "RGB"):
    """A tile of random pixels repeated: incompressible up close, small enough to send whole."""
    from PIL import Image

    rng = random.Random(1)
    tile = Image.frombytes(mode, (64, 64), rng.randbytes(64 * 64 * len(mode)))
    image = Image.new(mode, size)
    for x in range(0, size[0], 64):
        for y in range(0, size[1], 64):
            image.paste(tile, (x, y))
    return image


def encoded(image, image_format: str, limit: int, *, lossy: bool = False, **save) -> bytes | None:
    """The picture in `image_format` (lossy: at the best quality) whose file is at most `limit`
    bytes, what an attacker would send; None when it does not fit."""
    for quality in [95, 90, 75, 50, 30, 10, 1] if lossy else [None]:
        options = {**save, "quality": quality} if lossy else save
        out = io.BytesIO()
        image.save(out, format=image_format, **options)
        if out.tell() <= limit:
            return out.getvalue()
    return None


def cpu(function) -> tuple[float, object]:
    start = time.process_time()
    try:
        result = function()
    except Exception as exc:  # a refusal is an outcome too (413 for a copy over the limit)
        result = exc
    return time.process_time() - start, result


def outcome(result) -> str:
    if isinstance(result, Exception):
        status = getattr(result, "status_code", None)  # an API refusal; anything else would be a 500
        return f"refused {status}" if status else f"FAILED {result!r}"
    return f"stored {len(result.content):>9,} bytes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    setup_django()
    from PIL import Image

    from accounts import images

    # The largest picture accepted, at a camera's 4:3.
    width = math.isqrt(images.MAX_IMAGE_PIXELS * 4 // 3)
    size = (width, images.MAX_IMAGE_PIXELS // width)
    limit = images.MAX_IMAGE_BYTES
    cases = {
        "WebP text (lossy)": encoded(text(size), "WEBP", limit, lossy=True),
        "WebP noise (lossy)": encoded(noise(size), "WEBP", limit, lossy=True),
        "WebP noise RGBA (lossy)": encoded(noise(size, "RGBA"), "WEBP", limit, lossy=True),
        "WebP text (lossless)": encoded(text(size), "WEBP", limit, lossless=True),
        "PNG text": encoded(text(size), "PNG", limit),
        "PNG noise": encoded(noise(size), "PNG", limit),
        "PNG noise RGBA": encoded(noise(size, "RGBA"), "PNG", limit),
        "JPEG noise": encoded(noise(size), "JPEG", limit, lossy=True),
        "JPEG noise (progressive)": encoded(noise(size), "JPEG", limit, lossy=True, progressive=True),
        # Over two bytes a pixel: too many for optimised Huffman tables' buffer, written twice.
        "JPEG noise 1280x960, quality 100, 4:4:4": encoded(
            noise((1280, 960)), "JPEG", limit, quality=100, subsampling=0
        ),
        "GIF text": encoded(text(size, "L"), "GIF", limit),
        "GIF noise": encoded(noise(size, "L"), "GIF", limit),
    }

    review = io.BytesIO()
    text((6000, 4000)).save(review, format="WEBP", quality=30)

    def before() -> bytes:
        bound, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # past today's bound: the old path by hand
        try:
            picture = Image.open(io.BytesIO(review.getvalue()))
            picture.load()
        finally:
            Image.MAX_IMAGE_PIXELS = bound
        out = io.BytesIO()
        picture.save(out, format="WEBP", quality=90)  # method 4, libwebp's default
        return out.getvalue()

    baseline_figures = []
    for _ in range(rounds):
        seconds, stored = cpu(before)
        baseline_figures.append(seconds)
    baseline = statistics.median(baseline_figures)

    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[0]
    print(f"load (1 min): {load}; {rounds} rounds; largest accepted {size[0]}x{size[1]}, at most {limit:,} bytes sent")
    print(
        f"{'baseline: before, 6000x4000 WebP text, method 4':44s} sent {len(review.getvalue()):>9,} bytes"
        f"  cpu {baseline:5.2f} s  stored {len(stored):>9,} bytes"
    )
    for name, content in cases.items():
        if content is None:
            print(f"{name:44s} none fits in {limit:,} bytes at the largest size")
            continue
        figures, result = [], None
        for _ in range(rounds):
            seconds, result = cpu(lambda content=content: images.clean_image(content))
            figures.append(seconds)
        seconds = statistics.median(figures)
        print(
            f"{name:44s} sent {len(content):>9,} bytes  cpu {seconds:5.2f} s  {outcome(result)}"
            f"  ({seconds / baseline:.2f} of the baseline)"
        )


if __name__ == "__main__":
    main()
