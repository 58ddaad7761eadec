"""The transfer-learning ladder: the same examples, four ways to use a pretrained network, one table.

1. **kNN** on frozen features (nothing trained);
2. **linear probe**: logistic regression on the same frozen features;
3. **new head**: a new linear (or MLP) head on the frozen base, trained with augmentation;
4. **unfreeze**: the head first, then the last N stages unfrozen at ``head LR / lr_factor``
   (optionally started from the linear probe: LP-FT, Kumar et al. 2022).

:class:`LadderRun` runs the rungs in order in a background thread (or in the caller's), filling
``results`` and the per-epoch ``history`` as it goes; :func:`transfer_ladder` is the one-call
version returning the table. Frozen features come from the accelerated runtime through
:class:`~cvdemo.fewshot.extractor.FeatureExtractor` and are cached across rungs; the trainable
rungs train on cached frozen outputs of augmented views (:mod:`cvdemo.fewshot.view_bank`).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from cvdemo.images import fingerprint
from cvdemo.fewshot.augment import DEFAULT_AUGMENTATION, AugmentConfig
from cvdemo.fewshot.embedding_cache import EmbeddingCache
from cvdemo.fewshot.evaluation import confusion_matrix, linear_probe
from cvdemo.fewshot.extractor import DEFAULT_BACKBONE, FeatureExtractor
from cvdemo.fewshot.intervals import AccuracyEstimate, estimate_from, per_class_estimates
from cvdemo.jobs import BackgroundJob
from cvdemo.stats import intervals_overlap
from cvdemo.fewshot.knn import KNNClassifier
from cvdemo.fewshot.network import LadderError, count_parameters
from cvdemo.fewshot.training import EpochRecord, FitSettings, fit, make_optimizer, predict
from cvdemo.fewshot.view_bank import EVAL_VIEW, ViewBank

if TYPE_CHECKING:
    import pandas as pd

    from cvdemo.fewshot.model_io import FineTunedClassifier

METHODS = ("knn", "linear_probe", "head", "unfreeze")
METHOD_LABELS = {
    "knn": "kNN on frozen features",
    "linear_probe": "linear probe (logistic regression)",
    "head": "new head on the frozen base",
    "unfreeze": "unfreeze the last stages",
}
STARTS = {"head": "the trained head", "linear_probe": "the linear probe (LP-FT)", "random": "a random head (plain FT)"}


@dataclass(frozen=True)
class LadderConfig:
    """Every knob of a ladder run; :meth:`check` says in words what is wrong with a bad one."""

    methods: tuple[str, ...] = METHODS
    seed: int = 0
    k: int = 5  # kNN neighbours (at most the number of training images)
    lr: float = 3e-3  # the new head's learning rate (head rung, and the unfreeze rung's head-first phase)
    finetune_lr: float = 3e-4  # the head's learning rate once stages are unfrozen (measured: 1e-3 was unstable)
    lr_factor: float = 10.0  # unfrozen stages learn at finetune_lr / lr_factor
    head_epochs: int = 15
    unfreeze_epochs: int = 6
    unfreeze_stages: int = 2
    start: str = "head"  # what the unfreeze rung's head starts from: head | linear_probe | random
    head_hidden: int = 0  # 0: linear head; else the MLP's hidden width
    batch_size: int = 16
    augmentation: AugmentConfig = DEFAULT_AUGMENTATION

    def check(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise LadderError(f"Unknown method(s) {unknown}; choose from {', '.join(METHODS)}.")
        trains_head = "head" in self.methods or ("unfreeze" in self.methods and self.start == "head")
        if trains_head and self.head_epochs < 1:
            raise LadderError(f"Training the head needs at least 1 epoch (got {self.head_epochs}).")
        if "unfreeze" in self.methods and self.unfreeze_epochs < 1:
            raise LadderError(f"Fine-tuning the unfrozen stages needs at least 1 epoch (got {self.unfreeze_epochs}).")
        if self.lr_factor < 1:
            raise LadderError(
                f"The learning-rate factor must be at least 1: the unfrozen pretrained stages learn "
                f"{self.lr_factor:g}x slower than the head would mean faster. Got {self.lr_factor:g}."
            )
        if not (self.lr > 0 and self.finetune_lr > 0):
            raise LadderError(f"Learning rates must be positive (got {self.lr:g} and {self.finetune_lr:g}).")
        if self.unfreeze_stages < 1 and "unfreeze" in self.methods:
            raise LadderError("Unfreeze at least 1 stage (0 would be the 'new head' rung again).")
        if self.start not in STARTS:
            raise LadderError(f"Start must be one of {', '.join(STARTS)}, not {self.start!r}.")
        if self.start == "linear_probe" and self.head_hidden:
            raise LadderError("LP-FT starts from the linear probe's weights, so it needs a linear head (hidden = 0).")
        if self.k < 1 or self.batch_size < 1:
            raise LadderError("k and the batch size must be at least 1.")


@dataclass
class RungResult:
    """One row of the ladder table (with what it needs to draw its confusion matrix)."""

    method: str
    accuracy: AccuracyEstimate
    per_class: dict[str, AccuracyEstimate]
    confusion: np.ndarray
    classes: list[str]
    y_pred: np.ndarray
    seconds: float
    trainable_params: int
    epochs_done: int = 0
    epochs_planned: int = 0
    groups: list[tuple[str, float, int]] = field(default_factory=list)  # (name, learning rate, parameters)
    note: str = ""

    @property
    def label(self) -> str:
        return METHOD_LABELS[self.method]

    @property
    def stopped(self) -> bool:
        return self.epochs_done < self.epochs_planned

    def row(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "rung": self.label,
            "accuracy": self.accuracy.value,
            "n": self.accuracy.n,
            "ci_low": self.accuracy.low,
            "ci_high": self.accuracy.high,
            "per_class": ", ".join(f"{c} {a.value:.0%} ({a.correct}/{a.n})" for c, a in self.per_class.items()),
            "seconds": self.seconds,
            "trainable_params": self.trainable_params,
            "epochs": f"{self.epochs_done}/{self.epochs_planned}" if self.epochs_planned else "",
            "note": self.note,
        }


TABLE_COLUMNS = [
    "method", "rung", "accuracy", "n", "ci_low", "ci_high", "per_class", "seconds", "trainable_params", "epochs", "note",
]


def results_table(results: Sequence[RungResult]) -> "pd.DataFrame":
    """One row per rung (:meth:`RungResult.row`), in :data:`TABLE_COLUMNS` even when there are none yet."""
    import pandas as pd

    return pd.DataFrame([r.row() for r in results], columns=TABLE_COLUMNS)


def check_data(train_labels: Sequence[str], test_labels: Sequence[str]) -> list[str]:
    """The classes (sorted), or :class:`LadderError` saying what is wrong with the examples."""
    train_labels, test_labels = [str(c) for c in train_labels], [str(c) for c in test_labels]
    classes = sorted(set(train_labels))
    if not train_labels:
        raise LadderError("There are no training images: add examples to at least 2 classes.")
    if len(classes) < 2:
        raise LadderError(f"The ladder needs at least 2 classes; only '{classes[0]}' has training images.")
    if not test_labels:
        raise LadderError("There are no held-out images to measure accuracy on.")
    unseen = sorted(set(test_labels) - set(classes))
    if unseen:
        raise LadderError(f"'{unseen[0]}' has held-out images but no training images: every class needs both.")
    for c in classes:
        total = train_labels.count(c) + test_labels.count(c)
        if total < 2:
            raise LadderError(
                f"'{c}' has only 1 image: each class needs at least 2 (one to learn from, one to test on)."
            )
    return classes


class LadderRun(BackgroundJob):
    """The ladder on one train/held-out split; watch ``results``, ``history``, ``progress``, ``phase``."""

    thread_name = "cvdemo-ladder"

    def __init__(
        self,
        train: Sequence[tuple[Image.Image, str]],
        test: Sequence[tuple[Image.Image, str]],
        config: LadderConfig | None = None,
        extractor: FeatureExtractor | None = None,
        cache: EmbeddingCache | None = None,
        bank: ViewBank | None = None,
        digests: tuple[Sequence[str], Sequence[str]] | None = None,
    ) -> None:
        super().__init__()
        self.config = config or LadderConfig()
        self.config.check()
        self.train_images = [img for img, _ in train]
        self.train_labels = [str(label) for _, label in train]
        self.test_images = [img for img, _ in test]
        self.test_labels = [str(label) for _, label in test]
        self.classes = check_data(self.train_labels, self.test_labels)
        if extractor is None:
            from cvdemo import cache as shared

            extractor = shared.shared(FeatureExtractor, DEFAULT_BACKBONE, None, True)
        self.extractor = extractor
        if "unfreeze" in self.config.methods:
            if extractor.timm_model is None:
                raise LadderError("Unfreezing needs a timm backbone; this feature extractor is a fixed image encoder.")
            from cvdemo.fewshot.network import stage_count

            stages = stage_count(extractor.timm_model)
            if self.config.unfreeze_stages > stages:
                raise LadderError(
                    f"Cannot unfreeze {self.config.unfreeze_stages} stages: {extractor.backbone} has only {stages}."
                )
        self.bank = bank if bank is not None else ViewBank(extractor, cache)
        self.cache = self.bank.cache
        if digests is None:
            digests = ([fingerprint(i) for i in self.train_images], [fingerprint(i) for i in self.test_images])
        self.train_digests, self.test_digests = list(digests[0]), list(digests[1])
        self.y = np.searchsorted(self.classes, self.train_labels)
        self.y_test = np.searchsorted(self.classes, self.test_labels)
        self.results: list[RungResult] = []
        self.history: list[EpochRecord] = []
        self.feature_seconds = 0.0
        self._head = None
        self._probe = None
        self._network = None
        self.optimizers: dict[str, Any] = {}  # per trained rung, for inspection (groups and learning rates)
        self._X: np.ndarray | None = None
        self._X_test: np.ndarray | None = None

    # -- bookkeeping ------------------------------------------------------------------------

    def _units(self) -> list[tuple[str, float]]:
        """Rough cost of each step, for the progress bar (an epoch of unfreezing ~ 3 head epochs)."""
        cfg = self.config
        units = [("features", 2.0)]
        for m in cfg.methods:
            units.append((m, {"knn": 0.1, "linear_probe": 0.3, "head": cfg.head_epochs,
                              "unfreeze": 3.0 * cfg.unfreeze_epochs + 2}[m]))
        return units

    def _advance(self, step: str, fraction: float) -> None:
        units = self._units()
        total = sum(u for _, u in units)
        done = 0.0
        for name, u in units:
            if name == step:
                self.progress = min(1.0, (done + u * fraction) / total)
                return
            done += u

    def _record(self, record: EpochRecord) -> None:
        self.history.append(record)
        epochs = self.config.head_epochs if record.method == "head" else self.config.unfreeze_epochs
        self._advance(record.method, record.epoch / max(epochs, 1))

    def _finish(self, method: str, y_pred: np.ndarray, seconds: float, params: int, **extra: Any) -> RungResult:
        labels = np.asarray(self.classes)[y_pred]
        result = RungResult(
            method,
            estimate_from(self.test_labels, labels),
            per_class_estimates(self.test_labels, labels, [c for c in self.classes if c in set(self.test_labels)]),
            confusion_matrix(self.test_labels, labels, self.classes),
            list(self.classes),
            labels,
            seconds,
            params,
            **extra,
        )
        self.results.append(result)
        self._advance(method, 1.0)
        return result

    def table(self) -> "pd.DataFrame":
        return results_table(self.results)

    @property
    def n_train(self) -> int:
        return len(self.train_labels)

    # -- the rungs ------------------------------------------------------------------------------

    def _work(self) -> None:
        started = time.perf_counter()
        self.phase = f"Frozen features of {self.n_train} training and {len(self.test_labels)} held-out images"
        total = self.n_train + len(self.test_labels)

        def progress(offset: int):
            return lambda done, _total: self._advance("features", (offset + done) / max(total, 1))

        self._X = self.cache.embed(self.extractor, self.train_images, self.train_digests, progress=progress(0))
        self._X_test = self.cache.embed(self.extractor, self.test_images, self.test_digests,
                                        progress=progress(self.n_train))
        self.feature_seconds = time.perf_counter() - started
        for method in self.config.methods:
            if self.stopping:
                return
            self.phase = f"Rung: {METHOD_LABELS[method]}"
            getattr(self, f"_rung_{method}")()

    def _rung_knn(self) -> None:
        started = time.perf_counter()
        knn = KNNClassifier(min(self.config.k, self.n_train)).fit(self._X, self.y)
        pred = knn.predict(self._X_test)
        self._finish("knn", pred, time.perf_counter() - started, 0,
                     note=f"k = {knn.k}; stores {self.n_train} vectors, nothing trained")

    def _rung_linear_probe(self) -> None:
        started = time.perf_counter()
        self._probe = linear_probe(self._X, self.y)
        pred = self._probe.predict(self._X_test)
        params = int(self._probe.coef_.size + self._probe.intercept_.size)
        self._finish("linear_probe", pred, time.perf_counter() - started, params, note="logistic regression, C = 10")

    def _fit_settings(self, epochs: int) -> FitSettings:
        return FitSettings(epochs=epochs, batch_size=self.config.batch_size, seed=self.config.seed)

    def _train_head(self, method: str, started: float) -> list[EpochRecord]:
        import torch

        from cvdemo.fewshot.network import classifier_head

        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            head = classifier_head(self._X.shape[1], len(self.classes), cfg.head_hidden)

        def inputs(epoch: int) -> "torch.Tensor":
            self.phase = f"Rung: {METHOD_LABELS['head']} · epoch {epoch + 1}/{cfg.head_epochs}"
            views = self.bank.features(self.train_images, self.train_digests, cfg.augmentation, cfg.seed, epoch)
            return torch.from_numpy(views)

        optimizer = make_optimizer([{"name": "new head", "params": list(head.parameters()), "lr": cfg.lr}])
        self.optimizers[method] = optimizer
        history = fit(method, head, optimizer, inputs, head, self.y, torch.from_numpy(self._X_test), self.y_test,
                      self._fit_settings(cfg.head_epochs), self._record, lambda: self.stopping, started)
        self._head = head
        return history

    def _rung_head(self) -> None:
        import torch

        started = time.perf_counter()
        history = self._train_head("head", started)
        pred = predict(self._head, torch.from_numpy(self._X_test))
        self._finish("head", pred, time.perf_counter() - started, count_parameters(list(self._head.parameters())),
                     epochs_done=len(history), epochs_planned=self.config.head_epochs,
                     groups=[("new head", self.config.lr, count_parameters(list(self._head.parameters())))],
                     note=f"augmentation: {self.config.augmentation.describe()}")

    def _start_head(self, started: float) -> tuple[Any, str]:
        import torch

        from cvdemo.fewshot.network import classifier_head, head_from_linear_probe

        cfg = self.config
        if cfg.start == "linear_probe":
            probe = self._probe if self._probe is not None else linear_probe(self._X, self.y)
            return head_from_linear_probe(probe, self._X.shape[1]), "started from the linear probe (LP-FT)"
        if cfg.start == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                return classifier_head(self._X.shape[1], len(self.classes), cfg.head_hidden), "random head (plain FT)"
        if self._head is None:
            self._train_head("unfreeze (head first)", started)
        return copy.deepcopy(self._head), "head trained first on the frozen base"

    def _rung_unfreeze(self) -> None:
        import torch

        from cvdemo.fewshot.network import fine_tune_network

        cfg = self.config
        started = time.perf_counter()
        head, how = self._start_head(started)
        network = fine_tune_network(copy.deepcopy(self.extractor.timm_model), head, cfg.unfreeze_stages)
        frozen_key = f"{self.extractor.key}/frozen-{network.cut}"
        self.phase = f"Rung: {METHOD_LABELS['unfreeze']} · frozen part of the held-out images"
        test_frozen = self.bank.frozen_outputs(frozen_key, network.frozen_part, self.test_images, self.test_digests,
                                               cfg.augmentation, cfg.seed, EVAL_VIEW)
        self._advance("unfreeze", 2 / (3.0 * cfg.unfreeze_epochs + 2))

        def inputs(epoch: int) -> "torch.Tensor":
            self.phase = f"Rung: {METHOD_LABELS['unfreeze']} · epoch {epoch + 1}/{cfg.unfreeze_epochs}"
            return self.bank.frozen_outputs(frozen_key, network.frozen_part, self.train_images, self.train_digests,
                                            cfg.augmentation, cfg.seed, epoch)

        groups = network.parameter_groups(cfg.finetune_lr, cfg.lr_factor)
        optimizer = self.optimizers["unfreeze"] = make_optimizer(groups)
        history = fit("unfreeze", network, optimizer, inputs, network.trainable_part, self.y, test_frozen, self.y_test,
                      self._fit_settings(cfg.unfreeze_epochs), self._record, lambda: self.stopping, started)
        self._network = network
        pred = predict(network.trainable_part, test_frozen)
        unfrozen = ", ".join(s.name for s in network.unfrozen_stages)
        self._finish(
            "unfreeze", pred, time.perf_counter() - started, count_parameters(network.trainable_parameters()),
            epochs_done=len(history), epochs_planned=cfg.unfreeze_epochs,
            groups=[(g["name"], g["lr"], count_parameters(g["params"])) for g in groups],
            note=f"{how}; unfrozen: {unfrozen}; LR ÷ {cfg.lr_factor:g}",
        )

    # -- the trained model --------------------------------------------------------------------

    @property
    def network(self):
        """The unfreeze rung's network (backbone copy + head) once trained, else None."""
        return self._network

    @property
    def head(self):
        """The new head trained on the frozen base, else None."""
        return self._head

    def classifier(self) -> "FineTunedClassifier | None":
        """The most fine-tuned model of this run (unfreeze, else the new head on the frozen base)."""
        from cvdemo.fewshot.model_io import FineTunedClassifier
        from cvdemo.fewshot.network import fine_tune_network

        if self._network is not None:
            network, method = self._network, "unfreeze"
        elif self._head is not None:
            network, method = fine_tune_network(copy.deepcopy(self.extractor.timm_model), self._head, 0), "head"
        else:
            return None
        return FineTunedClassifier.from_network(network, self.classes, self.extractor, method, self.config)


