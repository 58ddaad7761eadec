"""Accuracy vs shots for the whole ladder, and the measured effect of augmentation.

Where the curves cross is the lesson: published work finds a linear probe ahead of fine-tuning at
very few shots and fine-tuning ahead as shots grow; here that is measured, not assumed. Each shot
count is drawn ``repeats`` times (seeded); every draw trains every rung, sharing one
:class:`~cvdemo.fewshot.view_bank.ViewBank`, so frozen outputs of a view are computed once.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from cvdemo.fewshot.augment import NO_AUGMENTATION
from cvdemo.fewshot.intervals import estimate_from
from cvdemo.jobs import BackgroundJob
from cvdemo.fewshot.knn import KNNClassifier
from cvdemo.fewshot.ladder import METHOD_LABELS, LadderConfig, LadderRun
from cvdemo.fewshot.network import LadderError
from cvdemo.fewshot.view_bank import ViewBank

if TYPE_CHECKING:
    import pandas as pd

    from cvdemo.fewshot.extractor import FeatureExtractor

SHOTS = (1, 2, 5, 10, 20)
CURVE_COLUMNS = ["shots", "method", "accuracy", "std", "runs", "n_test"]


def usable_shots(counts: Sequence[int], shots: Sequence[int], external_test: bool) -> list[int]:
    """Shot counts every class can supply (and still leave one image to test when the rest is the test set)."""
    limit = min(counts) if external_test else min(counts) - 1
    return sorted({int(s) for s in shots if 1 <= s <= limit})


class ShotsRun(BackgroundJob):
    """Accuracy vs training images per class for every rung; ``rows`` fill in draw by draw."""

    thread_name = "cvdemo-ladder-shots"

    def __init__(
        self,
        pool: Sequence[tuple[Image.Image, str]],
        pool_digests: Sequence[str],
        test: Sequence[tuple[Image.Image, str]] | None = None,
        test_digests: Sequence[str] | None = None,
        shots: Sequence[int] = SHOTS,
        repeats: int = 3,
        config: LadderConfig | None = None,
        extractor: "FeatureExtractor | None" = None,
        bank: ViewBank | None = None,
    ) -> None:
        super().__init__()
        self.config = config or LadderConfig()
        self.config.check()
        if repeats < 1:
            raise LadderError("Draw each shot count at least once (repeats >= 1).")
        self.pool = list(pool)
        self.pool_digests = list(pool_digests)
        self.labels = np.asarray([str(label) for _, label in self.pool])
        classes, counts = np.unique(self.labels, return_counts=True)
        if len(classes) < 2:
            raise LadderError("Accuracy vs shots needs at least 2 classes with images.")
        self.test = list(test) if test is not None else None
        self.test_digests = list(test_digests) if test_digests is not None else None
        self.shots = usable_shots(counts.tolist(), shots, self.test is not None)
        if not self.shots:
            raise LadderError(
                "Every class needs at least 2 images (1 to train, 1 to test) for a point on the curve."
                if self.test is None else "Every class needs at least 1 image."
            )
        self.classes = classes.tolist()
        self.repeats = int(repeats)
        self.extractor = extractor
        self.bank = bank
        self.rows: list[dict[str, Any]] = []

    def _draw(self, shots: int, repeat: int) -> tuple[list[int], list[int]]:
        rng = np.random.default_rng([self.config.seed, shots, repeat])
        train = np.concatenate([rng.choice(np.flatnonzero(self.labels == c), shots, replace=False) for c in self.classes])
        rest = np.setdiff1d(np.arange(len(self.labels)), train)
        return sorted(train.tolist()), rest.tolist()

    def _work(self) -> None:
        total = len(self.shots) * self.repeats
        done = 0
        for shots in self.shots:
            for repeat in range(self.repeats):
                if self.stopping:
                    return
                self.phase = f"{shots} per class, draw {repeat + 1} of {self.repeats}"
                train_idx, rest = self._draw(shots, repeat)
                if self.test is not None:
                    test, test_digests = self.test, self.test_digests
                else:
                    test, test_digests = [self.pool[i] for i in rest], [self.pool_digests[i] for i in rest]
                run = LadderRun(
                    [self.pool[i] for i in train_idx], test, replace(self.config, seed=self.config.seed + repeat),
                    extractor=self.extractor, bank=self.bank,
                    digests=([self.pool_digests[i] for i in train_idx], test_digests),
                )
                self.bank = run.bank
                self.extractor = run.extractor
                run._stop = self._stop
                run.run()
                for result in run.results:
                    if not result.stopped:
                        self.rows.append({"shots": shots, "repeat": repeat, "method": result.method,
                                          "accuracy": result.accuracy.value, "n_test": result.accuracy.n})
                done += 1
                self.progress = done / total

    def curve(self) -> "pd.DataFrame":
        """Tidy: ``shots, method, accuracy`` (mean over draws), ``std``, ``runs``, ``n_test``."""
        return summarise(self.rows)


def summarise(rows: list[dict[str, Any]]) -> "pd.DataFrame":
    import pandas as pd

    if not rows:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    frame = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHOD_LABELS)}
    out = (
        frame.groupby(["shots", "method"], sort=False)
        .agg(accuracy=("accuracy", "mean"), std=("accuracy", lambda a: float(np.std(a))), runs=("accuracy", "size"),
             n_test=("n_test", "max"))
        .reset_index()
    )
    out = out.sort_values(["method", "shots"], key=lambda col: col.map(order) if col.name == "method" else col)
    return out.reset_index(drop=True)[CURVE_COLUMNS]


def ladder_vs_shots(
    pool: Sequence[tuple[Image.Image, str]],
    test: Sequence[tuple[Image.Image, str]] | None = None,
    shots: Sequence[int] = SHOTS,
    repeats: int = 3,
    config: LadderConfig | None = None,
    extractor: "FeatureExtractor | None" = None,
) -> "pd.DataFrame":
    """:class:`ShotsRun` in the caller's thread; the curve table."""
    from cvdemo.images import fingerprint

    run = ShotsRun(pool, [fingerprint(img) for img, _ in pool], test,
                   [fingerprint(img) for img, _ in test] if test is not None else None,
                   shots, repeats, config, extractor)
    run.run()
    return run.curve()


