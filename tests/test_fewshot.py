"""cvdemo.fewshot: real EfficientNet-Lite0 features on hymenoptera, kNN against scikit-learn, bad inputs.

Embeddings are computed once per module (a 10-per-class training pool plus the 153 validation
images, pretrained and random-init); everything else reuses them or uses a fake encoder.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from cvdemo import fewshot as fs
from cvdemo.archives import ArchiveError
from cvdemo.datasets import dataset_path, image_folder
from cvdemo.images import fingerprint, load_image
from cvdemo.weights import WeightsUnavailable

POOL_PER_CLASS = 10  # training images we embed; 5-shot sets are drawn from these


# --- fixtures: real images and features, computed once ----------------------------------------


@pytest.fixture(scope="module")
def pool():
    pairs = fs.sample_examples(POOL_PER_CLASS, "train")
    return [load_image(p) for _, p in pairs], [label for label, _ in pairs]


@pytest.fixture(scope="module")
def val():
    pairs = image_folder(dataset_path("hymenoptera_data") / "val")
    return [load_image(p) for p, _ in pairs], [label for _, label in pairs]


@pytest.fixture(scope="module")
def extractor():
    return fs.FeatureExtractor("efficientnet_lite0")


@pytest.fixture(scope="module")
def features(extractor, pool, val):
    return extractor.embed(pool[0]), extractor.embed(val[0])


@pytest.fixture(scope="module")
def random_features(pool, val):
    random_init = fs.FeatureExtractor("efficientnet_lite0", pretrained=False)
    return random_init.embed(pool[0]), random_init.embed(val[0])


class FakeEncoder:
    """Stands in for the CLIP page's image tower: counts the images it encodes."""

    name = "fake-encoder"

    def __init__(self) -> None:
        self.calls = 0
        self.images = 0

    def encode_images(self, images, batch_size=32, progress=None):
        self.calls += 1
        self.images += len(images)
        # mean colour plus size: enough to tell images apart, and deterministic
        return np.array([[*np.asarray(img, np.float32).mean((0, 1)), img.width, img.height] for img in images])


