"""Receptive fields, checked against hand computations from the published architectures.

Notation (Araujo et al. 2019, Distill): a layer with kernel k, stride s, dilation d on an input whose
units see r_in pixels with jump j_in gives r = r_in + (k - 1)·d·j_in and j = j_in·s. The input image
has r = 1, j = 1. "start" is the centre of the first unit's field, in pixels (pixel i's centre at i):
start = start_in + ((k - 1)·d/2 - p)·j_in.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvdemo import complexity as cx
from cvdemo import zoo


def sizes(fields: cx.ReceptiveField, names: list[str]) -> list[float]:
    return [fields.layer(n).size for n in names]


def test_lenet5():
    # C1 5×5: r = 1 + 4·1 = 5, j = 1      S2 2×2/2: r = 5 + 1·1 = 6, j = 2
    # C3 5×5: r = 6 + 4·2 = 14, j = 2     S4 2×2/2: r = 14 + 1·2 = 16, j = 4
    # C5 5×5: r = 16 + 4·4 = 32, j = 4: every unit of C5 sees the whole 32×32 digit.
    # start: 0 + 2 = 2; + 0.5 = 2.5; + 2·2 = 6.5; + 0.5·2 = 7.5; + 2·4 = 15.5, the image's centre.
    rf = cx.receptive_field("lenet5")
    assert sizes(rf, ["conv1", "avgpool1", "conv2", "avgpool2", "conv3"]) == [5, 6, 14, 16, 32]
    assert [rf.layer(n).stride for n in ["conv1", "avgpool1", "conv2", "avgpool2", "conv3"]] == [1, 2, 2, 4, 4]
    assert (rf.size, rf.stride, rf.start) == (32, 4, 15.5)
    assert rf.reached_at == "conv3" and rf.complete
    assert "sees all 32 px of the 32 px image" in rf.sentence()


def test_alexnet():
    # torchvision AlexNet (one-GPU variant, 64 filters in conv1, padding 2):
    # conv1 11×11/4 p2: r = 11, j = 4, start = 0 + (5 - 2)·1 = 3
    # pool1 3×3/2: r = 11 + 2·4 = 19, j = 8, start = 3 + 1·4 = 7
    # conv2 5×5 p2: r = 19 + 4·8 = 51, start = 7 + (2 - 2)·8 = 7
    # pool2 3×3/2: r = 51 + 2·8 = 67, j = 16, start = 7 + 8 = 15
    # conv3, conv4, conv5 3×3 p1: r = 67 + 2·16 = 99, 131, 163
    # pool5 3×3/2: r = 163 + 2·16 = 195, j = 32, start = 15 + 16 = 31
    rf = cx.receptive_field("alexnet")
    convs_and_pools = ["features.0", "features.2", "features.3", "features.5", "features.6", "features.8",
                       "features.10", "features.12"]  # fmt: skip
    assert sizes(rf, convs_and_pools) == [11, 19, 51, 67, 99, 131, 163, 195]
    assert (rf.size, rf.stride, rf.start) == (195, 32, 31)
    assert rf.reached_at == "features.12"
    assert "sees 195 px of the 224 px image" in rf.sentence()


def test_vgg16_sees_212_px_of_a_224_px_image():
    # Thirteen 3×3 convs (+2·j each) and five 2×2/2 pools (+1·j, then j doubles):
    # block1: 3, 5; pool 6 (j 2) | block2: 10, 14; pool 16 (j 4) | block3: 24, 32, 40; pool 44 (j 8)
    # block4: 60, 76, 92; pool 100 (j 16) | block5: 132, 164, 196; pool 212 (j 32)
    rf = cx.receptive_field("vgg16")
    convs = [f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
    assert sizes(rf, convs) == [3, 5, 10, 14, 24, 32, 40, 60, 76, 92, 132, 164, 196]
    assert sizes(rf, [f"features.{i}" for i in (4, 9, 16, 23, 30)]) == [6, 16, 44, 100, 212]
    assert (rf.size, rf.stride) == (212, 32) and rf.reached_at == "features.30"
    assert "sees 212 px of the 224 px image" in rf.sentence()


def test_a_dilated_stack_1_2_4():
    # 3×3 convs with dilations 1, 2, 4 (stride 1, so j stays 1): r = 1 + 2·1·1 = 3, 3 + 2·2·1 = 7, 7 + 2·4·1 = 15.
    # The same three convs without dilation: 3, 5, 7. Same parameters: dilation spreads the taps, adds none.
    dilated = "input 64x64x16\nconv 16 3x3 padding same\nconv 16 3x3 dilation 2 padding same\nconv 16 3x3 dilation 4 padding same"
    plain = "input 64x64x16\nconv 16 3x3 padding same\nconv 16 3x3 padding same\nconv 16 3x3 padding same"
    rf, flat = cx.receptive_field(dilated), cx.receptive_field(plain)
    assert sizes(rf, ["conv1", "conv2", "conv3"]) == [3, 7, 15] and rf.stride == 1
    assert sizes(flat, ["conv1", "conv2", "conv3"]) == [3, 5, 7]
    assert cx.profile_spec(dilated).total_params == cx.profile_spec(plain).total_params
    assert rf.layer("conv3").note == "line 4: conv 16 3x3 dilation 4 padding same"  # the typed line, for the table
    assert cx.field_formula(rf.layer("conv3")) == (
        "r = r_in + (k − 1)·d·j_in     j = j_in·s", "r = 7 + (3 − 1)·4·1 = 15     j = 1·1 = 1",
    )  # fmt: skip


def test_mobilenet_v1():
    # Stem 3×3/2: r = 3, j = 2. Each depthwise 3×3 adds 2·j (the pointwise 1×1 adds nothing):
    # block1 s1: 7 | block2 s2: 11 (j 4) | block3: 19 | block4 s2: 27 (j 8) | block5: 43 | block6 s2: 59 (j 16)
    # blocks 7-11: 59 + 5·32 = 219 | block12 s2: 251 (j 32) | block13: 251 + 2·32 = 315
    rf = cx.receptive_field("mobilenetv1_100")
    assert sizes(rf, [f"block{i}.dw.conv" for i in (1, 2, 3, 4, 5, 6, 11, 12, 13)]) == [7, 11, 19, 27, 43, 59, 219, 251, 315]
    assert rf.layer("block13.pw.conv").size == 315  # 1×1: no growth
    assert (rf.size, rf.stride) == (315, 32)
    assert "more than the 224 px image" in rf.sentence()


def test_resnet18_across_its_shortcuts():
    # conv1 7×7/2 p3: r = 7, j = 2; maxpool 3×3/2: r = 7 + 2·2 = 11, j = 4.
    # layer1.0: conv path 11 + 2·4 = 19, + 2·4 = 27; identity shortcut 11; sum: the widest, 27 (conv path).
    # layer1.1: 35, 43 (shortcut 27).
    # layer2.0: conv1 3×3/2: 43 + 2·4 = 51 (j 8), conv2: 51 + 2·8 = 67; downsample 1×1/2: 43 (j 8); sum 67.
    # layer2.1: 83, 99 | layer3.0: 115 (j 16), 147 | layer3.1: 179, 211
    # layer4.0: 243 (j 32), 307 | layer4.1: 371, 435.
    rf = cx.receptive_field("resnet18")
    blocks = ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    assert sizes(rf, blocks) == [27, 43, 67, 99, 147, 211, 307, 435]
    assert rf.layer("layer2.0.downsample").size == 43 and rf.layer("layer2.0.downsample").stride == 8
    assert (rf.size, rf.stride, rf.start) == (435, 32, 0)
    assert rf.reached_at == "layer4.1.conv2"
    first = rf.merges[0]  # which path sets the field at each residual addition
    assert (first.where, first.op, first.widest) == ("layer1.0", "add", "layer1.0.bn2")
    assert dict(first.inputs) == {"layer1.0.bn2": 27, "maxpool": 11}
    assert "layer2.0 (add): layer2.0.bn2 67 px vs layer2.0.downsample 43 px; the widest, layer2.0.bn2, sets the field." in rf.merge_sentences()
    assert len(rf.merges) == 8


def test_resnet50_427_and_resnet34_899():
    # ResNet-50 (torchvision: the stride in the 3×3 conv): 11 after the stem; layer1: 3 × (+2·4) = 35;
    # layer2: 35 + 2·4 = 43 (j 8), then 3 × 16: 91; layer3: 91 + 2·8 = 107 (j 16), 5 × 32: 267;
    # layer4: 267 + 2·16 = 299 (j 32), 2 × 64: 427.
    assert (cx.receptive_field("resnet50").size, cx.receptive_field("resnet50").stride) == (427, 32)
    # ResNet-34 (basic blocks 3-4-6-3): 11 + 6·8 = 59; + 8 + 7·16 = 179; + 16 + 11·32 = 547; + 32 + 5·64 = 899.
    assert cx.receptive_field("resnet34").size == 899


def _support(model: nn.Module, size: int, layer: str, unit: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixels on which one unit really depends: the non-zero gradient with every weight positive (float64)."""
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0 / (p[0].numel() if p.dim() > 1 else 1))
    x = (torch.rand(1, 3, size, size, dtype=torch.float64) + 0.5).requires_grad_(True)
    captured = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: captured.setdefault("y", o))
    model(x)
    handle.remove()
    captured["y"][0, :, unit[0], unit[1]].sum().backward()
    rows, cols = torch.nonzero(x.grad.abs().sum(1)[0] > 0, as_tuple=True)
    return rows.min().item(), cols.min().item(), rows.max().item() + 1, cols.max().item() + 1


