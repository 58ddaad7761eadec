"""The one base of every error whose message is written for a student or lecturer.

Every lesson raises its own type (``ImageInputError``, ``CompressionError``, ``WeightsUnavailable`` ...),
each a subclass of :class:`CvdemoError` and of the builtin it always was (``ValueError`` for bad input,
``RuntimeError`` for what this machine lacks), so ``except ValueError`` keeps working. Pages catch
``CvdemoError`` and show its message; anything else is a bug and must not be hidden behind a sentence.
"""

from __future__ import annotations


class CvdemoError(Exception):
    """An error whose message is a complete sentence for the person using the app (shown as typed)."""
