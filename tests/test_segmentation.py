"""Segmentation: data validation, pretrained encoder loading, two-stage training, metrics, save/load, overlays.

The quality test trains the sample U-Net (shared with the Gradio demo test through cvdemo.cache)
and a random-encoder U-Net the same way, and compares them on the 6 held-out pets.
"""

from __future__ import annotations

from dataclasses import replace

import io
import json
import os
import subprocess
import sys
import zipfile

# OpenMP threads sleep instead of spinning while they wait. libgomp reads this when torch loads, so it
# only helps if torch is not imported yet; on a shared 2-core machine spinning makes training 5-10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from conftest import REPO  # noqa: E402
from cvdemo import backbones, cache, datasets, weights  # noqa: E402
from cvdemo import segmentation as seg  # noqa: E402
from cvdemo.images import load_image  # noqa: E402

PETS = datasets.dataset_path(seg.SAMPLE_DATASET)


@pytest.fixture(scope="module")
def pets() -> seg.SegDataset:
    return seg.load_sample()


@pytest.fixture(scope="module")
def tiny_model() -> seg.SegModel:
    """A pretrained-encoder U-Net at 64 px, untrained decoder: fast for save/load and plumbing tests."""
    torch.manual_seed(0)
    return seg.SegModel(seg.ModelConfig(img_size=64))


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, blob in files.items():
            archive.writestr(name, blob)
    return buf.getvalue()


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


# --- data ------------------------------------------------------------------------------------------


def test_sample_pairs_load_with_their_classes(pets):
    assert len(pets.samples) == 26 and pets.problems == []
    assert pets.class_names == ["background", "cat", "dog"]
    for s in pets.samples:
        assert s.mask.shape == (s.image.height, s.image.width)
        assert set(np.unique(s.mask)) <= {0, 1, 2, 255}
    assert sum(s.main_class == 1 for s in pets.samples) == 18  # cats
    assert sum(s.main_class == 2 for s in pets.samples) == 8  # dogs
    shares = pets.pixel_shares()
    assert abs(sum(shares.values()) - 1) < 1e-9 and shares["background"] > shares["cat"] > shares["dog"] > 0


def test_split_is_stratified_and_reproducible(pets):
    train, val = seg.split(pets.samples, 6, seed=0)
    assert len(train) == 20 and len(val) == 6
    assert {s.name for s in train}.isdisjoint({s.name for s in val})
    assert sorted(s.main_class for s in val) == [1, 1, 1, 1, 2, 2]  # 18:8 cats:dogs, kept in the held-out set
    assert [s.name for s in seg.split(pets.samples, 6, seed=0)[1]] == [s.name for s in val]
    with pytest.raises(seg.SegDataError, match="Hold out between 1 and 25"):
        seg.split(pets.samples, 26)