def test_the_traced_field_is_exactly_what_a_unit_depends_on_across_shortcuts():
    """Backpropagate one unit of a real ResNet-18 (max pools swapped for average pools of the same geometry,
    so every pixel in the window gets gradient): the pixels with non-zero gradient are the traced square."""
    import torchvision

    model = torchvision.models.resnet18()
    model.maxpool = nn.AvgPool2d(3, 2, 1)
    rf = cx.receptive_field(model, (3, 256, 256))
    for layer, unit in [("layer3.1", (8, 8)), ("layer2.0", (3, 30))]:
        box = cx.field_box(rf.layer(layer), *unit)
        on_image = tuple(int(min(max(v, 0), 256)) for v in box)
        assert _support(model, 256, layer, unit) == on_image, layer
    assert rf.layer("layer3.1").size == 211


class _DenseStyle(nn.Module):
    """Two paths concatenated: a 3×3 and a stack of two 3×3 convs (the DenseNet/Inception pattern)."""

    def __init__(self) -> None:
        super().__init__()
        self.short = nn.Conv2d(3, 4, 3, padding=1)
        self.long = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.short(x), self.long(x)], dim=1)


def test_a_concatenation_takes_its_widest_path():
    rf = cx.receptive_field(_DenseStyle(), (3, 32, 32))
    assert rf.layer("short").size == 3 and rf.layer("long").size == 5  # 3 + 2·1
    assert rf.size == 5
    (merge,) = rf.merges
    assert (merge.op, merge.widest, dict(merge.inputs)) == ("cat", "long", {"short": 3, "long": 5})


