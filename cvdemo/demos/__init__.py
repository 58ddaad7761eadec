"""Gradio Blocks demos, one module per capability, each exposing ``build() -> gr.Blocks``.

They call the same ``cvdemo`` functions as the Streamlit pages and get models from
:mod:`cvdemo.cache`, so nothing is implemented or loaded twice.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def shows_errors(handler: F) -> F:
    """An event handler whose :class:`~cvdemo.errors.CvdemoError` reaches the visitor as its sentence.

    Gradio shows any other exception as a bare "Error"; a dead inference server (``CVDEMO_INFERENCE_URL``),
    a missing model file or a bad picture deserves the sentence written for it (``gr.Error``).
    Generator handlers (streamed outputs) stay generators.
    """
    import gradio as gr

    from cvdemo.errors import CvdemoError

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streamed(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from handler(*args, **kwargs)
            except CvdemoError as exc:
                raise gr.Error(str(exc)) from None

        return streamed  # type: ignore[return-value]

    @functools.wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except CvdemoError as exc:
            raise gr.Error(str(exc)) from None

    return wrapped  # type: ignore[return-value]