def augmentation_effect(
    train: Sequence[tuple[Image.Image, str]],
    test: Sequence[tuple[Image.Image, str]],
    config: LadderConfig | None = None,
    copies: int = 4,
    extractor: "FeatureExtractor | None" = None,
    bank: ViewBank | None = None,
    digests: tuple[Sequence[str], Sequence[str]] | None = None,
    methods: Sequence[str] = ("knn", "head"),
) -> "pd.DataFrame":
    """Held-out accuracy with and without augmentation: kNN with ``copies`` augmented copies of each
    example as extra neighbours, and the trainable rungs in ``methods`` trained on augmented views
    vs on the photos themselves. Columns: ``method, augmented, augmentation, accuracy, n, ci_low, ci_high, seconds``."""
    import pandas as pd

    config = config or LadderConfig()
    if config.augmentation.is_identity:
        raise LadderError("Switch on at least one augmentation to measure its effect.")
    if copies < 1:
        raise LadderError("kNN needs at least 1 augmented copy per example to compare.")
    rows = []
    trainable = tuple(m for m in methods if m in ("head", "unfreeze"))
    for label, augmentation in (("off", NO_AUGMENTATION), ("on", config.augmentation)):
        run_config = replace(config, methods=trainable or ("knn",), augmentation=augmentation)
        run = LadderRun(train, test, run_config, extractor=extractor, bank=bank, digests=digests)
        bank, extractor = run.bank, run.extractor
        run.run()
        if "knn" in methods:
            started = time.perf_counter()
            X, y = run._X, np.asarray(run.train_labels)
            if label == "on":
                views = [bank.features(run.train_images, run.train_digests, augmentation, config.seed, i)
                         for i in range(copies)]
                X, y = np.vstack([X, *views]), np.concatenate([y] * (copies + 1))
            knn = KNNClassifier(min(config.k, len(y))).fit(X, y)
            estimate = estimate_from(run.test_labels, knn.predict(run._X_test))
            what = f"{copies} augmented copies of each example" if label == "on" else "the photos only"
            rows.append(_effect_row("knn", label == "on", what, estimate, time.perf_counter() - started))
        for result in run.results:
            if result.method in trainable:
                what = augmentation.describe() if label == "on" else "no augmentation"
                rows.append(_effect_row(result.method, label == "on", what, result.accuracy, result.seconds))
    frame = pd.DataFrame(rows)
    return frame.sort_values("method", key=lambda c: c.map({m: i for i, m in enumerate(METHOD_LABELS)}),
                             kind="stable").reset_index(drop=True)


def _effect_row(method: str, augmented: bool, augmentation: str, estimate, seconds: float) -> dict[str, Any]:
    return {"method": method, "augmented": augmented, "augmentation": augmentation, "accuracy": estimate.value, "n": estimate.n,
            "ci_low": estimate.low, "ci_high": estimate.high, "seconds": seconds}


def describe_curve(curve: "pd.DataFrame") -> list[str]:
    """Which rung leads at each shot count, and whether fine-tuning overtook the linear probe."""
    if curve.empty:
        return []
    lines = []
    leaders = []
    for shots, part in curve.groupby("shots"):
        top = part.sort_values("accuracy", ascending=False).iloc[0]
        leaders.append(f"{shots}: {METHOD_LABELS.get(top['method'], top['method'])} ({top['accuracy']:.0%})")
    lines.append("Leader per number of training images per class — " + "; ".join(leaders) + ".")
    wide = curve.pivot_table(index="shots", columns="method", values="accuracy")
    if {"linear_probe", "unfreeze"} <= set(wide.columns):
        ahead = wide["unfreeze"] > wide["linear_probe"]
        if ahead.all():
            lines.append("Fine-tuning (unfreeze) was ahead of the linear probe at every shot count measured.")
        elif not ahead.any():
            lines.append(f"Fine-tuning never overtook the linear probe here (up to {int(wide.index.max())} per class).")
        else:
            first = int(ahead[ahead].index.min())
            lines.append(f"Fine-tuning overtook the linear probe from {first} per class on (means over the draws).")
    spread = float(curve["std"].max())
    if spread > 0:
        lines.append(f"Spread between draws reaches ±{spread:.0%}: differences smaller than that are noise.")
    return lines