def test_zip_keeps_good_pairs_and_names_every_bad_file():
    good_img = (PETS / "images" / "Abyssinian_1.jpg").read_bytes()
    good_mask = (PETS / "masks" / "Abyssinian_1.png").read_bytes()
    dog_img = (PETS / "images" / "great_pyrenees_174.jpg").read_bytes()
    dog_mask = (PETS / "masks" / "great_pyrenees_174.png").read_bytes()
    w, h = Image.open(io.BytesIO(good_img)).size
    odd_values = np.zeros((h, w), np.uint8)
    odd_values[:10, :10] = 7
    colour = np.zeros((h, w, 3), np.uint8)
    colour[..., 0] = 200
    blob = _zip(
        {
            "pets/images/cat.jpg": good_img,
            "pets/masks/cat.png": good_mask,
            "pets/images/dog.jpg": dog_img,
            "pets/masks/dog.png": dog_mask,
            "pets/images/small_mask.jpg": good_img,
            "pets/masks/small_mask.png": _png(np.zeros((20, 30), np.uint8)),
            "pets/images/odd.jpg": good_img,
            "pets/masks/odd.png": _png(odd_values),
            "pets/images/colour.jpg": good_img,
            "pets/masks/colour.png": _png(colour),
            "pets/images/notes.jpg": b"this is text, not a JPEG",
            "pets/masks/notes.png": good_mask,
            "pets/images/empty.jpg": b"",
            "pets/masks/empty.png": good_mask,
            "pets/images/lonely.jpg": good_img,
            "pets/masks/orphan.png": good_mask,
            "pets/classes.txt": b"background\ncat\ndog\n",
            "pets/readme_notes.csv": b"a,b",
        }
    )
    data = seg.load_zip(blob, "pets.zip")
    assert sorted(s.name for s in data.samples) == ["cat", "dog"]
    assert data.class_names == ["background", "cat", "dog"]
    text = "\n".join(data.problems)
    assert "small_mask.png is 30x20 pixels but its image pets/images/small_mask.jpg is 600x400" in text
    assert "odd.png has pixel values 7 that are not classes (allowed: 0–2, and 255 = ignore)" in text
    assert "colour.png is a colour (RGB) image" in text
    assert "notes.jpg is not an image Pillow can read" in text
    assert "empty.jpg is empty (0 bytes)" in text
    assert "pets/images/lonely.jpg has no mask (expected masks/lonely.png)" in text
    assert "pets/masks/orphan.png has no image" in text
    assert "readme_notes.csv: not inside an images/ or masks/ folder" in text
    # The good pairs are intact.
    cat = next(s for s in data.samples if s.name == "cat")
    assert cat.image.size == (w, h) and set(np.unique(cat.mask)) == {0, 1, 255}


def test_zip_without_classes_txt_names_classes_by_index():
    img = np.full((40, 50, 3), 128, np.uint8)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:20] = 3
    mask[0, 0] = 255
    data = seg.load_zip(_zip({"images/a.png": _png(img), "masks/a.png": _png(mask, "L")}))
    assert data.class_names == ["background", "class 1", "class 2", "class 3"]
    # 0/255-only masks hold no object at all: a clear sentence, not a silent useless training.
    with pytest.raises(seg.SegDataError, match="255 means 'ignore'"):
        seg.load_zip(_zip({"images/a.png": _png(img), "masks/a.png": _png(np.where(mask > 0, 255, 0).astype(np.uint8))}))


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "not a valid zip"),
        (b"PK\x05\x06" + b"\x00" * 18, "empty"),  # a valid zip with no members
        (b"not a zip at all", "not a valid zip"),
    ],
)
def test_unusable_zip_is_one_clear_sentence(blob, message):
    with pytest.raises(seg.SegDataError, match=message):
        seg.load_zip(blob, "upload.zip")


