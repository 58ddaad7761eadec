"""mAP and the precision-recall curve from ultralytics' DetectionValidator, and the PR figure the page draws."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ContextManager

import numpy as np

from cvdemo.detection.labeled_sets import LabeledSet
from cvdemo.yolo_runtime import import_ultralytics

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Evaluation:
    """mAP and curves from ultralytics' DetectionValidator (plain numbers: safe to keep in a session)."""

    dataset: str
    model_name: str
    map50: float
    map50_95: float
    precision: float
    recall: float
    n_images: int
    n_instances: int
    per_class: "pd.DataFrame"  # ultralytics' metrics.summary(): P, R, F1, mAP50, mAP75, mAP50-95 per class
    recall_axis: np.ndarray  # (1000,) recall values of the PR curve
    precision_by_class: dict[str, np.ndarray]  # class -> (1000,) precision at IoU 0.5
    speed_ms: dict[str, float]
    seconds: float

    @property
    def mean_precision(self) -> np.ndarray:
        """The "all classes" PR curve (mean over classes), whose area is mAP50."""
        if not self.precision_by_class:
            return np.zeros_like(self.recall_axis)
        return np.mean(list(self.precision_by_class.values()), axis=0)


def validate(
    model: Any,
    labeled: LabeledSet,
    model_name: str,
    imgsz: int,
    batch: int,
    lock: ContextManager[Any],
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """mAP50, mAP50-95 and the PR curve of an ultralytics ``YOLO`` with its DetectionValidator.

    ``progress(images_done, images_total)`` is called after every batch; ``lock`` is held while the
    validator runs the network. Everything the validator writes (label caches, its run folder) stays
    in the set's temp folder.
    """
    import_ultralytics()
    import pandas as pd
    from ultralytics.models.yolo.detect import DetectionValidator

    args = {
        **model.overrides,
        "data": str(labeled.yaml_path),
        "imgsz": imgsz,
        "batch": batch,
        "rect": True,
        "plots": False,  # the PR curve comes from the metrics object, not from PNGs
        "save_json": False,
        "verbose": False,
        "project": str(labeled.root / "runs"),
        "name": "val",
        "exist_ok": True,
        "mode": "val",
    }
    validator = DetectionValidator(args=args)
    if progress is not None:

        def report(v: DetectionValidator) -> None:
            total = len(v.dataloader.dataset)
            progress(min((v.batch_i + 1) * (v.dataloader.batch_size or 1), total), total)

        validator.add_callback("on_val_batch_end", report)
    start = time.perf_counter()
    with lock:
        validator(model=model.model)
    seconds = time.perf_counter() - start
    metrics = validator.metrics
    box = metrics.box
    summary = pd.DataFrame(metrics.summary(decimals=4))
    if not summary.empty:
        summary = summary.astype({"Images": int, "Instances": int})
    class_names = [metrics.names[int(i)] for i in box.ap_class_index]
    curves = np.asarray(box.prec_values)
    return Evaluation(
        dataset=labeled.description,
        model_name=model_name,
        map50=float(box.map50),
        map50_95=float(box.map),
        precision=float(box.mp),
        recall=float(box.mr),
        n_images=len(validator.dataloader.dataset),
        n_instances=int(np.sum(metrics.nt_per_class)) if metrics.nt_per_class is not None else 0,
        per_class=summary,
        recall_axis=np.asarray(box.px, dtype=float),
        precision_by_class={n: curves[i].astype(float) for i, n in enumerate(class_names) if i < len(curves)},
        speed_ms={k: float(v) for k, v in validator.speed.items() if k != "loss"},
        seconds=seconds,
    )


def pr_figure(evaluation: Evaluation, max_classes: int = 12):
    """A plotly PR curve: thin lines per class (the most frequent ones), the mean in bold."""
    import plotly.graph_objects as go

    fig = go.Figure()
    order = evaluation.per_class.sort_values("Instances", ascending=False)["Class"].tolist()
    for name in order[:max_classes]:
        if name in evaluation.precision_by_class:
            fig.add_trace(
                go.Scatter(
                    x=evaluation.recall_axis,
                    y=evaluation.precision_by_class[name],
                    mode="lines",
                    name=name,
                    line={"width": 1},
                    opacity=0.6,
                )
            )
    fig.add_trace(
        go.Scatter(
            x=evaluation.recall_axis,
            y=evaluation.mean_precision,
            mode="lines",
            name=f"all classes (mAP50 {evaluation.map50:.3f})",
            line={"width": 4, "color": "#1565c0"},
        )
    )
    fig.update_layout(
        xaxis={"title": "Recall", "range": [0, 1]},
        yaxis={"title": "Precision", "range": [0, 1.02]},
        title="Precision–recall curve at IoU 0.5",
        legend={"orientation": "v"},
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        height=420,
    )
    return fig
