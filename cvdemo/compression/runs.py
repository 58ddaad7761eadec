"""Ready-made runs for the page and the Gradio demo: build the chosen variants, measure them against the original.

A finished comparison is kept in the run store (:mod:`cvdemo.run_store`): the page shows a run with
exactly its current settings at once, and the warm start measures the page's default selection.

The key of a run (:func:`run_key`) covers the model, each technique with every knob resolved from the
registry, the ONNX Runtime deployment switch, the timed runs per batch size, the evaluation set's
content (its preprocessed pixels, labels and names), this CPU (model, instruction-set flags, cores,
threads and the INT8 recipe they select: latencies and INT8 results depend on them), the pretrained
weights file and the library versions, and :data:`RECIPE_VERSION`. The stored value is plain JSON:
the comparison table, the errors, what was done to each variant (name, layers, notes), the CPU and
the run's length. The networks themselves are not stored: :func:`build_variants` rebuilds them from
the stored settings when a student wants to download one.

* :func:`start` measures in the background and stores the run; a second session asking for the same
  run watches the first one's job (:class:`ComparisonJob`).
* :func:`load` replays a stored run as a :class:`Run` (``stored_at`` says when it was measured).
* :func:`get_or_measure` is either of them in the caller's thread (the warm start).
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, ContextManager, Sequence

import pandas as pd

from cvdemo import run_store
from cvdemo.compression.cpu import CpuFeatures, cpu_features, thread_count
from cvdemo.compression.errors import CompressionError, Progress
from cvdemo.compression.evalset import EVAL_SETS, EvalSet
from cvdemo.compression.measure import compare
from cvdemo.compression.onnx_export import to_onnx_runtime
from cvdemo.compression.pretrained import backbone, backbone_onnx, input_size_of
from cvdemo.compression.quantize import int8_recipe
from cvdemo.compression.registry import get_technique
from cvdemo.compression.techniques import TechniqueSpec, make_variant
from cvdemo.compression.variant import RUNTIME_TORCH, Variant, original_variant
from cvdemo.jobs import BackgroundJob

WHAT = "compression-comparison"
RECIPE_VERSION = "1"  # bump when building or measuring changes what a run with the same settings produces

# The Compression page's first view: what a lecturer measures in class when nothing was changed
# (app_pages/compression.py takes its widget defaults from here; the warm start precomputes it).
PAGE_TECHNIQUES: tuple[str, ...] = ("int8_static",)
PAGE_EVAL_SET = next(iter(EVAL_SETS))  # ants & bees
PAGE_EVAL_LIMIT = 64
PAGE_REPEATS = 20
PAGE_DEPLOY_ORT = False

Gate = Callable[[], ContextManager]


@dataclass
class VariantRecord:
    """What was done to one variant of a stored run (its network is not stored: :func:`build_variants` remakes it)."""

    name: str
    technique: str
    runtime: str
    precision: str
    layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Run:
    """Everything one press of 'Compress and measure' produced (live, or read back from the run store)."""

    model_name: str
    variants: list[Variant] | list[VariantRecord]
    table: pd.DataFrame
    errors: dict[str, str]
    eval_description: str
    cpu: CpuFeatures
    specs: list[TechniqueSpec] = field(default_factory=list)  # knobs resolved from the registry
    deploy_ort: bool = False
    seconds: float = 0.0
    key: str | None = None  # its run store key
    stored_at: float | None = None  # Unix time it was measured, for a run read back from the store

    def stored_text(self) -> str:
        """When a stored run was measured, in the server's local time (e.g. "10:41 on 3 Dec 2026")."""
        return run_store.stored_when(self.stored_at or 0)


def build_variants(
    name: str, specs: Sequence[TechniqueSpec], deploy_ort: bool = False, progress: Progress | None = None,
    gate: Gate | None = None,
) -> tuple[list[Variant], dict[str, str]]:
    """The compressed variants of ``name`` plus the FP32 ONNX Runtime row whenever a variant runs there.

    A technique whose knobs cannot work is reported in ``errors`` (label -> sentence), the others go on.
    ``gate``: held around each technique and each export (see :func:`run_comparison`).
    """
    say = progress or (lambda fraction, text: None)
    gate = gate or nullcontext
    model = backbone(name)
    size = input_size_of(model)
    variants: list[Variant] = []
    errors: dict[str, str] = {}
    if deploy_ort or any(s.technique == "int8_static" for s in specs):
        say(0.0, "exporting the original to ONNX (once per server)")
        with gate():
            variants.append(to_onnx_runtime(model, size, onnx_model=backbone_onnx(name)))
    for i, spec in enumerate(specs):
        start, span = (i + 0.1) / len(specs), 0.9 / len(specs)
        say(start, f"applying {spec.label}")
        try:
            with gate():
                variant = make_variant(name, spec, progress=lambda f, text: say(start + span * f, f"{spec.label}: {text}"))
        except CompressionError as exc:
            errors[spec.label] = str(exc)
            continue
        variants.append(variant)
        if deploy_ort and variant.runtime == RUNTIME_TORCH and variant.run_module is None:
            say(start + span * 0.9, f"exporting {variant.name} to ONNX Runtime")
            with gate():
                variants.append(to_onnx_runtime(variant.module, size, like=variant))
    return variants, errors