def test_a_network_ending_in_a_concatenation_names_the_block_not_one_branch():
    rf = cx.receptive_field("googlenet")  # inception5b concatenates four branches: 1024 channels
    assert (rf.final.name, rf.final.output_shape) == ("inception5b", (1024, 7, 7))
    last = rf.merges[-1]
    assert (last.where, last.op) == ("inception5b", "cat") and rf.size == max(size for _, size in last.inputs)
    assert rf.sentence().startswith(f"The last feature map, inception5b, 1024×7×7, sees {rf.size:.0f} px")


def test_transformers_see_the_whole_image_after_the_first_attention():
    # Patch embedding 16×16/16: r = 16, j = 16. Attention mixes all 14×14 tokens: each sees
    # 16 + 13·16 = 224 px, the whole image.
    rf = cx.receptive_field("deit_tiny_patch16_224")
    assert rf.layer("patch_embed.proj").size == 16
    assert rf.layer("blocks.0.attn").size == 224 and not rf.layer("blocks.0.attn").local
    assert (rf.size, rf.stride) == (224, 16) and not rf.final.local
    assert rf.sentence().startswith("Every unit of the last feature map (norm) sees the whole 224 px image")


def test_squeeze_and_excitation_is_named_as_global_context():
    rf = cx.receptive_field("seresnet50")
    assert rf.size == 427  # the convolutional paths are ResNet-50's
    assert rf.context == "layer1.0.se" and "From layer1.0.se on, every unit also gets a summary of the whole image" in rf.sentence()


