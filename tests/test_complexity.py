"""cvdemo.complexity: exact counts for the lecture's exercises and famous networks, formulas, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cvdemo import complexity as cx
from cvdemo import zoo

FIRST_BLOCK = """\
input 32x32x3
conv 8 3x3 stride 1 padding same
conv 16 5x5 stride 2 padding same
flatten
dense 512
dense 4
"""


# --- the hand exercises ------------------------------------------------------------------------


def test_spec_example_counts_every_layer_exactly():
    prof = cx.profile_spec(cx.SPEC_EXAMPLE)
    rows = {r.name: r for r in prof.layers}
    assert [r.name for r in prof.layers] == [
        "conv1", "conv2", "maxpool1", "dwconv1", "conv3", "flatten1", "dense1", "dense2",
    ]  # fmt: skip
    # params: k·k·C_in/groups·C_out + C_out
    assert [r.params for r in prof.layers] == [224, 3_216, 0, 160, 320, 0, 2_097_664, 2_052]
    assert prof.total_params == 2_103_636
    # MACs: k·k·C_in/groups·C_out·H_out·W_out
    assert [r.macs for r in prof.layers] == [
        3 * 3 * 3 * 8 * 32 * 32, 5 * 5 * 8 * 16 * 16 * 16, 0, 3 * 3 * 16 * 8 * 8, 4 * 64 * 8 * 8, 0, 4096 * 512, 512 * 4,
    ]  # fmt: skip
    assert prof.total_macs == 3_165_184 and prof.total_flops == 2 * 3_165_184
    assert rows["conv2"].output_shape == (16, 16, 16)
    assert rows["maxpool1"].output_shape == (16, 8, 8)
    assert rows["flatten1"].output_shape == (4096,)
    assert rows["dense1"].note == "line 8: dense 512"
    assert sum(r.pct_macs for r in prof.layers) == pytest.approx(100.0)


def test_first_block_exercise_totals_2_103_156():
    prof = cx.profile_spec(FIRST_BLOCK)
    assert [r.params for r in prof.layers if r.params] == [224, 3_216, 2_097_664, 2_052]
    assert prof.total_params == 224 + 3_216 + 2_097_664 + 2_052 == 2_103_156


def test_input_size_argument_overrides_the_input_line():
    prof = cx.profile_spec("conv 8 3x3 padding valid\nglobalavgpool\ndense 10", input_size=(1, 28, 28))
    assert prof.input_size == (1, 28, 28)
    assert prof.layer("conv1").output_shape == (8, 26, 26)
    assert prof.layer("conv1").macs == 9 * 8 * 26 * 26
    assert prof.layer("globalavgpool1").output_shape == (8,)


# --- famous networks -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg16() -> cx.Profile:
    return cx.profile("vgg16")  # meta device: shapes only, no 528 MB of weights


@pytest.fixture(scope="module")
def resnet50() -> cx.Profile:
    return cx.profile("resnet50")


def _torchvision_card_gmacs(arch: str) -> float:
    from torchvision.models import get_model_weights

    return list(get_model_weights(arch))[0].meta["_ops"]


def test_resnet50_exact_params_and_torchvisions_own_macs(resnet50):
    assert resnet50.total_params == 25_557_032
    # torchvision's model card says "GFLOPS" 4.089; they are multiply-adds, like ours.
    assert round(resnet50.total_macs / 1e9, 3) == _torchvision_card_gmacs("resnet50")
    assert resnet50.ops.keys() == {"aten.convolution", "aten.addmm"}


def test_vgg16_exact_params_and_where_they_live(vgg16):
    assert vgg16.total_params == 138_357_544
    assert round(vgg16.total_macs / 1e9, 2) == _torchvision_card_gmacs("vgg16")
    fc = sum(r.params for r in vgg16.layers if r.type == "Linear")
    assert fc == 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    conv_macs = sum(r.macs for r in vgg16.layers if r.type == "Conv2d")
    assert conv_macs / vgg16.total_macs > 0.99


def test_names_match_loosely_and_prefer_torchvision():
    assert zoo.resolve("ResNet-50") == ("torchvision", "resnet50")
    assert zoo.resolve("VGG16") == ("torchvision", "vgg16")
    assert zoo.resolve("MobileNetV2") == ("timm", "mobilenetv2_100")  # the zoo's label comes first
    assert zoo.resolve("mobilenet_v2") == ("torchvision", "mobilenet_v2")
    assert zoo.resolve("mobilenetv3_large_100") == ("timm", "mobilenetv3_large_100")
    assert zoo.resolve("timm:resnet50") == ("timm", "resnet50")
    assert cx.profile("timm:resnet50").total_params == 25_557_032


def test_resnet50_paper_gap_is_the_stride_placement(resnet50):
    """He et al. print 3.8G; torchvision strides in the 3x3 conv ("v1.5"). Moving the stride back gives 3.86G."""
    with torch.device("meta"):
        model = zoo.build("resnet50")
    for stage in (model.layer2, model.layer3, model.layer4):
        block = stage[0]
        block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
    v1 = cx.profile(model, (3, 224, 224))  # a module on the meta device is profiled shapes-only
    assert round(v1.total_macs / 1e9, 2) == 3.86
    assert v1.total_params == resnet50.total_params
    assert v1.method == "meta"


def test_lenet5_classic_counts():
    prof = cx.profile("lenet5")
    assert prof.input_size == (1, 32, 32)
    assert prof.total_params == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706
    assert prof.total_macs == 117_600 + 240_000 + 48_000 + 10_080 + 840


# --- MobileNetV1: width and resolution multipliers ---------------------------------------------------


def test_mobilenet_v1_matches_the_papers_tables_6_and_7():
    facts = [f for f in cx.paper_numbers()["facts"] if f["model"].startswith("mobilenetv1_")]
    assert len(facts) == 7  # four widths at 224, three more resolutions at alpha = 1
    for fact in facts:
        res = fact["resolution"]
        prof = cx.profile(fact["model"], (3, res, res))
        assert abs(prof.total_macs / 1e6 - fact["macs"] / 1e6) <= 1.0, fact  # printed to the nearest million
        assert round(prof.total_params / 1e6, 1) == fact["params"] / 1e6, fact  # printed to 0.1M


def test_mobilenet_v1_builder_agrees_with_timms_alpha_1():
    import timm

    with torch.device("meta"):
        theirs = timm.create_model("mobilenetv1_100", pretrained=False)
    assert cx.profile("mobilenetv1_100").total_params == sum(p.numel() for p in theirs.parameters())


def test_width_multiplier_scales_roughly_with_alpha_squared():
    full = cx.profile("mobilenetv1_100").total_macs
    half = cx.profile("mobilenetv1_050").total_macs
    assert 0.24 < half / full < 0.28


# --- transformers: attention matmuls are counted ------------------------------------------------------


def _tiny_vit() -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=10).eval()


def test_attention_matmuls_counted_on_cpu_where_flop_counter_mode_misses_them():
    from torch.utils.flop_counter import FlopCounterMode

    model = _tiny_vit()
    ours = cx.profile(model, (3, 32, 32))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, 32, 32))
    tokens, heads, head_dim = 17, 2, 16
    attention = heads * tokens * tokens * (head_dim + head_dim)  # Q·Kᵀ and softmax·V
    assert ours.total_macs - counter.get_total_flops() // 2 == attention
    assert ours.layer("blocks.0.attn").macs == attention  # charged to the attention block itself
    assert ours.layer("(model)").params == 32 + 17 * 32  # class token + position embedding


def test_vit_is_built_for_the_requested_resolution():
    prof = cx.profile("deit_tiny_patch16_224", (3, 160, 160))
    assert prof.layer("patch_embed.proj").output_shape == (192, 10, 10)


# --- formula view ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["spec", "resnet50", "mobilenetv1_050", "deit_tiny_patch16_224"])
def test_formula_reproduces_every_measured_conv_and_dense_layer(source, resnet50):
    prof = {"spec": lambda: cx.profile_spec(cx.SPEC_EXAMPLE), "resnet50": lambda: resnet50}.get(
        source, lambda: cx.profile(source)
    )()
    checked = 0
    for row in prof.layers:
        f = cx.formula(row)
        if row.type in ("Conv2d", "Linear"):
            assert f is not None, row.name
            assert (f.params, f.macs) == (row.params, row.macs), row.name
            checked += 1
        else:
            assert f is None
    assert checked >= 4


def test_formula_text_shows_the_real_numbers():
    prof = cx.profile_spec(cx.SPEC_EXAMPLE)
    conv2 = cx.formula(prof.layer("conv2"))
    assert conv2.params_numbers == "5·5·8·16 + 16 = 3,216"
    assert conv2.macs_numbers == "5·5·8·16·16·16 = 819,200"
    grouped = cx.formula(prof.layer("conv3"))
    assert grouped.kind == "grouped conv" and grouped.params_numbers == "1·1·(16/4)·64 + 64 = 320"
    depthwise = cx.formula(prof.layer("dwconv1"))
    assert depthwise.kind == "depthwise conv" and depthwise.params == 160
    dense = cx.formula(prof.layer("dense1"))
    assert dense.params_numbers == "4096·512 + 512 = 2,097,664"


# --- spec errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, line, phrase",
    [
        ("", None, "empty"),
        ("conv 8 3x3", 1, "start the network with 'input HxWxC'"),
        ("input 32x32x3\nconvolution 8 3x3", 2, "unknown layer 'convolution'"),
        ("input 32x32\nconv 8 3x3", 1, "expected 'input HxWxC'"),
        ("input 32x32x3\nconv 3x3", 2, "expected 'conv N KxK'"),
        ("input 32x32x3\nconv x 3x3", 2, "the number of filters N"),
        ("input 32x32x3\nconv 8 3y3", 2, "kernel size like 3x3"),
        ("input 32x32x3\nconv 8 3x3 strid 2", 2, "unexpected 'strid'"),
        ("input 32x32x3\nconv 8 3x3 stride", 2, "'stride' needs a value"),
        ("input 4x4x3\nconv 8 5x5", 2, "does not fit its 4x4x3 input"),
        ("input 32x32x3\nconv 8 3x3 groups 2", 2, "groups=2 must divide"),
        ("input 32x32x3\nconv 8 4x4 stride 2 padding same", 2, "even kernel"),
        ("input 32x32x3\ndense 10", 2, "add 'flatten'"),
        ("input 32x32x3\nflatten\nconv 8 3x3", 3, "needs an HxWxC feature map"),
        ("input 32x32x3\nflatten\nmaxpool 2x2", 3, "needs an HxWxC feature map"),
        ("input 3x3x8\nmaxpool 4x4", 2, "larger than its 3x3x8 input"),
        ("input 32x32x3\nrelu\ninput 16x16x3", 3, "must be the first line"),
        ("input 32x32x3\ndropout 2", 2, "dropout P"),
        ("input 32x32x3  # only", 1, "no layers"),
    ],
)
def test_spec_errors_name_the_line_and_what_was_expected(spec, line, phrase):
    with pytest.raises(cx.SpecError) as info:
        cx.profile_spec(spec)
    assert info.value.line == line
    assert phrase in str(info.value)
    if line is not None:
        assert str(info.value).startswith(f"Line {line} (")


def test_spec_accepts_comments_aliases_and_options():
    prof = cx.profile_spec(
        "# a comment\ninput 28x28x1\nConv 16 3x3 padding 1 dilation 1 nobias  # C1\nbn\nRELU\n"
        "maxpool 2x2\ndwconv 3x3 stride 2 padding same\ngap\nfc 10\nsoftmax\ndropout 0.2"
    )
    assert prof.layer("conv1").params == 9 * 16  # no bias
    assert prof.layer("bn1").params == 32
    assert prof.layer("dwconv1").output_shape == (16, 7, 7)
    assert prof.layer("dense1").params == 16 * 10 + 10


# --- robustness for arbitrary modules ------------------------------------------------------------------


def test_profiling_a_module_leaves_it_unchanged():
    import torchvision

    model = torchvision.models.resnet18(num_classes=10).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prof = cx.profile(model, (3, 64, 64))
    assert prof.method == "forward" and prof.total_params == sum(p.numel() for p in model.parameters())
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched
    assert not any(h for m in model.modules() for h in (m._forward_hooks, m._forward_pre_hooks))


def test_shared_weights_once_and_repeated_calls_twice():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.head = nn.Linear(8, 8)
            self.head.weight = self.fc.weight  # tied

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.fc(self.fc(x)))

    prof = cx.profile(Twice(), (8,))
    assert prof.total_params == 64 + 8 + 8  # the tied weight once, two biases
    assert prof.layer("fc").calls == 2 and prof.layer("fc").macs == 2 * 64
    assert prof.total_macs == 3 * 64
    assert cx.formula(prof.layer("fc")).macs == 128


def test_quantized_layers_are_priced_like_float_ones():
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    prof = cx.profile(quantized, (32,))
    assert prof.total_params == 32 * 16 + 16 + 16 * 4 + 4
    assert prof.total_macs == 32 * 16 + 16 * 4


def test_bad_inputs_give_readable_errors():
    with pytest.raises(cx.ProfileError, match="Unknown model 'resnet5O'.*Did you mean"):
        cx.profile("resnet5O")
    with pytest.raises(cx.ProfileError, match="cannot run on a 3×8×8 input"):
        cx.profile(nn.Sequential(nn.Conv2d(3, 4, 5), nn.Conv2d(4, 4, 5)), (3, 8, 8))
    with pytest.raises(cx.ProfileError, match="positive"):
        cx.profile(nn.Linear(3, 3), (0, 3))
    with pytest.raises(cx.ProfileError, match="nn.Module or a model name"):
        cx.profile(42)  # type: ignore[arg-type]


def test_every_zoo_model_profiles_at_its_native_size():
    for key, model in zoo.ZOO.items():
        if key.startswith(("vgg", "resnet50", "mobilenetv1", "lenet", "deit")):
            continue  # covered exactly above
        prof = cx.profile(key)
        assert prof.method == "meta", key
        assert prof.total_params > 50_000 and prof.total_macs > 10_000_000, key
        assert prof.input_size == (model.channels, model.resolution, model.resolution)
        assert prof.total_params == sum(r.params for r in prof.layers)


# --- breakdown, separable convs, references ------------------------------------------------------------


def test_alexnet_breakdown_tells_the_lectures_story():
    prof = cx.profile("alexnet")
    groups = cx.breakdown(prof)
    assert len(groups) == 8  # five convs, three dense layers
    convs, dense = groups[:5], groups[5:]
    assert sum(g.params for g in dense) / prof.total_params > 0.9  # parameters in the FC layers
    assert sum(g.macs for g in convs) / prof.total_macs > 0.9  # compute in the convolutions
    assert max(groups, key=lambda g: g.activation_bytes) is groups[0]  # memory in the early layers
    assert sum(g.params for g in groups) == prof.total_params


def test_big_networks_are_grouped_by_block(resnet50):
    groups = cx.breakdown(resnet50)
    assert 10 <= len(groups) <= 40
    assert "layer1.0" in [g.name for g in groups]
    assert sum(g.macs for g in groups) == resnet50.total_macs


@pytest.mark.parametrize("kernel, c_in, c_out", [(3, 32, 64), (5, 16, 256), (1, 8, 8)])
def test_separable_saving_matches_the_lecture_formula(kernel, c_in, c_out):
    saving = cx.separable_saving(kernel, c_in, c_out, 14)
    assert saving.standard.total_macs == kernel * kernel * c_in * c_out * 14 * 14
    assert saving.measured_ratio == pytest.approx(1 / c_out + 1 / kernel**2)
    assert saving.formula_ratio == pytest.approx(saving.measured_ratio)


def test_paper_numbers_are_well_formed_and_close_to_ours(vgg16, resnet50):
    data = cx.paper_numbers()
    for fact in data["facts"]:
        assert fact["model"] in zoo.ZOO and fact["source"] in data["sources"]
        assert fact["params"] or fact["macs"]
        assert data["sources"][fact["source"]]["url"].startswith("http")
    refs = cx.references("vgg16", vgg16)
    sze = next(r for r in refs if r.source.startswith("V. Sze"))
    assert sze.params_ratio == pytest.approx(1.0, abs=0.01) and sze.macs_ratio == pytest.approx(1.0, abs=0.01)
    card = next(r for r in cx.references("resnet50", resnet50) if r.source.startswith("torchvision"))
    assert card.params == 25_557_032


# --- the counters that disagree ----------------------------------------------------------------------


def test_counters_disagree_for_the_documented_reasons():
    comparison = cx.compare_counters("resnet18", (3, 64, 64))
    ours = comparison.reading("cvdemo")
    torch_reading = comparison.reading("torch.utils")
    fvcore = comparison.reading("fvcore")
    assert torch_reading.reported == 2 * ours.reported  # the 2x convention
    assert fvcore.by_op["conv"] + fvcore.by_op["linear"] == ours.reported  # fvcore's "flops" are MACs
    assert fvcore.reported - ours.reported == fvcore.by_op["batch_norm"] + fvcore.by_op["adaptive_avg_pool2d"]
    text = " ".join(comparison.explanations)
    assert "exactly 2 × our" in text and "batch_norm" in text and "aten::add_" in text


def test_counters_explain_missing_attention():
    comparison = cx.compare_counters(_tiny_vit(), (3, 32, 32))
    text = " ".join(comparison.explanations)
    assert "_scaled_dot_product_flash_attention_for_cpu" in text  # FlopCounterMode's gap
    assert "aten::scaled_dot_product_attention" in text  # fvcore's gap
    assert "layer_norm" in text


def test_models_too_big_for_the_classroom_are_not_built_for_real(monkeypatch):
    monkeypatch.setattr(cx, "MAX_REAL_PARAMS", 1_000_000)
    with pytest.raises(cx.ProfileError, match="11,689,512 parameters: too big"):
        cx.latency_of("resnet18")


def test_latency_is_measured_and_positive():
    lat = cx.measure_latency(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), (3, 32, 32), repeats=3, warmup=1)
    assert 0 < lat.best_ms <= lat.median_ms and lat.repeats == 3 and lat.threads >= 1
    assert math.isfinite(lat.median_ms)
