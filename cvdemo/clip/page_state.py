"""What the CLIP page keeps in a browser session between reruns, as typed records (not string-keyed dicts).

Each record names the engine (or embedder) it was computed with, so the page can tell a stale result
(another engine chosen since) from a current one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cvdemo.clip.evaluation import FewShotScore, ZeroShotEval
from cvdemo.clip.image_index import AddReport, ImageIndex
from cvdemo.clip.verification_head import HeadTraining
from cvdemo.clip.verify import VerificationEval

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class GalleryState:
    """The searchable gallery of this session (Search tab; the Map and Fast search tabs read it)."""

    engine: str
    index: ImageIndex
    source: str
    skipped: list[str] = field(default_factory=list)
    report: AddReport = field(default_factory=AddReport)


@dataclass
class ZeroShotEvalState:
    """The Evaluate tab's last run: zero-shot per template and kNN per shot count on one labeled set."""

    engine: str
    dataset: str
    evaluations: list[ZeroShotEval]
    few_shot: list[FewShotScore]
    n: int
    classes: list[str]


@dataclass
class MapMemo:
    """The last map figure and what it was drawn from (PCA + thumbnails are built once, not per rerun)."""

    key: tuple
    figure: Any


@dataclass
class VerificationState:
    """The Verify tab's last evaluation on sample pairs."""

    embedder: str
    dataset: str
    level: str
    sources: int
    evaluation: VerificationEval


@dataclass
class HeadState:
    """The Verify tab's last training of a projection head (ROC before/after on held-out photos)."""

    embedder: str
    dataset: str
    level: str
    result: HeadTraining


@dataclass
class FastSearchData:
    """Vectors the Fast search tab measures on, with the queries asked of every method."""

    key: tuple  # what they are: ("gallery", engine, size) or ("synthetic", n, dim)
    description: str
    vectors: np.ndarray
    queries: np.ndarray


@dataclass
class FastSearchState:
    """The Fast search tab's measurements on one data set: the comparison table and every LSH point so far."""

    data_key: tuple
    k: int
    compared: "pd.DataFrame | None" = None
    sweep: "pd.DataFrame | None" = None  # one row per (bits, tables, probes) measured