_SHARED_RUNS: "OrderedDict[tuple, LadderRun]" = OrderedDict()
_SHARED_LOCK = threading.Lock()
SHARED_RUNS = 8


def shared_ladder(
    train: Sequence[tuple[Image.Image, str]],
    test: Sequence[tuple[Image.Image, str]],
    config: LadderConfig,
    extractor: FeatureExtractor,
    digests: tuple[Sequence[str], Sequence[str]],
    bank: ViewBank | None = None,
) -> LadderRun:
    """A started :class:`LadderRun`, shared by everyone asking for the same images, labels and settings:
    a class pressing "Run" on the sample set watches one run on 2 cores, not thirty. A stopped or
    failed run is not reused."""
    key = (extractor.key, extractor.runtime_info.name, tuple(digests[0]), tuple(str(l) for _, l in train),
           tuple(digests[1]), tuple(str(l) for _, l in test), config)
    with _SHARED_LOCK:
        run = _SHARED_RUNS.get(key)
        if run is not None and run.status in ("running", "done"):
            _SHARED_RUNS.move_to_end(key)
            return run
        run = LadderRun(train, test, config, extractor=extractor, bank=bank, digests=digests)
        run.start()  # under the lock: a second request must find it running, not "ready"
        _SHARED_RUNS[key] = run
        while len(_SHARED_RUNS) > SHARED_RUNS:
            _SHARED_RUNS.popitem(last=False)
    return run


