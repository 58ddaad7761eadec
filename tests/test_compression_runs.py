"""Stored compression runs: a real (small) comparison is stored and replayed without rebuilding; any changed
setting, evaluation set or CPU measures again; the warm start measures the page's default selection last."""

from __future__ import annotations

import pandas as pd
import pytest

from cvdemo import compression as cx
from cvdemo import run_store, warmup
from cvdemo.compression import runs
from cvdemo.jobs import BackgroundJob

MODEL = "efficientnet_lite0"
SPECS = [cx.TechniqueSpec("prune_unstructured", {"amount": 0.3})]
REPEATS = 3


@pytest.fixture(scope="module")
def eval_set() -> cx.EvalSet:
    return cx.standard_eval_set(MODEL, "hymenoptera", 8)


@pytest.fixture(scope="module")
def live(eval_set) -> cx.Run:
    job, started_here = runs.start(MODEL, SPECS, eval_set, repeats=REPEATS)
    assert started_here and isinstance(job, BackgroundJob)
    job.join(timeout=600)
    assert job.status == "done", job.error
    assert job.progress == 1.0 and job.outcome is not None and job.outcome.stored_at is None
    return job.outcome


def test_a_stored_run_replays_the_same_table_without_building_or_measuring(eval_set, live, monkeypatch):
    calls = []
    monkeypatch.setattr(runs, "make_variant", lambda *a, **k: calls.append("build"))
    monkeypatch.setattr(runs, "compare", lambda *a, **k: calls.append("measure"))
    assert live.key in run_store.store()
    replay = runs.get_or_measure(MODEL, SPECS, eval_set, repeats=REPEATS)
    assert calls == []  # nothing rebuilt, nothing measured
    assert replay.stored_at is not None and replay.key == live.key
    assert list(replay.table["model"]) == ["Original (FP32, PyTorch)", "Unstructured 30% (global), PyTorch"]
    pd.testing.assert_frame_equal(replay.table, live.table, check_dtype=False)  # accuracies, intervals, latencies
    assert replay.table["top-1 n"].tolist() == [8, 8] and replay.eval_description == live.eval_description
    # what the page draws and explains: per-layer records, notes, the CPU, the resolved knobs
    stored, measured = replay.variants[0], live.variants[0]
    assert isinstance(stored, runs.VariantRecord) and stored.name == measured.name and stored.notes == measured.notes
    assert pd.DataFrame(stored.layers).equals(pd.DataFrame(measured.layers)) and len(stored.layers) > 10
    assert replay.cpu == live.cpu and replay.errors == live.errors == {}
    assert [(s.technique, s.knobs) for s in replay.specs] == [("prune_unstructured", {"amount": 0.3, "scope": "global"})]


def test_the_stored_value_is_plain_json_and_no_networks(live):
    stored = run_store.store().get(live.key)
    assert stored.arrays == {} and stored.what == runs.WHAT
    assert stored.result["table"][1]["model"] == "Unstructured 30% (global), PyTorch"


def test_knobs_left_at_their_defaults_are_the_same_run(eval_set, live):
    # the registry fills the missing knob: the page (every knob given) and the warm start (none) agree
    spelled_out = [cx.TechniqueSpec("prune_unstructured", {"amount": 0.3, "scope": "global"})]
    assert runs.run_key(MODEL, spelled_out, eval_set, repeats=REPEATS) == live.key
    assert runs.run_key(MODEL, [cx.TechniqueSpec("prune_unstructured")], eval_set, repeats=REPEATS) == live.key


def test_a_changed_knob_technique_eval_set_or_setting_is_not_the_stored_run(eval_set, live, monkeypatch):
    def stored(specs=SPECS, evals=eval_set, deploy=False, repeats=REPEATS):
        return runs.load(runs.run_key(MODEL, specs, evals, deploy, repeats))

    assert stored() is not None
    assert stored(specs=[cx.TechniqueSpec("prune_unstructured", {"amount": 0.5})]) is None
    assert stored(specs=[cx.TechniqueSpec("prune_unstructured", {"scope": "layer"})]) is None
    assert stored(specs=[cx.TechniqueSpec("fp16")]) is None
    assert stored(specs=[*SPECS, cx.TechniqueSpec("fp16")]) is None
    assert stored(evals=cx.standard_eval_set(MODEL, "hymenoptera", 9)) is None  # another limit
    assert stored(evals=cx.standard_eval_set(MODEL, "coco128", 8)) is None  # another set
    assert stored(deploy=True) is None and stored(repeats=REPEATS + 1) is None
    # latencies and INT8 results depend on the CPU: another instruction set is another run
    other_cpu = cx.CpuFeatures("an AVX2 laptop", frozenset({"avx", "avx2", "fma"}), 4)
    monkeypatch.setattr(runs, "cpu_features", lambda: other_cpu)
    assert stored() is None


def test_two_callers_with_the_same_settings_share_one_job(eval_set):
    specs = [cx.TechniqueSpec("prune_unstructured", {"amount": 0.4})]
    first, started_here = runs.start(MODEL, specs, eval_set, repeats=REPEATS)
    second, second_started = runs.start(MODEL, specs, eval_set, repeats=REPEATS)
    assert started_here and not second_started and second is first
    assert runs.running(first.key) in (first, None)  # None once it finished
    first.join(timeout=600)
    assert first.status == "done", first.error
    assert runs.running(first.key) is None and runs.load(first.key) is not None


def test_a_failed_run_is_not_stored(eval_set):
    specs = [cx.TechniqueSpec("prune_unstructured", {"amount": 1.0})]  # removes every weight: refused
    with pytest.raises(RuntimeError, match="would remove every weight"):
        runs.get_or_measure(MODEL, specs, eval_set, repeats=REPEATS)
    assert runs.load(runs.run_key(MODEL, specs, eval_set, repeats=REPEATS)) is None


def test_the_default_measurement_is_the_last_warm_up_step_and_is_the_pages_default():
    assert list(warmup.STEPS)[-1] == "compression default run"
    name, specs, eval_set, deploy, repeats = runs.page_default()
    assert name == MODEL and [s.technique for s in specs] == list(runs.PAGE_TECHNIQUES) == ["int8_static"]
    assert len(eval_set) == runs.PAGE_EVAL_LIMIT and not deploy and repeats == runs.PAGE_REPEATS
    # the same process-wide evaluation set the page uses, so the page finds the warm start's run
    assert runs.page_default()[2] is eval_set
