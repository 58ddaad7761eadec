"""The transfer-learning ladder on real EfficientNet-Lite0 weights and hymenoptera images.

One short ladder run (10 ants + 10 bees to learn from, 40 validation images held out, few epochs)
is shared by the tests that read its table, its optimizer, its network and its exported model.
Accuracies are asserted loosely (any CPU, any runtime); structure exactly.
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from cvdemo import cache as shared
from cvdemo import fewshot as fs
from cvdemo import text
from cvdemo.backbones import create_frozen
from cvdemo.datasets import packaged_images
from cvdemo.images import fingerprint, load_image

FACTOR = 5  # not the default, so the ratio test means something


@pytest.fixture(scope="module")
def extractor():
    return shared.shared(fs.FeatureExtractor, fs.DEFAULT_BACKBONE, None, True)


@pytest.fixture(scope="module")
def train():
    return [(load_image(p), label) for label, p in fs.sample_examples(10)]


@pytest.fixture(scope="module")
def test_set():
    return [(load_image(p), label) for label, p in fs.sample_examples(20, "val")]


@pytest.fixture(scope="module")
def run(extractor, train, test_set):
    config = fs.LadderConfig(head_epochs=3, unfreeze_epochs=2, lr_factor=FACTOR, seed=0)
    return fs.LadderRun(train, test_set, config, extractor=extractor).run()


def _tiny(color) -> Image.Image:
    return Image.new("RGB", (32, 32), color)


# --- the table ------------------------------------------------------------------------------------


def test_ladder_table_shows_all_four_rungs_on_held_out_images(run):
    table = run.table()
    assert list(table["method"]) == ["knn", "linear_probe", "head", "unfreeze"]
    assert {"method", "accuracy", "seconds", "trainable_params", "n", "ci_low", "ci_high"} <= set(table.columns)
    assert (table["n"] == 40).all()  # every rung on the same 40 held-out validation images
    assert table["accuracy"].between(0, 1).all() and (table["seconds"] >= 0).all()
    assert (table["ci_low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["ci_high"]).all()
    # frozen ImageNet features separate ants from bees well above chance with 10 examples each
    assert table.set_index("method").loc[["knn", "linear_probe"], "accuracy"].min() >= 0.7
    params = dict(zip(table["method"], table["trainable_params"]))
    assert params["knn"] == 0 and params["linear_probe"] == 1280 + 1 and params["head"] == 2 * 1280 + 2
    network = run.network
    unfrozen = sum(p.numel() for s in network.unfrozen_stages for p in s.parameters())
    assert params["unfreeze"] == unfrozen + params["head"] > 100_000
    assert all(len(r.per_class) == 2 and r.confusion.sum() == 40 for r in run.results)
    assert [h.epoch for h in run.history if h.method == "head"] == [1, 2, 3]
    assert [h.epoch for h in run.history if h.method == "unfreeze"] == [1, 2]


def test_transfer_ladder_interface(extractor, train, test_set):
    table = fs.transfer_ladder(train, test_set, methods=("knn", "linear_probe"), seed=0, lr_factor=10,
                               extractor=extractor)
    assert list(table["method"]) == ["knn", "linear_probe"]
    assert {"method", "accuracy", "seconds", "trainable_params"} <= set(table.columns)


# --- unfreezing: parameter groups, frozen layers untouched ------------------------------------------


def test_unfreezing_uses_parameter_groups_with_the_stated_ratio(run):
    groups = run.optimizers["unfreeze"].param_groups
    assert len(groups) >= 2 and groups[0]["name"] == "new head"
    head_lr = groups[0]["initial_lr"]  # the scheduler decays "lr"; "initial_lr" is what was set
    assert head_lr == pytest.approx(run.config.finetune_lr)
    for group in groups[1:]:
        assert head_lr / group["initial_lr"] == pytest.approx(FACTOR)
    names = [g["name"] for g in groups[1:]]
    assert names == [s.name for s in run.network.unfrozen_stages] == ["block group 7", "head convolution"]
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert in_groups == {id(p) for p in run.network.trainable_parameters()}


def test_frozen_layers_did_not_change_and_unfrozen_ones_did(run):
    pretrained = shared.shared(create_frozen, fs.DEFAULT_BACKBONE, True, 0).state_dict()
    network = run.network
    trainable = {name for name, p in network.backbone.named_parameters() if p.requires_grad}
    tuned = network.backbone.state_dict()
    frozen = [k for k in tuned if k not in trainable]
    assert len(frozen) > 200
    for key in frozen:  # weights of frozen stages and every BatchNorm statistic, unfrozen stages' included
        assert torch.equal(tuned[key], pretrained[key]), key
    assert any(not torch.equal(tuned[k], pretrained[k]) for k in trainable)


def test_stopping_keeps_what_was_done(extractor, train, test_set):
    ladder = fs.LadderRun(train, test_set, fs.LadderConfig(head_epochs=4, unfreeze_epochs=2), extractor=extractor)
    record = ladder._record

    def stop_after_two(r):
        record(r)
        if r.method == "head" and r.epoch == 2:
            ladder.stop()

    ladder._record = stop_after_two
    ladder.run()
    assert ladder.status == "stopped"
    assert [r.method for r in ladder.results] == ["knn", "linear_probe", "head"]
    head = ladder.results[-1]
    assert head.stopped and (head.epochs_done, head.epochs_planned) == (2, 4) and head.accuracy.n == 40


def test_same_seed_same_run(extractor, train, test_set):
    def once():
        config = fs.LadderConfig(methods=("head",), head_epochs=2, seed=3)
        return fs.LadderRun(train, test_set, config, extractor=extractor, bank=fs.ViewBank(extractor)).run()

    a, b = once(), once()
    assert [h.train_loss for h in a.history] == [h.train_loss for h in b.history]
    assert (a.results[0].y_pred == b.results[0].y_pred).all()


# --- bad input: a sentence, not a traceback -------------------------------------------------------


@pytest.mark.parametrize(
    "train_labels, test_labels, settings, message",
    [
        (["a", "a"], ["a"], {}, "at least 2 classes"),
        (["a", "a", "b"], ["a"], {}, "'b' has only 1 image"),
        (["a", "b"], ["a", "b"], {"head_epochs": 0}, "at least 1 epoch"),
        (["a", "b"], ["a", "b"], {"unfreeze_epochs": 0}, "at least 1 epoch"),
        (["a", "b"], ["a", "b"], {"lr_factor": 0.5}, "factor must be at least 1"),
        (["a", "b"], ["a", "b"], {"unfreeze_stages": 99}, "Cannot unfreeze 99 stages: efficientnet_lite0 has only 9"),
        (["a", "b"], ["a", "c"], {}, "'c' has held-out images but no training images"),
        (["a", "b"], [], {}, "no held-out images"),
        (["a", "b"], ["a", "b"], {"start": "linear_probe", "head_hidden": 64}, "needs a linear head"),
    ],
)
def test_bad_input_gets_a_clear_message(extractor, train_labels, test_labels, settings, message):
    train = [(_tiny((i * 40, 0, 0)), label) for i, label in enumerate(train_labels)]
    test = [(_tiny((0, i * 40, 0)), label) for i, label in enumerate(test_labels)]
    with pytest.raises(fs.LadderError, match=message):
        fs.transfer_ladder(train, test, extractor=extractor, **settings)


def test_network_refuses_too_many_stages_and_a_small_factor():
    backbone = create_frozen(fs.DEFAULT_BACKBONE, False, 0)
    with pytest.raises(fs.LadderError, match="this backbone has 9"):
        fs.fine_tune_network(backbone, fs.classifier_head(1280, 2), 10)
    network = fs.fine_tune_network(backbone, fs.classifier_head(1280, 2), 2)
    with pytest.raises(fs.LadderError, match="at least 1"):
        network.parameter_groups(1e-3, 0.9)


def test_stages_run_in_sequence_give_the_backbone_output():
    backbone = create_frozen(fs.DEFAULT_BACKBONE, False, 0)
    network = fs.fine_tune_network(backbone, fs.classifier_head(1280, 2), 3)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        split = network.trainable_part(network.frozen_part(x))
        whole = network(x)
    assert torch.allclose(split, whole, atol=1e-5)


def test_linear_probe_start_reproduces_the_probe(run):
    probe = run._probe
    head = fs.head_from_linear_probe(probe, run._X.shape[1])
    with torch.no_grad():
        logits = head(torch.from_numpy(run._X_test)).numpy()
    assert (logits.argmax(1) == probe.predict(run._X_test)).all()


# --- export and re-import --------------------------------------------------------------------------


def test_safetensors_export_loads_back_and_predicts_the_same(run, test_set):
    classifier = run.classifier()
    images = [img for img, _ in test_set[:6]]
    loaded = fs.load_classifier(classifier.to_safetensors(), "ladder.safetensors")
    assert loaded.classes == ["ants", "bees"] and loaded.spec.unfrozen_stages == 2
    assert np.abs(loaded.predict_proba(images) - classifier.predict_proba(images)).max() < 1e-4


def test_onnx_export_runs_accelerated_after_parity_and_loads_back(run, test_set):
    classifier = run.classifier()
    images = [img for img, _ in test_set[:8]]
    data = classifier.to_onnx(images)
    accelerated = classifier.accelerate()
    assert accelerated.accelerated and accelerated.parity.passed and accelerated.parity.images == 8
    loaded = fs.load_classifier(data, "ladder.onnx")
    assert isinstance(loaded, fs.OnnxClassifier) and loaded.classes == ["ants", "bees"]
    reference = run.classifier().predict_proba(images)  # a fresh PyTorch copy
    assert np.abs(loaded.predict_proba(images) - reference).max() < 1e-3


def test_model_files_that_are_refused(run):
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2)}, buffer)
    with pytest.raises(fs.ModelFileError, match="pickle"):
        fs.load_classifier(buffer.getvalue(), "model.safetensors")
    with pytest.raises(fs.ModelFileError, match="pickle"):
        fs.load_classifier(b"\x80\x04\x95junk", "model.pth")
    with pytest.raises(fs.ModelFileError, match="empty"):
        fs.load_classifier(b"", "model.onnx")
    with pytest.raises(fs.ModelFileError, match="neither"):
        fs.load_classifier(b"certainly not a model", "notes.txt")
    from safetensors.torch import save

    with pytest.raises(fs.ModelFileError, match="not a classifier exported by this page"):
        fs.load_classifier(save({"w": torch.zeros(3)}), "other.safetensors")
    # a safetensors header length whose first byte is 0x80 (pickle's PROTO opcode) is still safetensors
    unlucky = next(data for size in range(512) if (data := save({"w": torch.zeros(3)}, {"pad": "x" * size}))[0] == 0x80)
    with pytest.raises(fs.ModelFileError, match="not a classifier exported by this page"):
        fs.load_classifier(unlucky, "other.safetensors")
    classifier = run.classifier()
    state = {k: v.detach().clone().contiguous() for k, v in classifier.module.state_dict().items()}
    state["head.net.weight"][0] += 0.05  # a changed model no longer reproduces its recorded outputs
    from cvdemo.fewshot.model_io import FORMAT_KEY

    tampered = save(state, metadata={FORMAT_KEY: classifier.spec.to_json()})
    with pytest.raises(fs.ModelFileError, match="does not reproduce"):
        fs.load_classifier(tampered, "tampered.safetensors")


# --- evaluation plans, cross-validation, accuracy vs shots, augmentation -----------------------------


def test_plan_evaluation():
    plan = fs.plan_evaluation(["a"] * 10 + ["b"] * 10, seed=1)
    assert plan.kind == "held-out split" and len(plan.folds) == 1
    train, test = plan.folds[0]
    assert len(test) == 6 and not set(train) & set(test)
    plan = fs.plan_evaluation(["a"] * 3 + ["b"] * 4)
    assert plan.kind == "cross-validation" and len(plan.folds) == 3
    assert sorted(i for _, test in plan.folds for i in test) == list(range(7))  # every image held out once
    assert "leave-one-out within the smallest class" in plan.description
    with pytest.raises(fs.LadderError, match="'b' has only 1 image"):
        fs.plan_evaluation(["a", "a", "b"])
    with pytest.raises(fs.LadderError, match="at least 2 classes"):
        fs.plan_evaluation(["a", "a", "a"])


def test_held_out_data_splits_the_examples_or_tests_on_the_validation_images():
    images = [Image.new("RGB", (8, 8), (i, 0, 0)) for i in range(20)]
    labels, digests = ["ants"] * 10 + ["bees"] * 10, [f"d{i}" for i in range(20)]
    split = fs.held_out_data(images, labels, digests, seed=1)
    assert not split.cross_validated and len(split.test) == len(split.test_digests) == 6
    assert sorted(split.train_digests + split.test_digests) == sorted(digests)
    cv = fs.held_out_data(images[:7], labels[7:14], digests[:7])
    assert cv.cross_validated and not cv.train and cv.images == images[:7]
    validation = [(images[0], "ANTS", "d0"), (images[1], "bees", "v1")]  # d0 is an example: not held out
    external = fs.held_out_data(images, labels, digests, validation=validation)
    assert external.plan is None and external.test == [(images[1], "bees")] and external.test_digests == ["v1"]
    assert external.train == list(zip(images, labels)) and "1 ants/bees validation images" in external.description


def test_cross_validated_ladder_pools_every_fold(extractor, train):
    images = [img for img, _ in train[:3] + train[-3:]]
    labels = [label for _, label in train[:3] + train[-3:]]
    plan = fs.plan_evaluation(labels)
    job = fs.CrossValidatedLadder(images, labels, [fingerprint(i) for i in images], plan,
                                  fs.LadderConfig(methods=("knn", "linear_probe")), extractor=extractor)
    job.run()
    assert [r.accuracy.n for r in job.results] == [6, 6] and job.status == "done"
    assert len(job.table()) == 2


def test_accuracy_vs_shots_for_the_ladder(extractor, train, test_set):
    held_out = test_set[:10] + test_set[-10:]
    run = fs.ShotsRun(train, [fingerprint(i) for i, _ in train], held_out,
                      [fingerprint(i) for i, _ in held_out], shots=(1, 2, 50), repeats=2,
                      config=fs.LadderConfig(methods=("knn", "linear_probe", "head"), head_epochs=1),
                      extractor=extractor)
    assert run.shots == [1, 2]  # 50 per class: not in these 10 + 10 examples
    run.run()
    curve = run.curve()
    assert set(curve["shots"]) == {1, 2} and set(curve["method"]) == {"knn", "linear_probe", "head"}
    assert (curve["runs"] == 2).all() and (curve["n_test"] == 20).all() and curve["std"].ge(0).all()
    fig = fs.ladder_shots_figure(curve, chance=0.5)
    assert list(fig.layout.xaxis.tickvals) == [1, 2]  # no tick at 1.5 shots
    assert fs.describe_curve(curve)[0].startswith("Leader per number of training images per class")


def test_augmentation_effect_is_measured_both_ways(extractor, train, test_set):
    table = fs.augmentation_effect(train, test_set, fs.LadderConfig(head_epochs=1), copies=2,
                                   extractor=extractor, methods=("knn", "head"))
    assert list(zip(table["method"], table["augmented"])) == [
        ("knn", False), ("knn", True), ("head", False), ("head", True)]
    assert (table["n"] == 40).all() and table["accuracy"].between(0, 1).all()
    with pytest.raises(fs.LadderError, match="Switch on at least one augmentation"):
        fs.augmentation_effect(train, test_set, fs.LadderConfig(augmentation=fs.NO_AUGMENTATION))


def test_augmentation_views(train):
    image = train[0][0]
    a = fs.view_grid(image, fs.DEFAULT_AUGMENTATION, count=3, seed=1)
    b = fs.view_grid(image, fs.DEFAULT_AUGMENTATION, count=3, seed=1)
    assert [v.size for v in a] == [(224, 224)] * 3
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))  # seeded: reproducible
    assert not np.array_equal(np.asarray(a[0]), np.asarray(a[1]))  # each view differs
    plain = fs.view_grid(image, fs.NO_AUGMENTATION, count=2)
    assert np.array_equal(np.asarray(plain[0]), np.asarray(plain[1]))  # no augmentation: the eval view
    cast = replace(fs.NO_AUGMENTATION, colour_cast=0.5)
    means = [np.asarray(v, np.float32).mean((0, 1)) for v in fs.view_grid(image, cast, count=2)]
    assert np.abs(means[0] - means[1]).max() > 1  # a colour cast changes the colours
    with pytest.raises(ValueError, match="crop_scale"):
        fs.AugmentConfig(crop_scale=0)


# --- the calibrated "unlike every example" check -------------------------------------------------------


def test_out_of_distribution_check_is_calibrated_on_held_out_data(extractor, train, test_set):
    X = extractor.embed([img for img, _ in train])
    rule = fs.calibrate_ood(X, fs.reference_bank(extractor))
    assert rule.threshold >= 0 and len(rule.example_scores) == 20 and len(rule.reference_scores) >= 100
    assert rule.detected / len(rule.reference_scores) > 0.8  # most unrelated photos are flagged
    first_query = load_image(next(iter(fs.query_samples().values())))  # the page's default query: an ant
    bus = load_image(packaged_images()["bus.jpg"])
    assert not rule.flags(extractor.embed([first_query]))[0]
    assert rule.flags(extractor.embed([bus]))[0]
    held_out = rule.flags(extractor.embed([img for img, _ in test_set]))
    assert held_out.mean() <= 0.15  # held-out ants and bees are rarely called unlike the examples
    assert "conformal quantile" in rule.describe()
    with pytest.raises(ValueError, match="unrelated photos"):
        fs.calibrate_ood(X, X[:3])


def test_the_reference_bank_is_looked_for_once_built_never_again(extractor, monkeypatch):
    from cvdemo.fewshot import ood

    built = fs.reference_bank(extractor)
    monkeypatch.setattr(ood, "reference_photos", lambda: pytest.fail("listed the data sets again"))
    assert fs.reference_bank(extractor) is built  # the page asks on every rerun with a query
    monkeypatch.setattr(ood, "reference_photos", lambda: [])
    assert fs.reference_bank(object()) is None  # too few unrelated photos (another feature space): no bank


# --- intervals, literal text, one summary for duplicates ---------------------------------------------


def test_accuracy_estimates_carry_n_and_an_interval():
    e = fs.accuracy_estimate(17, 20)
    assert e.value == 0.85 and (e.low, e.high) == pytest.approx((0.6396, 0.9476), abs=1e-4)  # Wilson, 95%
    assert (fs.accuracy_estimate(0, 10).low, fs.accuracy_estimate(0, 10).high) == pytest.approx((0.0, 0.2775), abs=1e-4)
    narrow = fs.accuracy_estimate(17, 20, confidence=0.9)
    assert e.low < narrow.low < narrow.high < e.high
    assert e.describe() == f"85.0% (17/20, 95% CI {e.interval})"
    perfect = fs.accuracy_estimate(20, 20)
    assert perfect.high == pytest.approx(1.0) and perfect.low < 0.9
    assert fs.accuracy_estimate(0, 0).describe() == "no test images"
    with pytest.raises(ValueError):
        fs.accuracy_estimate(5, 3)


def test_the_summary_says_when_the_two_best_rungs_cannot_be_told_apart():
    def rung(method: str, correct: int, n: int = 20) -> fs.RungResult:
        return fs.RungResult(method, fs.accuracy_estimate(correct, n), {}, np.zeros((2, 2)), ["a", "b"],
                             np.zeros(n), 0.01, 0)

    close = fs.describe_results([rung("knn", 17), rung("linear_probe", 16)])
    assert any("95% intervals overlap" in line for line in close)
    apart = fs.describe_results([rung("knn", 20), rung("linear_probe", 2)])
    assert not any("intervals overlap" in line for line in apart)


def test_user_text_is_shown_literally():
    md = text.md_literal_light
    assert md("**bold** <b>x</b> :material/home: # title") == (
        "\\*\\*bold\\*\\* \\<b\\>x\\</b\\> :\u200bmaterial/home: # title")
    assert md("Added 8 images from the ants/bees sample set.") == "Added 8 images from the ants/bees sample set."
    assert md("1. first") == "1\\. first"
    assert text.plot_literal("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"
    fig = fs.probability_figure(["<b>x</b>", "y"], np.array([0.3, 0.7]))
    assert "&lt;b&gt;x&lt;/b&gt;" in list(fig.data[0].y)


def test_reloading_the_sample_gives_one_summary():
    examples = fs.load_sample_set(3)
    added, messages = examples.merge(fs.load_sample_set(3))
    assert added == 0 and len(messages) == 6
    assert fs.summarise_notes(messages) == ["6 images were already in the set and were skipped (3 in 'ants', 3 in 'bees')."]
    assert fs.summarise_notes(messages[:1]) == messages[:1]  # one duplicate keeps its own sentence


def test_the_same_ladder_request_is_shared_between_sessions(extractor, train, test_set):
    digests = ([fingerprint(i) for i, _ in train], [fingerprint(i) for i, _ in test_set])
    config = fs.LadderConfig(methods=("knn", "linear_probe"))
    first = fs.shared_ladder(train, test_set, config, extractor, digests)
    again = fs.shared_ladder(train, test_set, config, extractor, digests)
    assert again is first  # a class pressing "Run" at once watches one run
    first.join()
    other = fs.shared_ladder(train, test_set, fs.LadderConfig(methods=("knn",)), extractor, digests)
    assert other is not first
    other.join()
    assert first.status == other.status == "done" and len(first.results) == 2
