"""The field on a picture: real pretrained EfficientNet-Lite0, gradients against the theoretical square."""

from __future__ import annotations

import numpy as np
import pytest

from cvdemo import cache
from cvdemo import complexity as cx
from cvdemo.complexity.figures import effective_field_figure, field_depth_figure, field_on_image_figure, spread_labels
from cvdemo.images import load_image


@pytest.fixture(scope="module")
def lite0() -> cx.PictureNetwork:
    return cache.shared(cx.pretrained_network)


@pytest.fixture(scope="module")
def bus(bus_jpg):
    return load_image(bus_jpg)


def test_pretrained_lite0_has_real_weights_and_its_own_fields(lite0):
    assert lite0.pretrained and lite0.label == cx.PRETRAINED_LABEL and lite0.input_size == (3, 224, 224)
    fields = lite0.fields()
    assert fields.complete and (fields.size, fields.stride) == (851, 32)
    assert set(r.name for r in cx.picture_layers(fields)) <= set(dict(lite0.model.named_modules()))


def test_the_gradient_lives_inside_the_theoretical_field_and_is_smaller(lite0, bus):
    fields = lite0.fields()
    row = cx.default_layer(fields)
    crop, tensor = cx.prepare(bus, lite0)
    assert crop.size == (224, 224) and tuple(tensor.shape) == (1, 3, 224, 224)
    h, w = cx.grid_of(row)
    erf = cx.effective_field(lite0, tensor, row, (h // 2, w // 2))
    assert erf.pretrained and erf.gradient.shape == (224, 224) and erf.gradient.max() == 1.0
    assert erf.inside == pytest.approx(1.0)  # exactly zero outside the theoretical square
    top, left, bottom, right = (int(v) for v in erf.box)
    outside = erf.gradient.copy()
    outside[max(top, 0):bottom, max(left, 0):right] = 0
    assert not outside.any()
    assert 0 < erf.side < row.size  # trained networks concentrate it (Luo et al. 2016)
    assert "trained weights" in erf.sentence() and "none outside" in erf.sentence()


def test_a_zoo_model_with_random_weights_says_so(bus):
    net = cx.random_network("resnet18")
    assert not net.pretrained and net.label == "ResNet-18, random weights"
    fields = net.fields()
    row = fields.layer("layer2.0")  # 67 px, across its shortcut
    crop, tensor = cx.prepare(bus, net)
    erf = cx.effective_field(net, tensor, row, (14, 14))
    assert erf.box == cx.field_box(row, 14, 14) and erf.inside == pytest.approx(1.0)
    assert "random weights" in erf.sentence()


def test_a_typed_network_with_one_channel_gets_a_grey_picture(bus):
    net = cx.spec_network("input 28x28x1\nconv 8 5x5\nrelu\nmaxpool 2x2\nconv 16 5x5")
    crop, tensor = cx.prepare(bus, net)
    assert crop.mode == "L" and tuple(tensor.shape) == (1, 1, 28, 28)
    row = net.fields().layer("conv2")  # 5 + 1·1 = 6 after the pool (j 2), 6 + 4·2 = 14
    erf = cx.effective_field(net, tensor, row, (3, 3))
    assert row.size == 14 and erf.inside == pytest.approx(1.0)
    with pytest.raises(ValueError, match="takes 64 input channels"):
        cx.prepare(bus, cx.spec_network("input 8x8x64\nconv 8 3x3"))


def test_figures(lite0, bus):
    fields = cx.receptive_field("vgg16")
    fig = field_depth_figure(fields)
    assert "input image: 224 px" in [a.text for a in fig.layout.annotations]
    assert fig.layout.title.text == "The last layer sees 212 px of a 224 px image"
    assert fig.layout.shapes[0].y0 == 224  # the image size drawn as a line
    resnet = field_depth_figure(cx.receptive_field("resnet18"))
    assert list(resnet.data[0].y) == sorted(resnet.data[0].y)  # the widest path: a shortcut never makes it dip
    assert resnet.layout.title.text == "The last layer's field is 435 px, wider than the 224 px image"
    vit = field_depth_figure(cx.receptive_field("deit_tiny_patch16_224"))
    assert vit.layout.title.text == "The last layer sees the whole 224 px image" and vit.layout.xaxis.dtick == 1
    row = cx.default_layer(lite0.fields())
    crop, tensor = cx.prepare(bus, lite0)
    erf = cx.effective_field(lite0, tensor, row, (0, 0))  # a corner unit: its field leaves the picture
    picture = field_on_image_figure(crop, erf.box, row.name, erf.unit)
    assert len(picture.layout.shapes) == 2  # dotted full square and the part on the picture
    erf_figure = effective_field_figure(erf)
    assert len(erf_figure.layout.shapes) == 3
    assert erf_figure.data[0].type == "image" and np.asarray(erf_figure.data[0].z).shape[-1] == 3  # coloured here


def test_crowded_labels_are_spread():
    # ResNet-18 and ShuffleNet-like points almost on top of each other, as in the Compare models chart.
    xs, ys = [11.7e6, 11.5e6, 2.3e6, 3.5e6, 138e6], [1.8e9, 1.7e9, 0.15e9, 0.3e9, 15.5e9]
    texts = ["ResNet-18", "ResNet-18 twin", "ShuffleNet V2 1.0x", "MobileNetV2", "VGG-16"]
    positions = spread_labels(xs, ys, texts)
    assert len(positions) == 5 and positions[0] != positions[1]
    assert all(p in ("top center", "bottom center", "middle right", "middle left", "top right", "top left",
                     "bottom right", "bottom left") for p in positions)  # fmt: skip
    assert spread_labels([], [], []) == []
    assert np.isfinite(len(spread_labels([1.0], [1.0], ["one"])))
