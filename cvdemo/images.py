"""Safe image input: anything a user can upload becomes an RGB ``PIL.Image`` or a clear message."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from cvdemo.errors import CvdemoError

# Images larger than this are refused before decoding (decompression bombs).
MAX_PIXELS = 50_000_000
MAX_BYTES = 100 * 1024 * 1024

ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow's own bomb check raises at 2x its limit; we check ourselves with a friendlier message.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class ImageInputError(CvdemoError, ValueError):
    """A user-supplied image cannot be used; the message is a sentence a student understands."""


def _name_of(src: Any) -> str:
    name = getattr(src, "name", None) or (str(src) if isinstance(src, (str, os.PathLike)) else "")
    return Path(name).name if name else "the image"


def _read_bytes(src: Any) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file():
            raise ImageInputError(f"{path.name}: file not found.")
        if path.stat().st_size > MAX_BYTES:
            raise ImageInputError(f"{path.name} is larger than {MAX_BYTES // 2**20} MB; please use a smaller image.")
        return path.read_bytes()
    if hasattr(src, "read"):
        if hasattr(src, "seek"):
            try:
                src.seek(0)
            except Exception:
                pass
        data = src.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ImageInputError(f"{_name_of(src)} is larger than {MAX_BYTES // 2**20} MB; please use a smaller image.")
        return data
    raise ImageInputError(f"Cannot read an image from a {type(src).__name__}.")


def _from_array(arr: np.ndarray) -> Image.Image:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageInputError(f"An image array must be HxW, HxWx3 or HxWx4, not {arr.shape}.")
    if arr.size == 0:
        raise ImageInputError("The image array is empty.")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise ImageInputError(_too_big(arr.shape[1], arr.shape[0]))
    if arr.dtype != np.uint8:
        arr = _to_uint8(arr.astype(np.float64))
    return Image.fromarray(arr).convert("RGB")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale a float or >8-bit array to 0..255 (floats in 0..1 are taken as 0..1)."""
    arr = np.nan_to_num(arr)
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0 and hi <= 1.0:
        scaled = arr * 255.0
    elif lo >= 0 and hi <= 255:
        scaled = arr
    elif lo >= 0 and hi <= 65535:
        scaled = arr / 257.0
    else:
        scaled = (arr - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def _too_big(width: int, height: int) -> str:
    return (
        f"This image is {width}x{height} = {width * height / 1e6:.0f} megapixels, more than the "
        f"{MAX_PIXELS / 1e6:.0f} megapixel limit. Please resize it first."
    )


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha over white, 16-bit and float scaled, CMYK via Pillow."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(img, dtype=np.float64))).convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(src: Any) -> Image.Image:
    """Return an RGB image from bytes, a file-like object, a path, a PIL image or an array.

    EXIF orientation is applied, animated images give their first frame, and
    every failure is an :class:`ImageInputError` with a readable message.
    """
    if isinstance(src, np.ndarray):
        return _from_array(src)
    if isinstance(src, Image.Image):
        img = src
        name = "the image"
    else:
        name = _name_of(src)
        data = _read_bytes(src)
        if not data:
            raise ImageInputError(f"{name} is empty (0 bytes).")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError):
            # ImportError: ultralytics patches Image.open and may ask for an optional plugin.
            raise ImageInputError(f"{name} is not an image Pillow can read (is it really a JPEG/PNG?).") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageInputError(f"{name}: " + _too_big(*_header_size(data))) from None
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise ImageInputError(f"{name}: " + _too_big(width, height))
    if width == 0 or height == 0:
        raise ImageInputError(f"{name} has no pixels.")
    try:
        if getattr(img, "is_animated", False):
            img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img) or img
        rgb = _to_rgb(img)
        rgb.load()
    except ImageInputError:
        raise
    except Exception:
        raise ImageInputError(f"{name} is damaged or truncated and cannot be decoded.") from None
    return rgb


def _header_size(data: bytes) -> tuple[int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                return Image.open(io.BytesIO(data)).size
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Exception:
        return (0, 0)


def try_load_images(sources: list[Any]) -> tuple[list[Image.Image], list[str]]:
    """Load many images; bad ones are skipped and their messages returned."""
    images, errors = [], []
    for src in sources:
        try:
            images.append(load_image(src))
        except ImageInputError as exc:
            errors.append(str(exc))
    return images, errors


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def thumbnail(img: Image.Image, size: int = 160) -> Image.Image:
    thumb = img.copy()
    thumb.thumbnail((size, size))
    return thumb


def to_png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


_per_image: dict[tuple[int, str], Any] = {}
# Reentrant: a finalizer (below) can run inside any block holding it, when garbage collection frees an image there.
_per_image_lock = threading.RLock()


def per_image(img: Image.Image, what: str, compute: Any) -> Any:
    """``compute()`` remembered for this image object (a digest, a thumbnail...), dropped with the image.

    Images are not edited in place in cvdemo, so a shared sample's digest costs one hash per
    process, not one per page run. ``what`` names the value (one image can have several).
    """
    key = (id(img), what)
    with _per_image_lock:
        if key in _per_image:
            return _per_image[key]
    value = compute()
    try:
        weakref.finalize(img, _forget, key)  # ids are reused once an image is freed
    except TypeError:
        return value
    with _per_image_lock:
        _per_image[key] = value
    return value


def _forget(key: tuple[int, str]) -> None:
    with _per_image_lock:
        value = _per_image.pop(key, None)
    # Dropped outside the lock: the value may be an image (a thumbnail) whose own finalizer comes back here.
    del value


def fingerprint(img: Image.Image) -> str:
    """Content hash of the decoded pixels (mode, size, bytes): the same picture gets the same key
    however it was encoded (remembered per image object, see :func:`per_image`)."""

    def digest() -> str:
        h = hashlib.blake2b(f"{img.mode}{img.size}".encode(), digest_size=16)
        h.update(img.tobytes())
        return h.hexdigest()

    return per_image(img, "fingerprint", digest)


def rgb(img: Image.Image) -> Image.Image:
    """``img`` in RGB: the image itself when it already is (Pillow's ``convert("RGB")`` copies it, and a copy
    has to be hashed again for every cache key), else its conversion, remembered per image object."""
    if img.mode == "RGB":
        return img
    return per_image(img, "rgb", lambda: img.convert("RGB"))


def shared_image(path: str | os.PathLike) -> Image.Image:
    """A photo file decoded once per process (sample pictures): every caller gets the same read-only
    image object, so its fingerprint and the results computed from it are shared too."""
    from cvdemo import results

    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return load_image(path)  # the same clear message as any missing file
    return results.cached(("decoded-file", str(path), stat.st_size, stat.st_mtime_ns), lambda: load_image(path))


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    """The image as JPEG bytes for display, encoded once per process per picture.

    ``st.image`` re-encodes a PIL image on every page run (JPEG at quality 100); bytes it passes on
    as they are. Thirty students looking at the same sample and the same detections then cost one
    encoding, and the browser downloads a smaller file.
    """
    from cvdemo import results

    picture = rgb(img)  # a non-RGB image is converted (and its copy hashed) once, not on every run

    def encode() -> bytes:
        buf = io.BytesIO()
        picture.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()

    return results.cached(("jpeg", fingerprint(picture), quality), encode)
