"""Model files people upload or the app exports: safetensors in, pickles refused unread.

Every lesson that loads a model file (segmentation, few-shot, compression) checks it here, so the
rule is one: a file is read as safetensors when its header says so, and a pickle (which can run
code when loaded) is recognised by its magic bytes and refused with a sentence.
"""

from __future__ import annotations

from cvdemo.errors import CvdemoError

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib", ".tar", ".npy")


class ModelFileError(CvdemoError, ValueError):
    """A model file this app will not load, and why (empty, a pickle, not ours, does not fit)."""


def looks_like_safetensors(data: bytes) -> bool:
    """An 8-byte little-endian header length, then the JSON header: ``{`` at byte 8."""
    return len(data) > 9 and data[8:9] == b"{" and 0 < int.from_bytes(data[:8], "little") <= len(data) - 8


def looks_like_pickle(data: bytes) -> bool:
    """Pickle protocol 2-5 (``\\x80`` then the protocol number) or torch.save's zip.

    A safetensors file whose header length happens to start with byte 0x80 (one in 256) is not one.
    """
    if looks_like_safetensors(data):
        return False
    return (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or data[:4] == b"PK\x03\x04"
