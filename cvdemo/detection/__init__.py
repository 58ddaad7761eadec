"""Object detection lesson (being split into one module per concept)."""

from cvdemo.detection.detector import *  # noqa: F401,F403
