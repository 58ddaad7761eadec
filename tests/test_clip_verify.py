"""Verification on the CLIP page's engines: pairs from sample photos, ROC/AUC/EER, the trained head, bad input.

ConSE (offline) embeds the ants-and-bees photos once; the embeddings land in the session cache folder
the other CLIP tests share, keyed by file digest like the search index's.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvdemo import cache, clip
from cvdemo.images import fingerprint

ANTS = "Ants and bees (153 photos)"


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "clip_cache"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch, cache_root):
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(cache_root))


@pytest.fixture(scope="module")
def embedder(cache_root) -> clip.Embedder:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CVDEMO_CACHE_DIR", str(cache_root))
        return clip.Embedder.for_engine(cache.shared(clip.create_engine, "conse"))


@pytest.fixture(scope="module")
def photos() -> list[clip.GalleryImage]:
    return clip.sample_gallery(ANTS).images


def test_changes_are_realistic_and_deterministic(photos):
    original = photos[0].image
    for change in clip.CHANGES:
        changed = clip.apply_change(original, change, seed=3)
        assert changed.mode == "RGB" and changed.size[0] > 0
        assert fingerprint(changed) != fingerprint(original)  # every change changes the pixels
        assert fingerprint(clip.apply_change(original, change, seed=3)) == fingerprint(changed)
    assert clip.apply_change(original, "crop", 1).size != original.size
    assert clip.apply_change(original, "flip", 0).getpixel((0, 0)) == original.getpixel((original.width - 1, 0))


def test_photo_level_pairs_give_auc_well_above_chance(embedder, photos):
    pairs = clip.build_pairs(photos, clip.PHOTO, sources=12, seed=0)
    assert len(pairs) == 12 * len(clip.CHANGES) * 2 and pairs.same.sum() == len(pairs) // 2
    assert len(pairs.images) == 12 * (1 + len(clip.CHANGES))
    # negatives: the same change applied to another photo, never the photo itself
    neg = ~pairs.same
    assert (pairs.sources[pairs.a[neg]] != pairs.sources[pairs.b[neg]]).all()
    assert (pairs.sources[pairs.a[pairs.same]] == pairs.sources[pairs.b[pairs.same]]).all()
    evaluation, vectors = clip.evaluate_pairs(embedder, pairs)
    print(f"\nConSE photo-level verification on {len(pairs)} ants/bees pairs: AUC {evaluation.auc:.3f}, "
          f"EER {evaluation.eer:.1%} at cosine {evaluation.eer_threshold:.3f}")
    assert evaluation.auc > 0.75  # chance is 0.5
    assert 0 <= evaluation.eer < 0.35
    assert evaluation.positives == evaluation.negatives == len(pairs) // 2
    far, tar = evaluation.rates_at(evaluation.eer_threshold)
    assert abs((1 - tar) - far) < 0.15  # at the EER threshold false rejects ≈ false accepts
    assert evaluation.rates_at(-1.0) == (1.0, 1.0) and evaluation.rates_at(1.01) == (0.0, 0.0)
    kinds = evaluation.by_kind(evaluation.eer_threshold)
    assert {k.kind for k in kinds} == set(clip.CHANGES)
    assert [(k.accepted, k.auc) for k in kinds] == sorted((k.accepted, k.auc) for k in kinds)  # worst first
    figure = clip.roc_figure([("ConSE", evaluation)], threshold=0.6)
    assert any("AUC" in (t.name or "") for t in figure.data) and any("your threshold" in (t.name or "") for t in figure.data)
    assert len(clip.kinds_figure(kinds, 0.6).data[0].y) == len(clip.CHANGES)
    # the second run reads every vector from the cache: no model call
    embedder.model, model = None, embedder.model
    try:
        again, _ = clip.evaluate_pairs(embedder, pairs)
    finally:
        embedder.model = model
    assert again.auc == pytest.approx(evaluation.auc)


def test_verify_two_images(embedder, photos):
    first, second = photos[0].image, photos[-1].image
    changed = clip.apply_change(first, "flip", 0)  # the mildest change (a heavy JPEG can fool ConSE)
    same = clip.verify(embedder, first, changed, threshold=0.5)
    other = clip.verify(embedder, first, second, threshold=0.5)
    assert not same.identical and same.cosine > other.cosine
    identical = clip.verify(embedder, first, first.copy(), threshold=0.99)
    assert identical.identical and identical.same and identical.cosine == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(clip.ClipInputError, match="pick a second one"):
        clip.verify(embedder, first, None, 0.5)


def test_training_the_head_reports_honestly(embedder, photos):
    steps = []
    result = clip.train_for_verification(
        embedder, photos, clip.CLASS, sources=len(photos), loss=clip.TRIPLET, epochs=40,
        progress=lambda what, done, total: steps.append(what),
    )
    print("\n" + result.summary())
    assert {"embedding training photos", "embedding held-out photos", "training the head"} <= set(steps)
    assert result.losses[-1] < result.losses[0]  # it learned something on the training photos
    assert result.before.auc > 0.6 and result.after.auc > 0.6
    assert result.improved == (result.after.auc > result.before.auc)
    words = "improved" if result.after.auc - result.before.auc >= 0.005 else ("did not change" if abs(result.after.auc - result.before.auc) < 0.005 else "worse")
    assert words in result.summary()
    projected = result.project(np.eye(3, result.projection.shape[0], dtype=np.float32))
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-5)


def test_the_head_starts_as_the_identity_and_the_pair_loss_pulls_same_pairs_together(embedder, photos):
    pairs = clip.build_pairs(photos, clip.PHOTO, sources=12, seed=0)
    vectors = embedder.embed(pairs.images, digests=pairs.digests)  # cached by the test above
    trained = clip.train_head(vectors, pairs, vectors, pairs, loss=clip.PAIR, epochs=30)
    assert trained.before.auc == pytest.approx(clip.evaluate_pairs(embedder, pairs)[0].auc)
    same = pairs.same
    before = trained.before.cosine
    after = trained.after.cosine
    assert after[same].mean() > before[same].mean()  # 1 − M for same pairs: pulled together (the slide's sign fixed)
    assert trained.losses[-1] < trained.losses[0]


# --- bad input --------------------------------------------------------------------------------------


def test_bad_pair_inputs_are_explained(photos):
    with pytest.raises(clip.ClipInputError, match="at least 2 different photos"):
        clip.build_pairs(photos[:1], clip.PHOTO)
    with pytest.raises(clip.ClipInputError, match="at least 2 different photos"):
        clip.build_pairs([photos[0], photos[0]], clip.PHOTO)  # the same photo twice is one photo
    unlabeled = [clip.GalleryImage(p.id, p.image, p.digest, None) for p in photos[:6]]
    with pytest.raises(clip.ClipInputError, match="at least 2 classes"):
        clip.build_pairs(unlabeled, clip.CLASS)
    with pytest.raises(clip.ClipInputError, match="Unknown change"):
        clip.build_pairs(photos[:4], clip.PHOTO, changes=["melt"])
    with pytest.raises(clip.ClipInputError, match="both same and different"):
        clip.evaluate_cosines(np.array([0.3, 0.4]), np.array([True, True]), ["a", "b"], clip.PHOTO, "x")
    with pytest.raises(clip.ClipInputError, match="at least 4 different photos"):
        clip.split_photos(photos[:3])


def test_demo_verify_handler(bus_jpg):
    import gradio as gr

    from cvdemo.demos import clip as demo

    bus = Image.open(bus_jpg)
    buf = io.BytesIO()
    clip.apply_change(bus, "JPEG", 0).save(buf, format="PNG")
    verdict, cosine = demo.verify_images(bus, Image.open(io.BytesIO(buf.getvalue())), 0.5)
    assert "Same" in verdict and 0.5 <= cosine <= 1.0
    verdict, _ = demo.verify_images(bus, bus.copy(), 0.5)
    assert "identical" in verdict
    with pytest.raises(gr.Error, match="two images"):
        demo.verify_images(bus, None, 0.5)
    with pytest.raises(gr.Error, match="not an image"):
        demo.verify_images(bus, b"definitely not a picture", 0.5)