def run_comparison(
    name: str,
    specs: Sequence[TechniqueSpec],
    eval_set: EvalSet,
    deploy_ort: bool = False,
    repeats: int = 20,
    progress: Progress | None = None,
    gate: Gate | None = None,
) -> Run:
    """Build the variants (first 40% of the progress) and measure them against the original.

    ``gate``: a context manager factory held around each step (one technique, one model's predictions,
    one batch size's timing); the warm start passes the compute gate's ``hold`` so pages go in between.
    """
    say = progress or (lambda fraction, text: None)
    started = time.perf_counter()
    specs = resolved(specs)
    variants, errors = build_variants(name, specs, deploy_ort, lambda f, t: say(0.4 * f, t), gate)
    if errors and not any(v.technique != "onnx_fp32" for v in variants):
        raise CompressionError(" ".join(f"{label}: {message}" for label, message in errors.items()))
    table = compare(original_variant(backbone(name)), variants, eval_set, repeats=repeats,
                    progress=lambda f, t: say(0.4 + 0.6 * f, t), gate=gate)
    return Run(name, variants, table, errors, eval_set.description, cpu_features(), specs, bool(deploy_ort),
               time.perf_counter() - started)


def resolved(specs: Sequence[TechniqueSpec]) -> list[TechniqueSpec]:
    """Each spec with every knob filled from the registry (the form a run is keyed and stored by)."""
    return [TechniqueSpec(s.technique, get_technique(s.technique).resolve(s.knobs)) for s in specs]


# --- the run store ---------------------------------------------------------------------------------------


def cpu_identity(cpu: CpuFeatures | None = None) -> dict[str, Any]:
    """What latencies and INT8 results depend on here: the CPU, its flags, the threads and the INT8 recipe."""
    cpu = cpu or cpu_features()
    return {"model": cpu.model_name, "flags": cpu.relevant_flags, "cores": cpu.cores, "threads": thread_count(),
            "int8_recipe": int8_recipe(cpu).key}


@lru_cache(maxsize=1)
def _library_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "absent"

    return " · ".join(f"{p} {of(p)}" for p in ("torch", "timm", "onnx", "onnxruntime", "torch-pruning"))


def _model_identity(name: str) -> str:
    from cvdemo import weights

    return f"{name} {weights.sha256_of(weights.resolve(name, download=False))} · {_library_versions()}"


def run_key(name: str, specs: Sequence[TechniqueSpec], eval_set: EvalSet, deploy_ort: bool = False,
            repeats: int = 20) -> str:
    """The run store key of comparing ``specs`` of model ``name`` on ``eval_set`` on this CPU."""
    settings = {
        "model": name,
        "techniques": [{"technique": s.technique, "knobs": s.knobs} for s in resolved(specs)],
        "deploy_ort": bool(deploy_ort),
        "repeats": int(repeats),
        "eval": {"images": len(eval_set), "labeled": eval_set.labeled, "description": eval_set.description},
        "cpu": cpu_identity(),
    }
    return run_store.run_key(WHAT, settings, eval_set.content_digest, _model_identity(name), RECIPE_VERSION)


def _plain(value: Any) -> Any:
    """JSON-ready: numpy / torch scalars as numbers, anything else unknown as text."""
    def default(obj: Any) -> Any:
        if hasattr(obj, "tolist"):
            return obj.tolist()
        if hasattr(obj, "item"):
            return obj.item()
        return str(obj)

    return json.loads(json.dumps(value, default=default, allow_nan=True))


def _record(variant: Variant | VariantRecord) -> dict[str, Any]:
    # Layers as columns + rows: the store sorts a dict's keys, and the layer table keeps its column order.
    columns = list(dict.fromkeys(k for row in variant.layers for k in row))
    rows = [[row.get(c) for c in columns] for row in variant.layers]
    return {"name": variant.name, "technique": variant.technique, "runtime": variant.runtime,
            "precision": variant.precision, "layer_columns": columns, "layer_rows": _plain(rows),
            "notes": [str(n) for n in variant.notes]}


def _from_record(record: dict[str, Any]) -> VariantRecord:
    columns = record["layer_columns"]
    layers = [{c: v for c, v in zip(columns, row) if v is not None} for row in record["layer_rows"]]
    return VariantRecord(record["name"], record["technique"], record["runtime"], record["precision"], layers,
                         list(record["notes"]))


def result_of(run: Run) -> dict[str, Any]:
    """A run as the run store keeps it: plain JSON (the table as records, no networks, no pickles)."""
    return {
        "model_name": run.model_name,
        "columns": list(run.table.columns),
        "table": _plain(run.table.to_dict(orient="records")),
        "errors": dict(run.errors),
        "eval_description": run.eval_description,
        "cpu": {"model_name": run.cpu.model_name, "flags": sorted(run.cpu.flags), "cores": run.cpu.cores,
                "source": run.cpu.source},
        "variants": [_record(v) for v in run.variants],
        "specs": [{"technique": s.technique, "knobs": _plain(s.knobs)} for s in run.specs],
        "deploy_ort": run.deploy_ort,
        "seconds": run.seconds,
    }


