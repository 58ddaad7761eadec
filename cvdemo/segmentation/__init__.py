"""Semantic segmentation lesson (being split into one module per concept)."""

from cvdemo.segmentation.model import *  # noqa: F401,F403
