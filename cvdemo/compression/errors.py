"""Compression's error types and the progress-callback type every long step takes."""

from __future__ import annotations

from typing import Callable

from cvdemo.errors import CvdemoError
from cvdemo import model_files


Progress = Callable[[float, str], None]  # (fraction done 0..1, what is happening)


class CompressionError(CvdemoError, ValueError):
    """A knob or an input that cannot work; the message says why in one sentence."""


class ModelFileError(model_files.ModelFileError, CompressionError):
    """An uploaded model file that is refused (pickle, wrong format, does not fit)."""
