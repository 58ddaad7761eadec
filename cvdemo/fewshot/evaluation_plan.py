"""Which images the ladder is tested on: a held-out split, or cross-validation when there are too few.

With at least :data:`MIN_SPLIT` images in every class, a stratified share is held out once. With
fewer, every image is held out once by stratified k-fold cross-validation (k = the smallest
class's size, at most 5: leave-one-out within that class), and the folds' predictions are pooled
into one table (:class:`CrossValidatedLadder`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from cvdemo.fewshot.evaluation import confusion_matrix
from cvdemo.fewshot.intervals import estimate_from, per_class_estimates
from cvdemo.jobs import BackgroundJob
from cvdemo.fewshot.ladder import LadderConfig, LadderRun, RungResult, results_table
from cvdemo.fewshot.network import LadderError

if TYPE_CHECKING:
    import pandas as pd

MIN_SPLIT = 5  # images per class for a held-out split (else cross-validation)
HOLDOUT = 0.3
MAX_FOLDS = 5


@dataclass(frozen=True)
class EvaluationPlan:
    kind: str  # "held-out split" | "cross-validation"
    folds: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]  # (train indices, test indices)
    description: str


def plan_evaluation(labels: Sequence[str], seed: int = 0, holdout: float = HOLDOUT) -> EvaluationPlan:
    """Folds over the example list ``labels``; :class:`LadderError` when a class cannot be tested."""
    labels = [str(label) for label in labels]
    counts = Counter(labels)
    if len(counts) < 2:
        only = f"only '{next(iter(counts))}' has images" if counts else "there are no images"
        raise LadderError(f"The ladder needs at least 2 classes with images; {only}.")
    lonely = [c for c, n in counts.items() if n < 2]
    if lonely:
        raise LadderError(
            f"'{lonely[0]}' has only 1 image: each class needs at least 2 (one to learn from, one to test on)."
        )
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    smallest = min(counts.values())
    if smallest >= MIN_SPLIT:
        test = []
        for c in counts:
            members = np.flatnonzero(y == c)
            test.extend(rng.choice(members, max(1, round(holdout * len(members))), replace=False).tolist())
        test_set = set(test)
        train = tuple(i for i in range(len(y)) if i not in test_set)
        return EvaluationPlan(
            "held-out split",
            ((train, tuple(sorted(test_set))),),
            f"{len(test_set)} of your {len(y)} examples held out ({holdout:.0%} of each class, seed {seed}), "
            f"{len(train)} to learn from.",
        )
    from sklearn.model_selection import StratifiedKFold

    k = min(smallest, MAX_FOLDS)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = tuple((tuple(tr.tolist()), tuple(te.tolist())) for tr, te in splitter.split(np.zeros(len(y)), y))
    return EvaluationPlan(
        "cross-validation",
        folds,
        f"Too few images for a held-out split (the smallest class has {smallest}): {k}-fold cross-validation, "
        f"every one of the {len(y)} examples is held out once"
        + (" (leave-one-out within the smallest class)." if k == smallest else "."),
    )


@dataclass(frozen=True)
class HeldOutData:
    """What the ladder learns from and is tested on, as the user chose.

    ``images``/``labels``/``digests`` are all the user's examples. ``plan`` is None when the test
    images come from outside them (the validation split); under cross-validation ``train`` and
    ``test`` are empty and each fold of ``plan`` splits the examples.
    """

    images: list[Image.Image]
    labels: list[str]
    digests: list[str]
    train: list[tuple[Image.Image, str]]
    train_digests: list[str]
    test: list[tuple[Image.Image, str]]
    test_digests: list[str]
    plan: EvaluationPlan | None
    description: str

    @property
    def cross_validated(self) -> bool:
        return self.plan is not None and self.plan.kind == "cross-validation"


def held_out_data(
    images: Sequence[Image.Image],
    labels: Sequence[str],
    digests: Sequence[str],
    validation: Sequence[tuple[Image.Image, str, str]] | None = None,
    seed: int = 0,
) -> HeldOutData:
    """The examples split for the ladder: tested on ``validation`` (the sample set's ``(image, label,
    digest)`` validation images, minus any that are examples) when given, else on a share of the
    examples or by cross-validation (:func:`plan_evaluation`, which raises :class:`LadderError`)."""
    images, labels, digests = list(images), list(labels), list(digests)
    if validation is not None:
        by_fold = {c.casefold(): c for c in dict.fromkeys(labels)}
        known = set(digests)
        test = [(img, by_fold[label.casefold()], d) for img, label, d in validation if d not in known]
        return HeldOutData(
            images, labels, digests,
            list(zip(images, labels)), digests,
            [(img, label) for img, label, _ in test], [d for *_, d in test],
            None, f"{len(labels)} examples to learn from, {len(test)} ants/bees validation images held out",
        )
    plan = plan_evaluation(labels, seed=seed)
    if plan.kind == "cross-validation":
        return HeldOutData(images, labels, digests, [], [], [], [], plan, plan.description)
    train_idx, test_idx = plan.folds[0]
    return HeldOutData(
        images, labels, digests,
        [(images[i], labels[i]) for i in train_idx], [digests[i] for i in train_idx],
        [(images[i], labels[i]) for i in test_idx], [digests[i] for i in test_idx],
        plan, plan.description,
    )


def _pool(method_results: list[RungResult], y_true: np.ndarray, classes: list[str]) -> RungResult:
    first = method_results[0]
    y_pred = np.concatenate([r.y_pred for r in method_results])
    return RungResult(
        first.method,
        estimate_from(y_true, y_pred),
        per_class_estimates(y_true, y_pred, [c for c in classes if c in set(y_true.tolist())]),
        confusion_matrix(y_true, y_pred, classes),
        classes,
        y_pred,
        sum(r.seconds for r in method_results),
        first.trainable_params,
        sum(r.epochs_done for r in method_results),
        sum(r.epochs_planned for r in method_results),
        first.groups,
        f"pooled over {len(method_results)} folds; " + first.note,
    )


class CrossValidatedLadder(BackgroundJob):
    """The ladder once per fold, the folds' held-out predictions pooled into one table."""

    thread_name = "cvdemo-ladder-cv"

    def __init__(
        self,
        images: Sequence[Image.Image],
        labels: Sequence[str],
        digests: Sequence[str],
        plan: EvaluationPlan,
        config: LadderConfig,
        **run_options: Any,
    ) -> None:
        super().__init__()
        self.plan, self.config = plan, config
        self.classes = sorted(set(map(str, labels)))
        self.runs: list[LadderRun] = []
        for train, test in plan.folds:
            self.runs.append(
                LadderRun(
                    [(images[i], labels[i]) for i in train],
                    [(images[i], labels[i]) for i in test],
                    config,
                    digests=([digests[i] for i in train], [digests[i] for i in test]),
                    **run_options,
                )
            )
            run_options.setdefault("bank", self.runs[0].bank)  # one cache of views for every fold
        self.current = 0
        self.results: list[RungResult] = []

    @property
    def progress(self) -> float:
        if self.status != "running" or not getattr(self, "runs", None):
            return self._progress
        return min(1.0, (self.current + self.runs[self.current].progress) / len(self.runs))

    @progress.setter
    def progress(self, value: float) -> None:
        self._progress = value

    @property
    def phase(self) -> str:
        if self.status != "running" or not getattr(self, "runs", None):
            return self._phase
        return f"Fold {self.current + 1} of {len(self.runs)} · {self.runs[self.current].phase}"

    @phase.setter
    def phase(self, value: str) -> None:
        self._phase = value

    @property
    def history(self) -> list:
        return self.runs[self.current].history

    @property
    def feature_seconds(self) -> float:
        return sum(r.feature_seconds for r in self.runs)

    def _work(self) -> None:
        for i, run in enumerate(self.runs):
            if self.stopping:
                break
            self.current = i
            run._stop = self._stop  # one stop button for every fold
            run.run()
        done = [r for r in self.runs if r.results]
        if not done:
            return
        complete = [r for r in done if len(r.results) == len(done[0].results)]
        y_true = np.concatenate([np.asarray(r.test_labels) for r in complete])
        self.results = [_pool([r.results[m] for r in complete], y_true, self.classes) for m in range(len(done[0].results))]

    def table(self) -> "pd.DataFrame":
        return results_table(self.results)

    def classifier(self):
        """Folds train different models: the last finished fold's (all but its held-out images)."""
        for run in reversed(self.runs):
            if run.results:
                return run.classifier()
        return None