def test_every_zoo_model_is_followed_to_its_last_feature_map():
    for key in zoo.ZOO:
        rf = cx.receptive_field(key)
        assert rf.complete and rf.final is not None and rf.size and rf.size >= 32, key
        assert rf.stride in (4, 16, 32), (key, rf.stride)


class _Rolled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.mix = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.roll(self.conv(x), shifts=(2, 2), dims=(2, 3)))


def test_operators_it_cannot_follow_are_named_not_raised():
    rf = cx.receptive_field(_Rolled(), (3, 32, 32))
    assert not rf.complete and rf.final is None and rf.size is None
    assert rf.cannot_follow.startswith("aten.roll in (model) (a cyclic shift moves pixels across the map")
    assert rf.layer("conv").size == 3 and rf.layer("mix").size is None and rf.layer("mix").size_text == "—"
    assert "Up to there they are known: conv sees 3 px" in rf.sentence()
    swin = cx.receptive_field("swin_t")  # window attention reshapes the grid into windows
    assert swin.final is None and swin.cannot_follow.startswith("aten.view (windows) in features.1.0.attn")
    assert "fields after it are unknown" in swin.sentence()


@pytest.mark.parametrize(
    "model, size, error, phrase",
    [
        ("input 32x32x3\nconv 8 3x3\nconv 16 40x40", None, cx.SpecError, "Line 3 ("),
        ("input 32x32x3\nconvolution 8 3x3", None, cx.SpecError, "unknown layer 'convolution'"),
        ("resnet5O", None, cx.ProfileError, "Unknown model 'resnet5O'"),
        ("", None, cx.ProfileError, "No model name given"),
        (nn.Linear(8, 8), (8,), cx.ProfileError, "Receptive fields need an image input"),
        (42, None, cx.ProfileError, "Expected an nn.Module, a model name or a typed network"),
    ],
)
def test_bad_input_gets_a_sentence(model, size, error, phrase):
    with pytest.raises(error) as info:
        cx.receptive_field(model, size)
    assert phrase in str(info.value)


def test_the_field_box_of_a_unit():
    # VGG-16 pool5: r = 212, j = 32, start = 15.5 (each pool adds (2 - 1)/2·j: 0.5 + 1 + 2 + 4 + 8).
    # Unit (3, 3) is centred at 15.5 + 3·32 = 111.5 and sees pixels 111.5 ± 105.5, i.e. 6 .. 217 (212 of
    # them): box edges at 6 and 218. Unit (0, 0) sees -90 .. 121: 122 of its 212 rows and columns are on the image.
    row = cx.receptive_field("vgg16").layer("features.30")
    assert row.start == 15.5
    assert cx.field_box(row, 3, 3) == (6.0, 6.0, 218.0, 218.0)
    assert cx.grid_of(row) == (7, 7)
    assert cx.clip_fraction(cx.field_box(row, 0, 0), 224, 224) == pytest.approx((122 / 212) ** 2)