def _png(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    return buf.getvalue()


# --- quality bar --------------------------------------------------------------------------------


def test_five_shot_hymenoptera_val_accuracy(features, random_features, pool, val, record_property):
    """5 training images per class (20 random draws from a 10-per-class pool) -> all 153 val images."""
    (X_pool, X_val), (R_pool, R_val) = features, random_features
    y_pool, y_val = pool[1], val[1]
    common = dict(shots=[5], repeats=20, X_test=X_val, y_test=y_val, seed=0)
    one_nn = fs.accuracy_vs_shots(X_pool, y_pool, k=1, **common).set_index("method")["accuracy"]
    three_nn = fs.accuracy_vs_shots(X_pool, y_pool, k=3, probe=False, **common).set_index("method")["accuracy"]
    random_init = fs.accuracy_vs_shots(R_pool, y_pool, k=1, probe=False, **{**common, "X_test": R_val})
    random_acc = float(random_init["accuracy"].iloc[0])
    numbers = {
        "1-NN": float(one_nn["kNN"]),
        "3-NN": float(three_nn["kNN"]),
        "linear probe": float(one_nn["linear probe"]),
        "random-init 1-NN": random_acc,
    }
    for name, value in numbers.items():
        record_property(f"hymenoptera_5shot_val_{name}", round(value, 4))
    print("\nhymenoptera 5-shot -> val (153 images), mean of 20 draws:", {k: f"{v:.3f}" for k, v in numbers.items()})
    assert numbers["1-NN"] > 0.85 and numbers["3-NN"] > 0.85 and numbers["linear probe"] > 0.85
    assert random_acc <= 0.85 and random_acc < numbers["1-NN"] - 0.1


def test_all_pool_knn_beats_early_layers(extractor, pool):
    """The lecture's point: early stages are generic (near chance on ants vs bees), the head is specific."""
    images, y = pool
    per_layer = extractor.embed_layers(images, [0, 1, 2, None])
    loo = {layer: fs.leave_one_out_accuracy(X, y, k=3) for layer, X in per_layer.items()}
    print("\nleave-one-out by layer:", {fs.layer_key(k): round(v, 3) for k, v in loo.items()})
    assert loo[None] >= 0.8
    assert all(loo[None] > loo[stage] for stage in (0, 1, 2))


# --- feature extraction ----------------------------------------------------------------------------


def test_embed_is_normalised_batched_and_deterministic(extractor, features, pool):
    X_pool, _ = features
    assert X_pool.shape == (2 * POOL_PER_CLASS, 1280) and X_pool.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X_pool, axis=1), 1.0, atol=1e-5)
    seen = []
    from cvdemo import results

    results.process_cache().clear()  # embeddings are kept per process: empty it so the batches really run
    again = extractor.embed(pool[0][:3], batch_size=2, progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_allclose(again, X_pool[:3], atol=1e-5)  # batch size does not change features
    assert seen == [(0, 3), (2, 3), (3, 3)]
    assert extractor.embed([]).shape == (0, 1280)


def test_preprocessing_is_timms_eval_transform(extractor, pool):
    """The batched prefetcher path equals timm's standard per-image eval transform + forward."""
    import torch

    from cvdemo.backbones import eval_transform

    images = pool[0][:2]
    x = torch.stack([eval_transform(extractor._model)(img) for img in images])
    np.testing.assert_allclose(extractor.preprocess(images).numpy(), x.numpy(), atol=1e-5)
    with torch.inference_mode():
        plain = torch.nn.functional.normalize(extractor._model(x), dim=1).numpy()
    np.testing.assert_allclose(extractor.embed(images), plain, atol=1e-4)
    assert extractor.data_config["mean"] == (0.5, 0.5, 0.5)  # tf_efficientnet_lite0's own config


def test_layers_one_pass_equals_separate_extractors(extractor, pool):
    layers = extractor.layers()
    assert [info.channels for info in layers] == [16, 24, 40, 112, 320, 1280]
    assert layers[-1].index is None and "head" in layers[-1].label
    images = pool[0][:2]
    together = extractor.embed_layers(images, [2, None])
    stage3 = fs.FeatureExtractor("efficientnet_lite0", layer=2)
    assert stage3.key == "efficientnet_lite0/stage3" and stage3._model is extractor._model  # one shared model
    np.testing.assert_allclose(together[2], stage3.embed(images), atol=1e-5)
    np.testing.assert_allclose(together[None], extractor.embed(images), atol=1e-5)
    with pytest.raises(ValueError, match="does not exist"):
        fs.FeatureExtractor("efficientnet_lite0", layer=9)


@pytest.mark.parametrize("arch", ["resnet18", "convnext_tiny"])
def test_other_timm_backbones_head_and_stages(arch):
    """Random weights (no download): forward_intermediates + head equals the model's own forward."""
    import torch

    fx = fs.FeatureExtractor(arch, pretrained=False)
    img = Image.new("RGB", (120, 90), (40, 120, 200))
    both = fx.embed_layers([img], [0, None])
    with torch.inference_mode():
        direct = torch.nn.functional.normalize(fx._model(fx.preprocess([img])), dim=1).numpy()
    np.testing.assert_allclose(both[None], direct, atol=1e-4)
    assert both[0].shape == (1, fx.layers()[0].channels)
    assert fx.key.endswith("/random-init")


def test_missing_weights_are_reported_not_crashed():
    status = {s.name: s for s in fs.backbone_status()}
    assert status["efficientnet_lite0"].available and not status["efficientnet_lite0"].reason
    for name in ("resnet18", "clip"):
        if status[name].available:
            pytest.skip(f"{name} weights are on this machine")
        assert "not available" in status[name].reason and "python -m cvdemo.weights fetch" in status[name].reason
        with pytest.raises(WeightsUnavailable):
            fs.FeatureExtractor(name)
    with pytest.raises(KeyError, match="Unknown backbone"):
        fs.FeatureExtractor("alexnet")


def test_any_image_encoder_plugs_in():
    encoder = FakeEncoder()
    fx = fs.FeatureExtractor(encoder)
    X = fx.embed([Image.new("RGB", (10, 20), (255, 0, 0)), Image.new("RGB", (30, 20), (0, 0, 255))])
    assert X.shape == (2, 5) and fx.key == "fake-encoder/head"
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-6)
    assert [info.index for info in fx.layers()] == [None]
    with pytest.raises(ValueError, match="timm backbone"):
        fs.FeatureExtractor(encoder, layer=1)
    with pytest.raises(TypeError):
        fs.FeatureExtractor(42)  # type: ignore[arg-type]


