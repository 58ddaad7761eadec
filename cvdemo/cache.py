"""Process-wide model cache shared by the Streamlit pages and the Gradio demos.

``shared(Detector, "yolov8n")`` builds the object once per process (thread-safe) and hands
the same instance to every caller. Streamlit pages go through :func:`cvdemo.ui.shared`,
which wraps this in ``st.cache_resource``; Gradio demos call it directly, so a model
loaded by one is not loaded again by the other.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_objects: dict[tuple, Any] = {}
_locks: dict[tuple, threading.Lock] = {}
_guard = threading.Lock()


def _key(factory: Callable, args: tuple, kwargs: dict) -> tuple:
    name = f"{factory.__module__}.{getattr(factory, '__qualname__', repr(factory))}"
    return (name, args, tuple(sorted(kwargs.items())))


def shared(factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``factory(*args, **kwargs)``, built once per process; failures are not cached."""
    key = _key(factory, args, kwargs)
    if key in _objects:
        return _objects[key]
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # two sessions asking at once build it once
        if key not in _objects:
            _objects[key] = factory(*args, **kwargs)
    return _objects[key]


def has(factory: Callable, *args: Any, **kwargs: Any) -> bool:
    """Whether ``shared(factory, *args, **kwargs)`` is already built (no work, no waiting)."""
    return _key(factory, args, kwargs) in _objects


def clear() -> None:
    with _guard:
        _objects.clear()
        _locks.clear()
