"""cvdemo.clip: open_clip mechanics on a tiny random CLIP, ConSE with real weights on CIFAR-10, bad input.

The CIFAR-10 subset (500 images) is embedded once per test session into a session folder that
the page and demo tests reuse through the on-disk cache (``$CVDEMO_CACHE_DIR`` points there while
these tests run).
"""

from __future__ import annotations

import hashlib
import io
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvdemo import cache, clip, weights

CIFAR = "CIFAR-10 subset (500 tiny photos, 10 classes)"
# A randomly initialised CLIP small enough to run in a second: ViT-B-32's tokenizer, 2-layer towers.
TINY = dict(
    embed_dim=64,
    vision_cfg={"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    text_cfg={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def clip_cache_root(tmp_path_factory) -> Path:
    """One cache folder for the whole session (the page and demo tests find the same one)."""
    root = tmp_path_factory.getbasetemp() / "clip_cache"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch, clip_cache_root):
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(clip_cache_root))


@pytest.fixture(scope="session")
def conse(clip_cache_root) -> clip.ConSEEngine:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CVDEMO_CACHE_DIR", str(clip_cache_root))
        return cache.shared(clip.create_engine, "conse")  # the same instance the page/demo get


@pytest.fixture(scope="session")
def cifar(conse, clip_cache_root) -> clip.ImageIndex:
    """All 500 CIFAR images embedded by ConSE (once per session; saved in the session cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CVDEMO_CACHE_DIR", str(clip_cache_root))
        index = clip.ImageIndex(conse)
        index.add(clip.sample_gallery(CIFAR).images)
    return index


@pytest.fixture(scope="module")
def tiny() -> clip.ClipModel:
    return clip.ClipModel("clip", pretrained=False, arch="ViT-B-32", cache_dir=False, model_kwargs=TINY)


def _png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, color)
    img.putpixel((0, 0), (255 - color[0], 128, 7))  # not a flat image: towers see some structure
    img.save(buf, format="PNG")
    return buf.getvalue()


COLORS = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250), (120, 60, 30)]


# --- open_clip mechanics (random init, offline) ------------------------------------------------------


def test_vit_b32_tokenizer_ships_with_open_clip_and_truncates():
    import open_clip

    tokens = open_clip.get_tokenizer("ViT-B-32")(["a photo of a dog", "ship " * 2000])
    assert tuple(tokens.shape) == (2, 77)
    assert tokens[0, 0].item() == 49406 and 49407 in tokens[0].tolist()  # <start> ... <end>
    assert tokens[1, -1].item() == 49407  # a 10,000-character text is cut to 77 tokens, still terminated


def test_clip_model_shapes_and_normalisation(tiny):
    images = [Image.open(io.BytesIO(_png(c))) for c in COLORS[:5]]
    emb = tiny.encode_images(images, batch_size=2)
    assert emb.shape == (5, 64) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])
    text = tiny.encode_texts(["a cat", "a dog", "a cat"])
    assert text.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(text[0], text[2])
    assert tiny.name == "ViT-B-32-random-init" and tiny.is_clip
    assert tiny.default_temperature == pytest.approx(0.07, rel=1e-3)  # open_clip's init: logit_scale = ln(1/0.07)


def test_clip_weights_load_from_the_registry_file(tiny, tmp_path, monkeypatch):
    """The pretrained path: a local checkpoint file from cvdemo.weights goes into open_clip."""
    from safetensors.torch import save_file

    checkpoint = tmp_path / "clip_vit_b32_laion2b.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(checkpoint))
    monkeypatch.setattr(weights, "resolve", lambda name, download=True: checkpoint)
    loaded = clip.ClipModel("clip", arch="ViT-B-32", cache_dir=False, model_kwargs=TINY)
    assert loaded.name == "clip" and "LAION-2B" in loaded.label
    images = [Image.open(io.BytesIO(_png(c))) for c in COLORS[:2]]
    np.testing.assert_allclose(loaded.encode_images(images), tiny.encode_images(images), atol=1e-5)
    np.testing.assert_allclose(loaded.encode_texts(["a ship"]), tiny.encode_texts(["a ship"]), atol=1e-5)


def test_batching_does_not_change_embeddings(tiny):
    images = [Image.open(io.BytesIO(_png(c))) for c in COLORS]
    np.testing.assert_allclose(
        tiny.encode_images(images, batch_size=4), tiny.encode_images(images, batch_size=1), atol=1e-5
    )


def test_template_ensemble_is_the_renormalised_mean_of_prompt_embeddings(tiny):
    templates = clip.template_list("ensemble")
    assert len(templates) == 80 and templates[0] == "a bad photo of a {}."
    prompts = ["a photo of a {}.", "a drawing of a {}."]
    got = clip.class_text_embeddings(tiny, ["cat", "dog"], prompts)
    for row, label in zip(got, ["cat", "dog"]):
        mean = tiny.encode_texts([p.format(label) for p in prompts]).mean(axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), atol=1e-5)
    # the full ensemble: 80 prompts per label, still one unit vector per label
    ensemble = clip.class_text_embeddings(tiny, ["cat", "dog"], "ensemble")
    assert ensemble.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(ensemble, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(ensemble, got)


def test_zero_shot_returns_cosine_softmax_and_best(tiny):
    images = [Image.open(io.BytesIO(_png(c))) for c in COLORS[:3]]
    emb = tiny.encode_images(images)
    result = clip.zero_shot(tiny, emb, ["red", "green", "blue"], templates="{}", temperature=0.05)
    expected = emb @ tiny.encode_texts(["red", "green", "blue"]).T
    np.testing.assert_allclose(result.cosine, expected, atol=1e-5)
    np.testing.assert_allclose(result.probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.probs, clip.softmax(expected, 0.05), atol=1e-6)
    assert result.best == [["red", "green", "blue"][i] for i in expected.argmax(axis=1)]
    colder = result.with_temperature(0.01)
    assert (colder.probs.max(axis=1) >= result.probs.max(axis=1) - 1e-6).all()  # lower T = sharper
    rows = result.rows(0)
    assert [r["cosine"] for r in rows] == sorted((r["cosine"] for r in rows), reverse=True)


def test_index_persists_embeddings_by_file_hash(tiny, tmp_path):
    files = [(f"c{i}.png", _png(c)) for i, c in enumerate(COLORS)]
    gallery = clip.gallery_from_files(files)
    assert [g.digest for g in gallery.images] == [hashlib.sha256(b).hexdigest() for _, b in files]

    first = clip.ImageIndex(tiny, tmp_path)
    report = first.add(gallery.images, batch_size=4)
    assert (report.added, report.embedded, report.from_cache) == (6, 6, 0)
    assert (tmp_path / "embeddings.npz").is_file()

    again = clip.ImageIndex(tiny, tmp_path)  # a new session / a page reload
    report = again.add(clip.gallery_from_files(files).images)
    assert (report.embedded, report.from_cache) == (0, 6)
    np.testing.assert_array_equal(again.embeddings, first.embeddings)

    # one new file: only it is embedded; the same bytes under another name are a duplicate
    report = again.add(clip.gallery_from_files([("new.png", _png((9, 9, 9))), ("copy.png", files[0][1])]).images)
    assert (report.added, report.embedded, report.duplicates) == (1, 1, ["copy.png"])
    assert len(clip.ImageIndex(tiny, tmp_path).store) == 7


def test_indexes_of_one_engine_share_its_store_and_see_what_another_process_saved(tiny, tmp_path):
    files = [(f"c{i}.png", _png(c)) for i, c in enumerate(COLORS)]
    first, again = clip.ImageIndex(tiny, tmp_path), clip.ImageIndex(tiny, tmp_path)
    assert first.store is again.store  # one copy in memory: a page rerun does not read the file again
    elsewhere = clip.EmbeddingStore(tmp_path, tiny.name, tiny.dim)  # another server process on the same cache
    vectors = clip.ImageIndex(tiny, folder=False)
    vectors.add(clip.gallery_from_files(files[:2]).images)
    elsewhere.put(vectors.digests, vectors.embeddings)
    report = again.add(clip.gallery_from_files(files).images)
    assert (report.embedded, report.from_cache) == (4, 2)


def test_cache_of_another_model_is_not_used(tiny, tmp_path):
    clip.ImageIndex(tiny, tmp_path).add(clip.gallery_from_files([("a.png", _png((1, 2, 3)))]).images)
    other = types.SimpleNamespace(name="someone-else", dim=64)
    store = clip.EmbeddingStore(tmp_path, other.name, other.dim)
    assert len(store) == 0 and "another model" in store.notes[0]
    (tmp_path / "embeddings.npz").write_bytes(b"not a zip")
    damaged = clip.EmbeddingStore(tmp_path, tiny.name, tiny.dim)
    assert len(damaged) == 0 and "could not be read" in damaged.notes[0]


def test_search_order_matches_a_full_sort(tiny):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((1000, tiny.dim)).astype(np.float32)
    index = clip.ImageIndex(tiny, folder=False)
    index.add_embeddings([f"v{i}" for i in range(1000)], vectors)
    query = rng.standard_normal(tiny.dim).astype(np.float32)
    hits = index.search(query, k=7)
    scores = index.embeddings @ (query / np.linalg.norm(query))
    assert [h.position for h in hits] == list(np.argsort(-scores)[:7])
    assert [h.score for h in hits] == pytest.approx(sorted(scores, reverse=True)[:7], abs=1e-5)
    assert index.search_by_id("v42", 1)[0].id == "v42"
    assert len(index.search(query, k=5000)) == 1000  # k larger than the gallery
    assert index.search(query, k=3, exclude=["v" + str(hits[0].position)])[0].position == hits[1].position



def test_index_keeps_its_vector_space_when_the_runtime_changes(tiny):
    index = clip.ImageIndex(tiny, folder=False)
    index.add_embeddings(["a", "b", "c"], np.eye(3, tiny.dim, dtype=np.float32), ["cat", None, "dog"])
    embeddings, labels = index.labeled()
    assert labels == ["cat", "dog"]
    np.testing.assert_array_equal(embeddings, index.embeddings[[0, 2]])
    twin = types.SimpleNamespace(name=tiny.name, dim=tiny.dim)  # the same engine in the other runtime
    index.use_engine(twin)
    assert index.engine is twin and index.search_by_id("c", 1)[0].id == "c"
    with pytest.raises(ValueError, match="not someone-else"):
        index.use_engine(types.SimpleNamespace(name="someone-else", dim=tiny.dim))
    assert index.engine is twin

# --- ConSE with real weights --------------------------------------------------------------------------


def test_conse_zero_shot_on_cifar10_clearly_beats_chance(conse, cifar):
    assert len(cifar) == 500 and conse.dim == 384 and not conse.is_clip
    np.testing.assert_allclose(np.linalg.norm(cifar.embeddings, axis=1), 1.0, atol=1e-5)
    accuracies = {}
    for template in clip.TEMPLATE_CHOICES:
        evaluation = clip.evaluate_zero_shot(conse, cifar.embeddings, cifar.labels, templates=template)
        accuracies[template] = evaluation.accuracy
        assert evaluation.confusion.sum() == 500
        assert np.trace(evaluation.confusion) / 500 == pytest.approx(evaluation.accuracy)
    print(f"\nConSE zero-shot top-1 on CIFAR-10 (500 images, chance 0.10): {accuracies}")
    assert accuracies[clip.ENSEMBLE] >= 0.25
    assert min(accuracies.values()) >= 0.2


def test_text_search_for_ships_finds_ships(cifar):
    hits = cifar.search("a photo of a ship", 5)
    ships = sum(h.label == "ship" for h in hits)
    print(f"\n'a photo of a ship' top 5: {[(h.id, round(h.score, 3)) for h in hits]}")
    assert ships >= 2  # chance: 0.5 of 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_image_to_image_search_returns_the_query_first(cifar):
    for image_id in [f"{c}/0003.jpg" for c in ("airplane", "cat", "frog", "truck")]:
        hits = cifar.search_by_id(image_id, 5)
        assert hits[0].id == image_id and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[1].score <= hits[0].score


def test_conse_reads_a_real_photo(conse, bus_jpg):
    image = Image.open(bus_jpg).convert("RGB")
    top = conse.imagenet_top([image], k=3)[0]
    assert "bus" in top[0][0]  # EfficientNet-Lite0: minibus
    emb = conse.encode_images([image])
    result = clip.zero_shot(conse, emb, ["bus", "cat", "banana"], templates="a photo of a {}.")
    assert result.best == ["bus"]
    assert not result.none_of_the_above(conse.default_threshold)[0]
    nothing = clip.zero_shot(conse, emb, ["violin", "banana", "strawberry"], templates="a photo of a {}.")
    assert nothing.probs.sum() == pytest.approx(1.0)  # softmax still spreads 100% ...
    assert nothing.cosine.max() < result.cosine.max()  # ... but the cosine says the match is poor


def test_knn_few_shot_on_the_same_embeddings(cifar):
    scores = clip.knn_few_shot(cifar.embeddings, cifar.labels, shots=(1, 5, 10), trials=3)
    print("\nkNN on ConSE embeddings:", [(s.shots, round(s.accuracy, 3)) for s in scores])
    assert [s.shots for s in scores] == [1, 5, 10]
    assert [s.n_query for s in scores] == [490, 450, 400]
    assert all(s.accuracy > 0.15 for s in scores)


def test_map_projection_and_figure(cifar, conse):
    keep = list(range(0, 500, 10))
    texts = ["airplane", "ship", "cat"]
    projection = clip.map_projection(cifar.embeddings[keep], clip.class_text_embeddings(conse, texts, "{}"))
    assert projection.image_xy.shape == (50, 2) and projection.text_xy.shape == (3, 2)
    assert 0 < projection.explained[1] <= projection.explained[0] < 1
    figure = clip.map_figure(
        projection, [cifar.ids[i] for i in keep], [cifar.labels[i] for i in keep], texts,
        [cifar.thumbnails[i] for i in keep],
    )
    assert len(figure.data) == 11  # 10 classes + the texts
    assert len(figure.layout.images) == 50


def test_engine_choice_falls_back_to_conse_without_clip_weights(conse, monkeypatch):
    assert clip.engine_available("clip") is False and clip.engine_available("conse") is True
    assert clip.available_engines() == ["conse"]
    with pytest.raises(weights.WeightsUnavailable, match="python -m cvdemo.weights fetch clip"):
        clip.ClipModel("clip")
    # create_engine looks ConSEEngine up in its own module (cvdemo.clip.engines), not in the facade
    monkeypatch.setattr(clip.engines, "ConSEEngine", lambda cache_dir=None, accelerated=True: conse)
    assert clip.load_engine("clip") is conse


# --- bad input --------------------------------------------------------------------------------------


def test_labels_are_cleaned_with_explanations():
    for empty in ("", " , ,\n", []):
        with pytest.raises(clip.ClipInputError, match="at least one label"):
            clip.parse_labels(empty)
    labels, notes = clip.parse_labels("cat, Cat ,dog,, cat\nbird")
    assert labels == ["cat", "dog", "bird"] and "Duplicate labels were removed: “Cat”, “cat”" in notes[0]
    labels, notes = clip.parse_labels("dog")
    assert labels == ["dog"] and "always 100%" in notes[0]
    with pytest.raises(clip.ClipInputError, match="too many"):
        clip.parse_labels([f"class {i}" for i in range(clip.MAX_LABELS + 1)])
    labels, notes = clip.parse_labels(["x" * 500])
    assert len(labels[0]) == clip.MAX_LABEL_CHARS and "cut" in notes[0]
    with pytest.raises(clip.ClipInputError, match="needs \\{\\}"):
        clip.template_list("a photo of a cat")


def test_one_label_and_duplicates_in_zero_shot(tiny):
    emb = tiny.encode_images([Image.open(io.BytesIO(_png((1, 2, 3))))])
    one = clip.zero_shot(tiny, emb, ["dog"], templates="{}")
    assert one.probs[0, 0] == pytest.approx(1.0) and -1 <= one.cosine[0, 0] <= 1
    dup = clip.zero_shot(tiny, emb, ["dog", "cat", "dog"], templates="{}")
    assert dup.labels == ["dog", "cat"] and dup.notes
    with pytest.raises(clip.ClipInputError):
        clip.zero_shot(tiny, emb, [], templates="{}")


def test_long_and_empty_queries(cifar):
    query, notes = clip.clean_query("a" * 10_000)
    assert len(query) == clip.MAX_QUERY_CHARS and "10,000 characters" in notes[0]
    assert len(cifar.search("ship " * 2000, 3)) == 3
    with pytest.raises(clip.ClipInputError, match="Type a query"):
        cifar.search("   ", 3)


def test_empty_gallery_is_explained(tiny):
    index = clip.ImageIndex(tiny, folder=False)
    with pytest.raises(clip.ClipInputError, match="gallery is empty"):
        index.search("a dog")
    assert clip.gallery_from_files([]).images == []


def test_non_images_in_a_gallery_are_skipped_and_listed(tiny):
    gallery = clip.gallery_from_files(
        [("notes.txt", b"hello"), ("broken.jpg", b"\xff\xd8\xff\xe0garbage"), ("empty.png", b""),
         ("good.png", _png((10, 20, 30)))]
    )
    assert [g.id for g in gallery.images] == ["good.png"]
    assert len(gallery.skipped) == 3
    for name in ("notes.txt", "broken.jpg", "empty.png"):
        assert any(name in s for s in gallery.skipped)


def test_gallery_zip_rejects_path_tricks(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.png", _png((1, 1, 1)))
        zf.writestr("/abs/root.png", _png((2, 2, 2)))
        zf.writestr("cats/tom.png", _png((3, 3, 3)))
        zf.writestr("dogs/rex.png", _png((4, 4, 4)))
        zf.writestr("dogs/readme.txt", b"not an image")
    gallery = clip.gallery_from_zip(buf.getvalue())
    assert sorted((g.id, g.label) for g in gallery.images) == [("cats/tom.png", "cats"), ("dogs/rex.png", "dogs")]
    assert sum("unsafe path" in s for s in gallery.skipped) == 2
    assert any("readme.txt" in s for s in gallery.skipped)
    assert not (tmp_path.parent / "evil.png").exists()
    with pytest.raises(clip.ClipInputError, match="not a valid zip"):
        clip.gallery_from_zip(b"PK but not really a zip")


def test_zero_shot_figure_shows_probability_cosine_and_threshold(tiny):
    emb = tiny.encode_images([Image.open(io.BytesIO(_png((5, 6, 7))))])
    result = clip.zero_shot(tiny, emb, ["a", "b", "c"], templates="{}")
    figure = clip.zero_shot_figure(result, 0, threshold=0.25)
    assert [t.type for t in figure.data] == ["bar", "bar"]
    assert sorted(figure.data[0].y) == ["a", "b", "c"]
    assert any(s.x0 == 0.25 for s in figure.layout.shapes)


# --- issue 19: unreadable text, class-vector cache, calibrated thresholds --------------------------------


def test_emoji_only_text_is_explained_not_silently_ranked(conse, cifar, tiny):
    assert not conse.has_words("😀😀") and not conse.has_words("!!!") and conse.has_words("asdkjh")
    assert tiny.has_words("😀")  # CLIP's byte-level tokenizer reads emoji
    with pytest.raises(clip.ClipInputError, match="has no words the text encoder can read"):
        cifar.search("😀😀", 5)
    result = clip.zero_shot(conse, cifar.embeddings[:1], ["ship", "🚢"], templates="{}")
    assert any("no words the text encoder can read" in n and "🚢" in n for n in result.notes)


def test_class_vectors_are_cached_per_engine_and_template_with_progress(tiny, monkeypatch):
    labels = ["a cactus", "a kettle", "a glacier"]
    steps = []
    first = clip.class_text_embeddings(tiny, labels, ["a photo of {}.", "a drawing of {}."],
                                       progress=lambda done, total: steps.append((done, total)))
    assert steps == [] or steps[-1][0] == steps[-1][1]
    monkeypatch.setattr(tiny, "encode_texts", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-encoded")))
    again = clip.class_text_embeddings(tiny, labels[::-1], ["a photo of {}.", "a drawing of {}."])
    np.testing.assert_array_equal(again, first[::-1])  # served from the process-wide cache
    monkeypatch.undo()
    other = clip.class_text_embeddings(tiny, labels, "{}")  # another template set: other vectors
    assert not np.allclose(other, first)
    many = [f"thing number {i}" for i in range(40)]  # > SMALL_BATCH texts: encoded in chunks with progress
    steps.clear()
    clip.class_text_embeddings(tiny, many, "{}", progress=lambda done, total: steps.append((done, total)))
    assert steps and steps[-1] == (40, 40)
    assert clip.warm_text_cache(tiny, [["cat", "dog"], ["dog", "bird"]], ["{}"]) == 3


def test_none_of_the_above_thresholds_are_per_template_and_calibrated(conse, cifar):
    assert conse.none_threshold(clip.ENSEMBLE) == 0.39 and conse.none_threshold("{}") == 0.47
    assert conse.none_threshold("an unknown {} template") == conse.default_threshold
    threshold = clip.calibrate_none_threshold(conse, [cifar.embeddings], "a photo of a {}.")
    unrelated = clip.zero_shot(conse, cifar.embeddings, ["chair", "banana", "spaceship", "violin", "toothbrush",
                                                         "umbrella", "pizza", "keyboard", "lamp", "clock"],
                               "a photo of a {}.").cosine.max(axis=1)
    assert (unrelated >= threshold).mean() == pytest.approx(0.1, abs=0.01)  # 10 % of no-fit photos pass it
    print(f"\nCIFAR-only calibration for 'a photo of a {{}}.': {threshold:.3f} (constant, with ants/bees: 0.32)")
    assert abs(threshold - conse.none_threshold("a photo of a {}.")) < 0.06