# --- kNN, checked against scikit-learn ------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("weighting", ["uniform", "distance"])
def test_knn_matches_scikit_learn(metric, weighting):
    from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 16)).astype(np.float32)
    y = np.array(["cat", "dog", "owl"])[rng.integers(0, 3, 60)]
    Q = np.vstack([rng.standard_normal((9, 16)), X[:1]]).astype(np.float32)  # includes an exact match (d = 0)
    ours = fs.KNNClassifier(5, metric, weighting).fit(X, y)
    ref = KNeighborsClassifier(5, metric=metric, weights=weighting, algorithm="brute").fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(Q), ref.predict_proba(Q), atol=1e-5)
    assert list(ours.classes_) == list(ref.classes_)
    d, i = ours.kneighbors(Q)
    d_ref, i_ref = NearestNeighbors(n_neighbors=5, metric=metric, algorithm="brute").fit(X).kneighbors(Q)
    np.testing.assert_allclose(d, d_ref, atol=1e-4)
    assert (i == i_ref).mean() > 0.95  # equal up to float ties
    # X=None: each training point's neighbours without itself, like scikit-learn
    d_self, i_self = ours.kneighbors(None)
    assert not (i_self == np.arange(60)[:, None]).any()
    np.testing.assert_allclose(d_self, NearestNeighbors(n_neighbors=5, metric=metric).fit(X).kneighbors()[0], atol=1e-4)


def test_knn_edge_cases():
    X = np.array([[1, 0], [0, 1], [0.9, 0.1]], np.float32)
    knn = fs.KNNClassifier(k=10).fit(X, ["a", "b", "a"])
    assert knn.kneighbors(X[:1])[1].shape == (1, 3)  # k clamps to the examples available
    # a 1-1 tie at k=2 goes to the class of the nearer neighbour
    tie = fs.KNNClassifier(k=2).fit(X[:2], ["a", "b"])
    assert tie.predict(np.array([[0.2, 1.0]]))[0] == "b" and tie.predict(np.array([[1.0, 0.2]]))[0] == "a"
    np.testing.assert_allclose(tie.predict_proba(np.array([[0.2, 1.0]])), [[0.5, 0.5]])
    for bad in (dict(k=0), dict(metric="manhattan"), dict(weighting="rank")):
        with pytest.raises(ValueError):
            fs.KNNClassifier(**bad)
    with pytest.raises(ValueError):
        fs.KNNClassifier().fit(np.zeros((0, 2)), [])


def test_leave_one_out_matches_scikit_learn():
    from sklearn.model_selection import LeaveOneOut, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(0, 1, (15, 8)), rng.normal(1.2, 1, (15, 8))]).astype(np.float32)
    y = np.array(["a"] * 15 + ["b"] * 15)
    ours = fs.leave_one_out(X, y, k=3)
    ref = cross_val_predict(KNeighborsClassifier(3, metric="cosine"), X, y, cv=LeaveOneOut())
    assert (ours.y_pred == ref).all()
    assert ours.accuracy == pytest.approx((ref == y).mean())
    cm = fs.confusion_matrix(y, ours.y_pred, ["a", "b"])
    assert cm.sum() == 30 and np.trace(cm) == round(ours.accuracy * 30)
    with pytest.raises(ValueError):
        fs.leave_one_out(X[:1], y[:1])


