"""The bytes a batch travels in between the app and the inference server: an ``.npz`` archive.

Inputs and outputs are plain values (numbers, strings, lists, dicts) and numpy arrays. The plain part
goes as JSON, each array as its own ``.npy`` member, read back with ``allow_pickle=False``: nothing
the other side sends is ever unpickled (so no code can travel with a request).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

CONTENT_TYPE = "application/x-cvdemo-npz"
_META = "__meta__"


def encode(value: Any) -> bytes:
    """``value`` (plain values and numpy arrays, nested in lists and dicts) as bytes."""
    arrays: dict[str, np.ndarray] = {}

    def plain(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                raise TypeError("Object arrays cannot be sent to the inference server.")
            name = f"a{len(arrays)}"
            arrays[name] = v
            return {"__array__": name}
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return v  # json.dumps refuses anything else, with the type in its message

    meta = json.dumps(plain(value)).encode("utf-8")
    buffer = io.BytesIO()
    np.savez(buffer, **{_META: np.frombuffer(meta, dtype=np.uint8)}, **arrays)
    return buffer.getvalue()


def decode(data: bytes) -> Any:
    """The value :func:`encode` wrote (arrays come back as numpy arrays)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))

    def restore(v: Any) -> Any:
        if isinstance(v, dict):
            if set(v) == {"__array__"}:
                return arrays[v["__array__"]]
            return {k: restore(x) for k, x in v.items()}
        if isinstance(v, list):
            return [restore(x) for x in v]
        return v

    return restore(meta)
