"""Stored U-Net runs: a real (tiny) training run is stored and replayed; any changed setting or data trains again."""

from __future__ import annotations

import os

# See tests/test_segmentation.py: sleeping (not spinning) OpenMP threads, if torch is not loaded yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cvdemo import run_store, warmup  # noqa: E402
from cvdemo import segmentation as seg  # noqa: E402
from cvdemo.jobs import BackgroundJob  # noqa: E402

TINY_MODEL = seg.ModelConfig(img_size=64)
TINY_RECIPE = seg.TrainConfig(frozen_epochs=1, finetune_epochs=1, batch_size=4)


@pytest.fixture(scope="module")
def pets() -> seg.SegDataset:
    full = seg.load_sample()
    return seg.SegDataset(full.samples[:8], list(full.class_names), [], "8 sample pets")


@pytest.fixture(scope="module")
def trained(pets) -> seg.Trainer:
    trainer, started_here = seg.runs.start(pets, 2, TINY_MODEL, TINY_RECIPE)
    assert started_here
    trainer.join(timeout=300)
    assert trainer.status == "done", trainer.error
    return trainer


def test_the_trainer_is_a_background_job(trained):
    assert isinstance(trained, BackgroundJob)
    assert trained.progress == 1.0 and trained.seconds > 0 and trained.phase.startswith("epoch 2 of 2")


def test_a_finished_run_is_stored_and_replayed_as_it_was(pets, trained):
    assert trained.run_key in run_store.store()
    replay = seg.runs.load(pets, 2, TINY_MODEL, TINY_RECIPE)
    assert replay is not None and replay is not trained
    assert replay.status == "done" and replay.stored_at is not None and replay.run_key == trained.run_key
    assert [r.stage for r in replay.history] == ["frozen encoder", "fine-tune"]
    assert [r.val_foreground_iou for r in replay.history] == [r.val_foreground_iou for r in trained.history]
    assert np.array_equal(replay.metrics.matrix, trained.metrics.matrix)
    assert [s.name for s in replay.val_samples] == [s.name for s in trained.val_samples]
    assert 0 < replay.seconds <= trained.seconds  # its training time (the live one also counts the storing)
    photo = pets.samples[-1].image
    assert np.array_equal(replay.model.predict(photo), trained.model.predict(photo))  # the trained weights
    assert replay.model.config.metrics["val_foreground_iou"] == pytest.approx(trained.metrics.foreground_iou, abs=1e-3)


def test_a_changed_setting_or_changed_data_is_not_the_stored_run(pets, trained):
    assert seg.runs.load(pets, 2, TINY_MODEL, seg.TrainConfig(frozen_epochs=1, finetune_epochs=1, batch_size=4,
                                                               lr=1e-3)) is None
    assert seg.runs.load(pets, 3, TINY_MODEL, TINY_RECIPE) is None  # another held-out split
    assert seg.runs.load(pets, 2, seg.ModelConfig(img_size=96), TINY_RECIPE) is None
    assert seg.runs.load(pets, 2, seg.ModelConfig(img_size=64, architecture="FPN"), TINY_RECIPE) is None
    assert seg.runs.load(pets, 2, seg.ModelConfig(img_size=64, pretrained_encoder=False), TINY_RECIPE) is None
    first = pets.samples[0]
    mask = first.mask.copy()
    mask[:4, :4] = np.where(mask[:4, :4] == 1, 2, 1)
    edited = seg.SegDataset([seg.SegSample(first.name, first.image, mask), *pets.samples[1:]],
                            list(pets.class_names), [], pets.source)
    assert seg.runs.load(edited, 2, TINY_MODEL, TINY_RECIPE) is None  # one mask's corner differs
    same = seg.SegDataset(list(pets.samples), list(pets.class_names), [], "another name")
    assert seg.runs.load(same, 2, TINY_MODEL, TINY_RECIPE) is not None  # the same content


def test_a_random_encoder_run_ignores_the_settings_it_does_not_use(pets):
    scratch = seg.ModelConfig(img_size=64, pretrained_encoder=False)
    a = seg.TrainConfig(frozen_epochs=1, finetune_epochs=1, encoder_lr_factor=0.1)
    b = seg.TrainConfig(frozen_epochs=0, finetune_epochs=2, encoder_lr_factor=0.3)
    assert seg.runs.run_key(pets, 2, scratch, a) == seg.runs.run_key(pets, 2, scratch, b)  # trains the same


def test_a_changed_setting_trains_again_and_stores_its_own_run(pets, trained):
    recipe = seg.TrainConfig(frozen_epochs=0, finetune_epochs=1, batch_size=4)
    trainer = seg.runs.get_or_train(pets, 2, TINY_MODEL, recipe)
    assert trainer.stored_at is None and trainer.run_key != trained.run_key  # trained now
    again = seg.runs.get_or_train(pets, 2, TINY_MODEL, recipe)
    assert again.stored_at is not None and again.run_key == trainer.run_key  # read back, not trained
    assert seg.runs.load(pets, 2, TINY_MODEL, TINY_RECIPE) is not None  # the first run is still there


def test_two_sessions_starting_the_same_run_share_one_trainer(pets):
    recipe = seg.TrainConfig(frozen_epochs=0, finetune_epochs=3, batch_size=2, seed=7)
    first, here = seg.runs.start(pets, 2, TINY_MODEL, recipe)
    second, second_here = seg.runs.start(pets, 2, TINY_MODEL, recipe)
    assert here and not second_here and second is first
    assert seg.runs.running(pets, 2, TINY_MODEL, recipe) is first
    first.stop()
    first.join(timeout=120)
    assert first.status == "stopped"
    assert seg.runs.load(pets, 2, TINY_MODEL, recipe) is None  # a stopped run is not stored


def test_the_default_run_is_a_last_warm_up_step_and_matches_the_page():
    assert list(warmup.STEPS)[-2:] == ["segmentation default run", "compression default run"]
    dataset, n_val, model, recipe = seg.runs.page_default()
    assert (n_val, model.img_size, model.architecture, model.pretrained_encoder) == (6, 96, "Unet", True)
    assert recipe == seg.TrainConfig() and len(dataset.samples) == 26


def test_held_out_views_are_computed_once_per_run(trained):
    views = trained.held_out_views
    assert views is trained.held_out_views  # kept on the trainer: a page rerun does not predict again
    assert [s.name for s, _, _ in views] == [s.name for s in trained.val_samples]
    n = len(trained.model.class_names)
    for sample, pred, iou in views:
        assert pred.shape == sample.mask.shape
        assert iou == seg.SegMetrics(trained.model.class_names, seg.confusion(pred, sample.mask, n)).foreground_iou


def test_a_run_is_recorded_once_and_a_new_trainer_is_never_taken_for_an_old_one(trained):
    from dataclasses import replace

    from cvdemo.segmentation.page_state import record_run

    runs: list = []
    assert record_run(runs, trained) and not record_run(runs, trained)  # once
    assert runs[0].is_of(trained) and runs[0].number == 1
    runs[0] = replace(runs[0], trainer=lambda: None)  # as if its trainer was freed and this one took its address
    assert not runs[0].is_of(trained)
    assert record_run(runs, trained) and runs[1].number == 2