def test_zip_with_only_bad_pairs_says_why():
    img = _png(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(seg.SegDataError, match="No usable image/mask pairs.*b.png is 5x5"):
        seg.load_zip(_zip({"images/b.png": img, "masks/b.png": _png(np.zeros((5, 5), np.uint8))}))


# --- model -----------------------------------------------------------------------------------------


def test_encoder_holds_the_imagenet_weights(tiny_model):
    """Every encoder tensor equals the timm backbone's; only the classifier head is dropped."""
    reference = backbones.create_backbone("efficientnet_lite0").state_dict()
    encoder = tiny_model.network.encoder.model.state_dict()
    assert len(encoder) == 288
    for key, value in encoder.items():
        assert torch.equal(value, reference[key]), key
    assert tiny_model.dropped_keys == sorted(
        ["conv_head.weight", "bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var",
         "bn2.num_batches_tracked", "classifier.weight", "classifier.bias"]
    )
    assert tiny_model.config.mean == [0.5, 0.5, 0.5]  # timm's normalisation for these weights
    scratch = seg.SegModel(seg.ModelConfig(img_size=64, pretrained_encoder=False))
    stem = "conv_stem.weight"
    assert not torch.equal(scratch.network.encoder.model.state_dict()[stem], reference[stem])


def test_two_stages_freeze_then_unfreeze_with_a_lower_encoder_lr(pets):
    torch.manual_seed(0)
    model = seg.SegModel(seg.ModelConfig(img_size=64))
    trainer = seg.Trainer(model, pets.samples[:4], pets.samples[20:21],
                          seg.TrainConfig(frozen_epochs=1, finetune_epochs=1, batch_size=4, lr=1e-3))
    enc0 = {k: v.clone() for k, v in model.network.encoder.state_dict().items()}
    dec0 = {k: v.clone() for k, v in model.network.decoder.state_dict().items()}
    first = trainer.run_epoch()
    assert first.stage == "frozen encoder"
    # Frozen means frozen: weights and BatchNorm statistics of the encoder did not move.
    assert all(torch.equal(v, model.network.encoder.state_dict()[k]) for k, v in enc0.items())
    assert any(not torch.equal(v, model.network.decoder.state_dict()[k]) for k, v in dec0.items())
    assert [g["initial_lr"] for g in trainer._optimizer.param_groups] == [1e-3]
    second = trainer.run_epoch()
    assert second.stage == "fine-tune"
    assert [g["initial_lr"] for g in trainer._optimizer.param_groups] == [1e-3, pytest.approx(1e-4)]
    assert any(not torch.equal(v, model.network.encoder.state_dict()[k]) for k, v in enc0.items())
    assert trainer.run_epoch() is None and len(trainer.history) == 2
    assert 0 <= second.val_foreground_iou <= 1 and np.isfinite(second.train_loss)


def test_stop_ends_a_background_run_early(pets):
    model = seg.SegModel(seg.ModelConfig(img_size=64, pretrained_encoder=False))
    trainer = seg.Trainer(model, pets.samples[:4], pets.samples[20:21],
                          seg.TrainConfig(frozen_epochs=0, finetune_epochs=50, batch_size=2))
    trainer.start()
    trainer.stop()
    trainer.join(timeout=60)
    assert not trainer.running
    assert trainer.status == "stopped" and len(trainer.history) < 50


def test_pretrained_unet_beats_a_random_encoder_on_held_out_pets(pets):
    """The lecture's claim, measured: same U-Net, data, augmentations and epochs; only the encoder's start differs."""
    _, val = seg.split(pets.samples, 6, seed=0)
    pretrained = cache.shared(seg.sample_model)  # shared with the Gradio demo test
    scratch, trainer = seg.train_model(pets, 6, seg.ModelConfig(pretrained_encoder=False), seg.TrainConfig())
    assert [r.stage for r in trainer.history] == ["all layers"] * seg.TrainConfig().epochs
    ours, theirs = seg.evaluate(pretrained, val), seg.evaluate(scratch, val)
    print(f"held-out foreground IoU: pretrained {ours.foreground_iou:.3f} vs random {theirs.foreground_iou:.3f}; "
          f"mIoU {ours.miou:.3f} vs {theirs.miou:.3f}")
    assert ours.foreground_iou > 0.7
    assert ours.foreground_iou > theirs.foreground_iou + 0.1
    assert ours.miou > theirs.miou
    assert pretrained.config.metrics["val_foreground_iou"] == pytest.approx(ours.foreground_iou, abs=1e-3)


# --- metrics, overlays, files -----------------------------------------------------------------------


def test_iou_from_confusion_ignores_255():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 0, 0, 2]], np.uint8)
    metrics = seg.SegMetrics(["bg", "cat", "dog"], seg.confusion(pred, truth, 3))
    assert metrics.matrix.sum() == 7  # the 255 pixel is not counted
    iou = metrics.per_class_iou
    assert iou[0] == pytest.approx(3 / 5) and iou[1] == pytest.approx(2 / 4) and np.isnan(iou[2])
    assert metrics.miou == pytest.approx((3 / 5 + 2 / 4) / 2)
    assert metrics.foreground_iou == pytest.approx(2 / 4)
    assert metrics.table()[1] == {"class": "cat", "IoU": 0.5, "pixels (truth)": 3, "pixels (predicted)": 3}


