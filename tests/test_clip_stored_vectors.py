"""CLIP's ensemble class vectors go to the run store: a restarted server reads them instead of encoding 80 prompts a label."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from cvdemo import clip, run_store

zero_shot = importlib.import_module("cvdemo.clip.zero_shot")  # the module (the package exports a function of that name)

TINY = dict(
    embed_dim=64,
    vision_cfg={"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    text_cfg={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
)


@pytest.fixture()
def tiny(monkeypatch, tmp_path) -> clip.ClipModel:
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(tmp_path))
    return clip.ClipModel("clip", pretrained=False, arch="ViT-B-32", cache_dir=False, model_kwargs=TINY)


def _restart(monkeypatch) -> None:
    """What a new server process starts with: no class vectors in memory."""
    monkeypatch.setattr(zero_shot, "_class_vectors", {})


def test_ensemble_class_vectors_survive_a_restart(tiny, monkeypatch):
    monkeypatch.setattr(tiny, "name", "tiny-clip-fixed-weights")  # a trained engine's stable identity
    labels = ["a cactus", "a kettle", "a glacier", "a tram", "a heron"]  # 5 x 80 prompts: stored
    first = clip.class_text_embeddings(tiny, labels, clip.ENSEMBLE)
    assert len(run_store.store().entries()) == 1
    _restart(monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(tiny, "encode_texts", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-encoded")))
        steps = []
        again = clip.class_text_embeddings(tiny, labels, clip.ENSEMBLE, progress=lambda d, t: steps.append((d, t)))
    np.testing.assert_array_equal(again, first)
    assert steps[-1] == (1, 1)
    _restart(monkeypatch)
    other = clip.class_text_embeddings(tiny, labels[:4] + ["a lighthouse"], clip.ENSEMBLE)  # other labels: encoded
    np.testing.assert_allclose(other[:4], first[:4], atol=1e-5)
    assert len(run_store.store().entries()) == 2


def test_few_prompts_and_random_init_engines_stay_in_memory_only(tiny, monkeypatch):
    clip.class_text_embeddings(tiny, ["a cactus", "a kettle"], "{}")  # 2 prompts: quick to encode again
    clip.class_text_embeddings(tiny, ["a cactus", "a kettle", "a glacier", "a tram", "a heron"], clip.ENSEMBLE)
    assert run_store.store().entries() == []  # random weights differ in every process: never stored