def test_accuracy_vs_shots_curve():
    rng = np.random.default_rng(3)
    centres = np.eye(3, 6) * 5
    X = np.vstack([c + rng.normal(0, 0.3, (8, 6)) for c in centres]).astype(np.float32)
    y = np.repeat(["r", "g", "b"], 8)
    curve = fs.accuracy_vs_shots(X, y, shots=[1, 2, 5, 7, 8, 20], repeats=4, k=5)
    assert sorted(curve["shots"].unique()) == [1, 2, 5, 7]  # a class of 8 leaves >= 1 test image up to 7 shots
    assert set(curve["method"]) == {"kNN", "linear probe"}
    assert (curve["accuracy"] == 1.0).all() and (curve["runs"] == 4).all()
    assert curve.loc[curve["shots"] == 5, "n_test"].iloc[0] == 3 * 3
    with pytest.raises(ValueError, match="2 classes"):
        fs.accuracy_vs_shots(X[:8], y[:8])


def test_linear_probe_and_projection(features, pool):
    X, y = features[0], pool[1]
    probe = fs.linear_probe(X, y)
    assert (probe.predict(X) == np.array(y)).mean() == 1.0  # 20 points in 1280-d: separable
    assert fs.project_2d(X, "pca").shape == (20, 2)
    assert fs.project_2d(X, "tsne").shape == (20, 2)
    assert fs.project_2d(X[:2], "pca").shape == (2, 2)
    with pytest.raises(ValueError, match="at least 4"):
        fs.project_2d(X[:3], "tsne")


# --- the example set: bad input gets a sentence, nothing else is lost -----------------------------


def test_class_names_are_checked():
    examples = fs.ExampleSet()
    assert examples.add_class("  thumbs   up ") == "thumbs up"
    bad_names = [("Thumbs Up", "already a class"), ("", "name"), ("a/b", "cannot contain"), ("x" * 41, "at most")]
    for bad, message in bad_names:
        with pytest.raises(fs.ExampleSetError, match=message):
            examples.add_class(bad)
    examples.add_class("flat hand")
    with pytest.raises(fs.ExampleSetError, match="already a class"):
        examples.rename_class("flat hand", "THUMBS UP")
    assert examples.rename_class("flat hand", "fist") == "fist" and list(examples.classes) == ["thumbs up", "fist"]


def test_training_needs_two_classes_with_images():
    examples = fs.ExampleSet()
    assert "at least 2 classes" in examples.problems()[0]
    examples.add_images("ants", [("a.png", _png())])
    assert "Only one class ('ants')" in examples.problems()[0]
    examples.add_class("bees")
    assert "'bees' is still empty" in examples.problems()[0] and examples.empty_classes() == ["bees"]
    examples.add_images("bees", [("b.png", _png((250, 220, 0)))])
    examples.add_class("wasps")
    assert examples.problems() == [] and examples.empty_classes() == ["wasps"]
    items, labels = examples.labelled()
    assert labels == ["ants", "bees"] and len(items) == 2


def test_bad_images_are_reported_and_the_rest_kept(tmp_path):
    examples = fs.ExampleSet()
    huge = tmp_path / "huge.png"
    Image.new("L", (8000, 6400)).save(huge, compress_level=1)  # 51.2 megapixels: over the limit
    added, messages = examples.add_images(
        "ants",
        [
            ("ok.png", _png()),
            ("notes.txt", b"this is not a picture"),
            ("empty.jpg", b""),
            ("huge.png", huge),
            ("truncated.png", _png()[:60]),
            ("again.png", _png()),  # same pixels as ok.png
        ],
    )
    assert added == 1 and len(examples.classes["ants"]) == 1
    text = " ".join(messages)
    assert "notes.txt is not an image" in text and "empty.jpg is empty" in text
    assert "megapixel limit" in text and "truncated.png" in text and "already in 'ants'" in text
    assert all("Traceback" not in m for m in messages)


def test_large_photos_are_stored_downscaled_and_consistent():
    big = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 200, 90)).save(big, format="JPEG")
    example = fs.Example.from_source("phone.jpg", big.getvalue())
    assert max(example.image.size) == fs.STORE_MAX_SIDE
    assert fingerprint(load_image(example.data)) == example.digest  # stored bytes decode to the image
    small = fs.Example.from_source("small.png", _png())
    assert small.data == _png() and small.thumb.size == (160, 160)