def transfer_ladder(
    train: Sequence[tuple[Image.Image, str]],
    test: Sequence[tuple[Image.Image, str]],
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    lr_factor: float = 10,
    *,
    epochs: int | None = None,
    extractor: FeatureExtractor | None = None,
    cache: EmbeddingCache | None = None,
    **settings: Any,
) -> "pd.DataFrame":
    """The ladder's table: one row per method with ``method, accuracy, seconds, trainable_params``
    (and ``n, ci_low, ci_high, per_class, epochs, note``).

    ``train`` / ``test``: ``(PIL image, label)`` pairs. ``epochs`` sets both trainable rungs' epochs;
    other :class:`LadderConfig` fields (``head_epochs``, ``unfreeze_epochs``, ``unfreeze_stages``,
    ``lr``, ``start``, ``augmentation`` ...) can be passed by name. Raises :class:`LadderError`
    with a readable message for bad data or settings.
    """
    if epochs is not None:
        settings = {"head_epochs": epochs, "unfreeze_epochs": epochs, **settings}
    unknown = set(settings) - set(LadderConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"Unknown ladder setting(s): {', '.join(sorted(unknown))}")
    config = replace(LadderConfig(), methods=tuple(methods), seed=int(seed), lr_factor=float(lr_factor), **settings)
    run = LadderRun(train, test, config, extractor=extractor, cache=cache)
    run.run()
    return run.table()


