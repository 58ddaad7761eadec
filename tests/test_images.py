"""load_image over a generated matrix of good, odd and bad inputs."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cvdemo.images import MAX_PIXELS, ImageInputError, load_image


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient(w: int = 64, h: int = 48) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)
    arr = np.stack([np.tile(x, (h, 1)), np.tile(x[::-1], (h, 1)), np.full((h, w), 128, np.uint8)], axis=2)
    return Image.fromarray(arr, "RGB")


def _png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims a huge size (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def _exif_rotated_jpeg() -> bytes:
    img = _gradient(64, 32)  # landscape pixels ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... stored with "rotate 90 CW" orientation
    return _encode(img, "JPEG", exif=exif)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 10), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


GOOD_INPUTS = {
    "rgb_jpeg": lambda: _encode(_gradient(), "JPEG"),
    "cmyk_jpeg": lambda: _encode(_gradient().convert("CMYK"), "JPEG"),
    "grayscale_png": lambda: _encode(_gradient().convert("L"), "PNG"),
    "16bit_png": lambda: _encode(Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)), "PNG"),
    "rgba_png": lambda: _encode(Image.new("RGBA", (8, 8), (255, 0, 0, 0)), "PNG"),
    "palette_png": lambda: _encode(_gradient().convert("P"), "PNG"),
    "animated_gif": _animated_gif,
    "exif_rotated_jpeg": _exif_rotated_jpeg,
    "webp": lambda: _encode(_gradient(), "WEBP"),
}

BAD_INPUTS = {
    "zero_bytes": lambda: b"",
    "text_renamed_jpg": lambda: b"this is not an image, just text in a .jpg file\n" * 10,
    "truncated_jpeg": lambda: _encode(_gradient(256, 256), "JPEG")[:600],
    "60mpx_png_header": lambda: _png_header_claiming(10_000, 6_000),
    "html_page": lambda: b"<!doctype html><html><body>404</body></html>",
}


@pytest.mark.parametrize("name", sorted(GOOD_INPUTS))
@pytest.mark.parametrize("wrap", ["bytes", "file", "path"])
def test_good_inputs_become_rgb(name, wrap, tmp_path):
    data = GOOD_INPUTS[name]()
    src = {"bytes": data, "file": io.BytesIO(data)}.get(wrap)
    if wrap == "path":
        src = tmp_path / f"{name}.img"
        src.write_bytes(data)
    img = load_image(src)
    assert img.mode == "RGB"
    assert img.width > 0 and img.height > 0


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_inputs_raise_readable_error(name):
    with pytest.raises(ImageInputError) as info:
        load_image(BAD_INPUTS[name]())
    message = str(info.value)
    assert len(message) > 15 and "Traceback" not in message


def test_bomb_message_names_the_size():
    with pytest.raises(ImageInputError, match="megapixel"):
        load_image(_png_header_claiming(10_000, 6_000))


def test_exif_orientation_is_applied():
    img = load_image(_exif_rotated_jpeg())
    assert img.size == (32, 64)  # rotated to portrait


def test_rgba_transparency_composited_on_white():
    img = load_image(GOOD_INPUTS["rgba_png"]())
    assert img.getpixel((0, 0)) == (255, 255, 255)


def test_16bit_scaled_not_clipped():
    img = load_image(GOOD_INPUTS["16bit_png"]())
    value = img.getpixel((0, 0))[0]
    assert 150 < value < 160  # 40000 / 257 = 155.6


def test_animated_gif_gives_first_frame():
    assert load_image(_animated_gif()).getpixel((5, 5)) == (255, 0, 0)


def test_arrays_and_pil_images():
    assert load_image(np.zeros((4, 5), dtype=np.uint8)).size == (5, 4)
    assert load_image(np.random.rand(4, 5, 3)).mode == "RGB"  # float 0..1
    assert load_image(np.zeros((4, 5, 4), dtype=np.uint8)).mode == "RGB"
    assert load_image(Image.new("LA", (3, 3))).mode == "RGB"
    with pytest.raises(ImageInputError):
        load_image(np.zeros((4, 5, 7)))
    with pytest.raises(ImageInputError):
        load_image(12345)


def test_pixel_cap_is_fifty_megapixels():
    assert MAX_PIXELS == 50_000_000


def test_missing_path(tmp_path):
    with pytest.raises(ImageInputError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_remembered_values_that_are_images_free_without_deadlock():
    """A thumbnail remembered for a photo is itself remembered-for: freeing the photo frees both (a
    finalizer inside a finalizer), which must not wait on a lock its own thread holds."""
    import threading

    from cvdemo import images

    def churn():
        for _ in range(200):
            outer = Image.new("RGB", (8, 8))
            inner = images.per_image(outer, "thumb", lambda: Image.new("RGB", (4, 4)))
            images.fingerprint(inner)
            del inner, outer  # reference counting frees both here, finalizers included

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "freeing remembered images deadlocked"
    assert not [key for key in images._per_image if key[1] == "thumb"]