def test_remove_and_merge():
    examples = fs.ExampleSet()
    examples.add_images("a", [("1.png", _png((1, 2, 3))), ("2.png", _png((4, 5, 6)))])
    first = examples.classes["a"][0]
    examples.remove_image("a", first.uid)
    assert [e.name for e in examples.classes["a"]] == ["2.png"]
    other = fs.ExampleSet()
    other.add_images("A", [("2.png", _png((4, 5, 6))), ("3.png", _png((7, 8, 9)))])
    added, messages = examples.merge(other)
    assert added == 1 and "already in 'a'" in messages[0] and list(examples.classes) == ["a"]
    examples.remove_class("a")
    assert not examples.classes


# --- embedding cache: changing k never recomputes -------------------------------------------------


def test_embedding_cache_embeds_each_image_once():
    encoder = FakeEncoder()
    fx = fs.FeatureExtractor(encoder)
    cache = fs.EmbeddingCache()
    images = [Image.new("RGB", (8, 8), (i * 20, 0, 0)) for i in range(5)]
    first = cache.embed(fx, images + [images[0]])  # a duplicate in one call is embedded once
    assert encoder.images == 5 and first.shape == (6, 5)
    again = cache.embed(fx, images[::-1])
    assert encoder.images == 5 and encoder.calls == 1  # nothing recomputed
    np.testing.assert_allclose(again[0], first[4])
    cache.embed(fx, images + [Image.new("RGB", (8, 8), (0, 9, 0))])
    assert encoder.images == 6 and cache.computed == 6
    small = fs.EmbeddingCache(max_entries=3)
    small.embed(fx, images)
    assert len(small) == 3


def test_embedding_cache_layers_share_one_pass(extractor, pool):
    cache = fs.EmbeddingCache()
    images = pool[0][:2]
    digests = [fingerprint(img) for img in images]
    per_layer = cache.embed_layers(extractor, images, digests, [0, None])
    assert cache.computed == 2 and per_layer[0].shape == (2, 16)
    head = fs.FeatureExtractor("efficientnet_lite0", layer=None)
    np.testing.assert_allclose(cache.embed(head, images, digests), per_layer[None])
    assert cache.computed == 2  # the head vectors came from the same pass


# --- export / import -------------------------------------------------------------------------------


def _small_set() -> tuple[fs.ExampleSet, fs.EmbeddingCache, FakeEncoder]:
    examples = fs.ExampleSet()
    examples.add_images("red things", [("r1.png", _png((250, 0, 0))), ("r2.png", _png((200, 10, 10)))])
    examples.add_images("blue things", [("b1.png", _png((0, 0, 250)))])
    encoder = FakeEncoder()
    cache = fs.EmbeddingCache()
    items, _ = examples.labelled()
    cache.embed(fs.FeatureExtractor(encoder), [e.image for e in items])
    return examples, cache, encoder


def test_export_import_round_trip_restores_features():
    examples, cache, _ = _small_set()
    blob = fs.export_zip(examples, cache)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    assert {"manifest.json", "embeddings.npz", "red things/r1.png", "blue things/b1.png"} <= names
    assert manifest["embeddings"]["fake-encoder/head"]["count"] == 3
    result = fs.import_zip(blob)
    assert result.messages == []
    assert {c: [e.name for e in v] for c, v in result.examples.classes.items()} == {
        "red things": ["r1.png", "r2.png"],
        "blue things": ["b1.png"],
    }
    fresh, encoder = fs.EmbeddingCache(), FakeEncoder()
    for (key, digest), vector in result.embeddings.items():
        fresh.put(key, digest, vector)
    items, _ = result.examples.labelled()
    restored = fresh.embed(fs.FeatureExtractor(encoder), [e.image for e in items], [e.digest for e in items])
    assert encoder.images == 0  # nothing recomputed after import
    np.testing.assert_allclose(restored, cache.embed(fs.FeatureExtractor(FakeEncoder()), [e.image for e in items]))


def test_import_plain_class_folders_and_path_tricks():
    blob = _zip(
        {
            "myset/ants/a1.png": _png((10, 10, 10)),
            "myset/bees/b1.png": _png((250, 250, 0)),
            "myset/bees/readme.txt": b"hello",
            "myset/bees/.DS_Store": b"\0\0",
            "../escape.png": _png(),
            "/etc/evil.png": _png(),
            "loose.png": _png((1, 1, 1)),
        }
    )
    result = fs.import_zip(blob)
    assert {c: len(v) for c, v in result.examples.classes.items()} == {"ants": 1, "bees": 1}
    text = " ".join(result.messages)
    assert "../escape.png: unsafe path" in text and "/etc/evil.png: unsafe path" in text
    assert "readme.txt is not an image" in text and "loose.png: not inside a class folder" in text
    assert ".DS_Store" not in text and result.embeddings == {}