def save(run: Run, key: str) -> Run:
    """Store a finished live run under ``key`` (it keeps its networks; the store keeps the rest)."""
    run.key = key
    run_store.store().put(key, WHAT, result_of(run))
    return run


def from_stored(stored: run_store.StoredRun) -> Run:
    result = stored.result
    cpu = result["cpu"]
    return Run(
        model_name=result["model_name"],
        variants=[_from_record(v) for v in result["variants"]],
        table=pd.DataFrame.from_records(result["table"], columns=result["columns"]),
        errors=dict(result["errors"]),
        eval_description=result["eval_description"],
        cpu=CpuFeatures(cpu["model_name"], frozenset(cpu["flags"]), int(cpu["cores"]), cpu["source"]),
        specs=[TechniqueSpec(s["technique"], dict(s["knobs"])) for s in result["specs"]],
        deploy_ort=bool(result["deploy_ort"]),
        seconds=float(result["seconds"]),
        key=stored.key,
        stored_at=stored.created,
    )


def load(key: str) -> Run | None:
    """The stored run with this key as a :class:`Run` (its variants are :class:`VariantRecord`), or None."""
    stored = run_store.store().get(key)
    return None if stored is None else from_stored(stored)


class ComparisonJob(BackgroundJob):
    """One comparison measured in a background thread and stored when it is done; sessions can watch it."""

    thread_name = "cvdemo-compression"

    def __init__(self, name: str, specs: Sequence[TechniqueSpec], eval_set: EvalSet, deploy_ort: bool,
                 repeats: int, key: str, polite: bool = False) -> None:
        super().__init__()
        self.name, self.specs, self.eval_set = name, list(specs), eval_set
        self.deploy_ort, self.repeats, self.key, self.polite = deploy_ort, repeats, key, polite
        self.outcome: Run | None = None

    def _say(self, fraction: float, text: str) -> None:
        self.progress, self.phase = min(max(fraction, 0.0), 1.0), text

    def _work(self) -> None:
        gate = None
        if self.polite:  # one step at a time through the inference gate: the pages' requests go between steps
            from cvdemo import scheduler

            gate = scheduler.compute_gate().hold
        run = run_comparison(self.name, self.specs, self.eval_set, self.deploy_ort, self.repeats, self._say, gate)
        self.outcome = save(run, self.key)


def start(name: str, specs: Sequence[TechniqueSpec], eval_set: EvalSet, deploy_ort: bool = False,
          repeats: int = 20, polite: bool = False) -> tuple[ComparisonJob, bool]:
    """Measure in a background thread and store the run at its end: ``(job, started_here)``.

    When the same run is already being measured (another session, the warm start), its job is returned
    with ``started_here`` False: the caller watches it instead of measuring a second time.
    """
    key = run_key(name, specs, eval_set, deploy_ort, repeats)
    return run_store.store().start_job(
        key, lambda: ComparisonJob(name, specs, eval_set, deploy_ort, repeats, key, polite))


def running(key: str) -> ComparisonJob | None:
    """The job measuring run ``key`` right now, if any."""
    return run_store.store().running_job(key)


def get_or_measure(name: str, specs: Sequence[TechniqueSpec], eval_set: EvalSet, deploy_ort: bool = False,
                   repeats: int = 20, polite: bool = False) -> Run:
    """The stored run, else measured now (joining the job another caller started) and stored."""
    found = load(run_key(name, specs, eval_set, deploy_ort, repeats))
    if found is not None:
        return found
    job, _ = start(name, specs, eval_set, deploy_ort, repeats, polite)
    job.join()
    if job.status != "done" or job.outcome is None:
        raise RuntimeError(job.error or f"the compression run ended {job.status}")
    return job.outcome


def page_specs() -> list[TechniqueSpec]:
    """The page's default techniques with the registry's default knobs (what its cards show untouched)."""
    return [TechniqueSpec(key, {}) for key in PAGE_TECHNIQUES]


def page_default() -> tuple[str, list[TechniqueSpec], EvalSet, bool, int]:
    """The page's default run: ``(model, specs, eval set, deploy in ONNX Runtime, repeats)``.

    The model is the first one whose weights are here (the page's model picker starts there); the
    evaluation set is the process-wide one the page uses (:func:`cvdemo.cache.shared`).
    """
    from cvdemo import cache
    from cvdemo.compression.evalset import standard_eval_set
    from cvdemo.compression.pretrained import model_choices

    ready = [m["name"] for m in model_choices() if m["available"]]
    if not ready:
        raise FileNotFoundError("no ImageNet classifier weights for the Compression page")
    name = ready[0]
    eval_set = cache.shared(standard_eval_set, name, PAGE_EVAL_SET, PAGE_EVAL_LIMIT)
    return name, page_specs(), eval_set, PAGE_DEPLOY_ORT, PAGE_REPEATS