def display_table(results: Sequence[RungResult]) -> "pd.DataFrame":
    """The table as people read it: accuracy with n and its 95% interval, time, trainable parameters."""
    import pandas as pd

    rows = []
    for r in results:
        rows.append({
            "rung": METHOD_LABELS[r.method] + (" (stopped)" if r.stopped else ""),
            "held-out accuracy": f"{r.accuracy.value:.1%} ({r.accuracy.correct}/{r.accuracy.n})",
            "95% CI": r.accuracy.interval,
            "per class": ", ".join(f"{c}: {a.value:.0%} of {a.n}" for c, a in r.per_class.items()),
            "train time": f"{r.seconds:.1f} s" if r.seconds >= 0.1 else f"{r.seconds * 1000:.0f} ms",
            "trainable parameters": f"{r.trainable_params:,}",
            "epochs": f"{r.epochs_done}/{r.epochs_planned}" if r.epochs_planned else "–",
            "how": r.note,
        })
    return pd.DataFrame(rows)


def describe_results(results: Sequence[RungResult]) -> list[str]:
    """What this run showed, in sentences (measured, with the caveat of the intervals)."""
    if not results:
        return []
    done = [r for r in results if not r.stopped]
    ranked = sorted(done or results, key=lambda r: -r.accuracy.value)
    best = ranked[0]
    lines = [f"Best on these held-out images: {METHOD_LABELS[best.method]}, {best.accuracy.describe()}."]
    by = {r.method: r for r in done}
    if "linear_probe" in by and "unfreeze" in by:
        lp, ft = by["linear_probe"].accuracy, by["unfreeze"].accuracy
        verb = "beat" if lp.value > ft.value else "tied with" if lp.value == ft.value else "lost to"
        lines.append(f"The linear probe {verb} partial fine-tuning here ({lp.value:.1%} vs {ft.value:.1%}).")
    if len(ranked) > 1:
        a, b = ranked[0].accuracy, ranked[1].accuracy
        if intervals_overlap((a.low, a.high), (b.low, b.high)):
            lines.append(
                f"The two best rungs' 95% intervals overlap ({a.interval} and {b.interval}): {a.n} held-out images "
                "cannot tell them apart. Accuracy vs shots repeats the draw to show the spread."
            )
    trained = [r for r in done if r.trainable_params and r.method in ("head", "unfreeze")]
    if trained:
        slow = max(trained, key=lambda r: r.seconds)
        lines.append(
            f"{METHOD_LABELS[slow.method].capitalize()} trained {slow.trainable_params:,} parameters in {slow.seconds:.0f} s "
            "on this CPU; kNN trained none."
        )
    return lines