def test_overlay_legend_shares_and_mask_png(pets):
    sample = pets.samples[0]
    n = len(pets.class_names)
    untouched = seg.overlay(sample.image, sample.mask, n, 0.0)
    assert np.array_equal(np.asarray(untouched), np.asarray(sample.image))
    full = np.asarray(seg.overlay(sample.image, sample.mask, n, 1.0))
    cat = sample.mask == 1
    assert (full[cat] == seg.palette(n)[1]).all()
    assert np.array_equal(full[sample.mask == 0], np.asarray(sample.image)[sample.mask == 0])  # background unpainted
    shares = seg.class_shares(sample.mask, pets.class_names)
    assert [s.name for s in shares][:2] == ["background", "cat"]
    assert sum(s.pixels for s in shares) == int((sample.mask != 255).sum())
    html = seg.legend_html(shares)
    assert "cat" in html and shares[1].hex in html
    # class names come from users' classes.txt: tags are shown, never parsed
    tricky = seg.legend_html([replace(shares[1], name='<img src=x onerror="alert(1)">')])
    assert "<img" not in tricky and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in tricky
    png = Image.open(io.BytesIO(seg.mask_png(sample.mask, n)))
    assert png.mode == "P" and png.size == sample.image.size
    assert np.array_equal(np.asarray(png), sample.mask)


def test_save_and_load_round_trip(tiny_model, tmp_path, bus_jpg):
    image = load_image(bus_jpg)
    before = tiny_model.predict(image)
    assert before.shape == (image.height, image.width) and before.dtype == np.uint8
    blob = tiny_model.to_bytes()
    again = seg.SegModel.from_bytes(blob)
    assert again.config.class_names == tiny_model.config.class_names and again.config.img_size == 64
    assert np.array_equal(again.predict(image), before)
    path = tiny_model.save(tmp_path / "unet.safetensors")
    config = json.loads(path.with_suffix(".json").read_text())
    assert config["architecture"] == "Unet" and config["encoder"] == "efficientnet_lite0"
    assert np.array_equal(seg.SegModel.load(path).predict(image), before)


def test_model_files_that_are_refused(tiny_model):
    state = tiny_model.network.state_dict()
    pickled = io.BytesIO()
    torch.save(state, pickled)
    with pytest.raises(seg.ModelFileError, match="pickle"):
        seg.SegModel.from_bytes(pickled.getvalue(), name="model.pt")
    with pytest.raises(seg.ModelFileError, match="empty"):
        seg.SegModel.from_bytes(b"", name="x.safetensors")
    with pytest.raises(seg.ModelFileError, match="not a valid .safetensors"):
        seg.SegModel.from_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", name="x.safetensors")
    from safetensors.torch import save

    bare = save({k: v.contiguous() for k, v in state.items()})  # no config in the metadata
    with pytest.raises(seg.ModelFileError, match="upload the JSON config"):
        seg.SegModel.from_bytes(bare, name="bare.safetensors")
    assert seg.SegModel.from_bytes(bare, tiny_model.config.to_json()).config.img_size == 64
    huge = tiny_model.config.to_json().replace('"img_size": 64', '"img_size": 100000')
    with pytest.raises(seg.ModelFileError, match="multiple of 32"):
        seg.SegModel.from_bytes(bare, huge, name="bare.safetensors")
    fpn = tiny_model.config.to_json().replace('"Unet"', '"FPN"')
    with pytest.raises(seg.ModelFileError, match="does not match a FPN"):
        seg.SegModel.from_bytes(bare, fpn, name="bare.safetensors")


def test_fpn_and_deeplab_build_and_predict(bus_jpg):
    image = load_image(bus_jpg)
    for arch in ("FPN", "DeepLabV3Plus"):
        model = seg.SegModel(seg.ModelConfig(architecture=arch, img_size=64))
        assert model.predict(image).shape == (image.height, image.width)


# --- published models and YOLO-seg ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, filename",
    [("segformer_b0_ade", "segformer-b0-512x512-ade-160k.safetensors"),
     ("lraspp_mobilenet_v3", "lraspp_mobilenet_v3_large-d234d4ea.pth")],
)
def test_missing_published_model_names_its_file(name, filename):
    if weights.available(name):
        pytest.skip(f"{name} is on this machine")
    with pytest.raises(weights.WeightsUnavailable, match=filename.replace(".", r"\.")):
        seg.PretrainedSegmenter(name)