def test_import_rejects_bombs_and_non_zips():
    with pytest.raises(ArchiveError, match="not a valid zip"):
        fs.import_zip(b"PK\x03\x04 definitely not a zip")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ants/zeros.png", b"\0" * (20 * 2**20))
    with pytest.raises(ArchiveError, match="zip bomb"):
        fs.import_zip(bomb.getvalue())
    with pytest.raises(ArchiveError, match="empty"):
        fs.import_zip(_zip({}))


def test_import_validates_manifest_and_embeddings():
    examples, cache, _ = _small_set()
    with zipfile.ZipFile(io.BytesIO(fs.export_zip(examples, cache))) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    manifest = json.loads(members["manifest.json"])
    manifest["classes"]["red things"].append({"file": "red things/missing.png", "name": "missing.png"})
    bad_npz = io.BytesIO()
    np.savez(bad_npz, vectors_0=np.array([object()], dtype=object), digests_0=np.array(["x"]))  # would need pickle
    tampered = {**members, "manifest.json": json.dumps(manifest).encode(), "embeddings.npz": bad_npz.getvalue()}
    result = fs.import_zip(_zip(tampered))
    assert len(result.examples) == 3 and result.embeddings == {}
    text = " ".join(result.messages)
    assert "missing.png is listed in manifest.json but is not in the zip" in text and "malformed" in text
    # embeddings whose digests match no image in the zip are ignored, not trusted
    wrong = io.BytesIO()
    np.savez(wrong, vectors_0=np.ones((1, 5), np.float32), digests_0=np.array(["0" * 24]))
    result = fs.import_zip(_zip({**members, "embeddings.npz": wrong.getvalue()}))
    assert result.embeddings == {} and len(result.examples) == 3
    garbage = fs.import_zip(_zip({**members, "manifest.json": b"{not json"}))
    assert "not a cvdemo few-shot manifest" in " ".join(garbage.messages) and len(garbage.examples) == 3


# --- sample data and figures ------------------------------------------------------------------------


def test_sample_set_and_query_samples(monkeypatch, tmp_path):
    pairs = fs.sample_examples(5, "train")
    assert [label for label, _ in pairs] == ["ants"] * 5 + ["bees"] * 5
    queries = fs.query_samples(2)
    assert sum("(val)" in name for name in queries) == 4 and "bus.jpg" in queries
    from cvdemo.datasets import DataUnavailable

    monkeypatch.setenv("CVDEMO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(tmp_path))
    with pytest.raises(DataUnavailable, match="hymenoptera_data"):
        fs.load_sample_set(3)
    assert "bus.jpg" in fs.query_samples()  # the packaged photos still work


def test_figures(features, pool):
    X, y = features[0], pool[1]
    proba = fs.probability_figure(["ants", "bees"], np.array([0.25, 0.75]))
    assert list(proba.data[0].y) == ["ants", "bees"] and proba.data[0].x[-1] == 0.75
    loo = fs.leave_one_out(X, y, 3)
    cm = fs.confusion_figure(fs.confusion_matrix(y, loo.y_pred, ["ants", "bees"]), ["ants", "bees"])
    assert np.asarray(cm.data[0].z).sum() == 20
    curve = fs.accuracy_vs_shots(X, y, shots=[1, 3], repeats=3)
    assert len(fs.shots_figure(curve, chance=0.5).data) == 2
    xy = fs.project_2d(X)
    emb = fs.embedding_figure(xy, y, [str(i) for i in range(20)], [Image.new("RGB", (4, 4))] * 20, query_xy=xy[0])
    assert len(emb.data) == 3 and len(emb.layout.images) == 20
    assert len(fs.layers_figure([("stage 1", 0.5), ("head", 0.9)]).data[0].x) == 2