def test_published_models_load_from_the_weights_folder(tmp_path, monkeypatch, bus_jpg):
    """The loading path, exercised with same-shaped random weights placed where the registry looks."""
    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.save(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21).state_dict(),
               tmp_path / weights.get("lraspp_mobilenet_v3").filename)
    segformer = smp.Segformer("mit_b0", encoder_weights=None, classes=150).state_dict()
    save_file({k: v.contiguous() for k, v in segformer.items()}, tmp_path / weights.get("segformer_b0_ade").filename)
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path))
    image = load_image(bus_jpg)
    voc = seg.PretrainedSegmenter("lraspp_mobilenet_v3")
    assert len(voc.class_names) == 21 and voc.class_names[0] == "background" and "person" in voc.class_names
    assert voc.predict(image).shape == (image.height, image.width)
    ade = seg.PretrainedSegmenter("segformer_b0_ade")
    assert len(ade.class_names) == 150 and ade.background is None
    mask = ade.predict(image)
    assert mask.shape == (image.height, image.width) and mask.max() < 150


def test_yolo_seg_missing_then_instances_code_path(bus_jpg):
    if not weights.available("yolov8n-seg"):
        with pytest.raises(weights.WeightsUnavailable, match=r"yolov8n-seg\.pt"):
            seg.load_instance_model()
    from cvdemo.yolo_runtime import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    threads = torch.get_num_threads()  # ultralytics' select_device changes the process-wide setting
    try:
        torch.manual_seed(0)
        model = YOLO("yolov8n-seg.yaml", task="segment")  # architecture only: untrained, scores are tiny
        image = load_image(bus_jpg)
        result = seg.instances(model, image, conf=1e-6, max_det=3)
    finally:
        torch.set_num_threads(threads)
    assert 1 <= len(result.instances) <= 3
    assert result.semantic.shape == (image.height, image.width)
    assert result.annotated.size == image.size
    assert result.class_names[0] == "background" and result.semantic.max() < len(result.class_names)
    assert all(i.pixels >= 0 and 0 < i.score < 1 for i in result.instances)


def test_module_import_stays_light():
    code = "import sys, cvdemo.segmentation; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_labels_at_size_keeps_memory_bounded_for_huge_photos():
    small = torch.randn(1, 3, 8, 8)
    direct = torch.nn.functional.interpolate(small, size=(30, 40), mode="bilinear", align_corners=False)
    assert np.array_equal(seg.labels_at_size(small, 40, 30), direct[0].argmax(0).numpy())
    ade_like = torch.randn(1, 150, 16, 16)  # 150 classes x 12 MP would be 7 GB of scores
    labels = seg.labels_at_size(ade_like, 4000, 3000)
    assert labels.shape == (3000, 4000) and labels.dtype == np.uint8 and labels.max() < 150


def test_evaluate_caps_the_resolution_of_big_photos(tiny_model, pets):
    sample = pets.samples[0]
    full = seg.evaluate(tiny_model, [sample])
    capped = seg.evaluate(tiny_model, [sample], max_side=200)
    assert full.matrix.sum() == int((sample.mask != 255).sum())
    assert 0 < capped.matrix.sum() < full.matrix.sum() / 4


def test_deeplab_trains_on_a_single_image(pets):
    """One training pair makes batches of one, which BatchNorm after global pooling refuses; handled."""
    model = seg.SegModel(seg.ModelConfig(architecture="DeepLabV3Plus", img_size=64, pretrained_encoder=False))
    trainer = seg.Trainer(model, pets.samples[:1], pets.samples[1:2], seg.TrainConfig(frozen_epochs=0, finetune_epochs=1))
    assert trainer.run()[0].epoch == 1 and trainer.status == "done"


def test_display_copy_bounds_huge_photos():
    big = Image.new("RGB", (8000, 6000))
    small = seg.display_copy(big)
    assert small.size == (2048, 1536)
    photo = Image.new("RGB", (640, 480))
    assert seg.display_copy(photo) is photo
