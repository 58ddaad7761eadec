"""cvdemo.complexity: exact counts for the lecture's exercises and famous networks, formulas, errors."""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest
import torch
from torch import nn

from cvdemo import complexity as cx
from cvdemo import zoo
from cvdemo.complexity import memory_budget, profiler
from cvdemo import results

FIRST_BLOCK = cx.LECTURE_EXERCISES["Two-convolution block (exercise)"]  # the quiz's own exercise


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


def test_every_zoo_model_profiles_at_its_native_size_and_fits_the_memory_budget():
    for key, model in zoo.ZOO.items():
        prof = cx.profile(key)
        estimate = cx.memory_estimate(prof)
        assert estimate.fits(), estimate.sentence(key)  # counters and latency run every zoo model at its size
        if key.startswith(("vgg", "resnet50", "mobilenetv1", "lenet", "deit")):
            continue  # covered exactly above
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


def test_models_over_the_memory_budget_are_not_built_for_real(monkeypatch):
    monkeypatch.setattr(memory_budget, "RUN_BUDGET_BYTES", 20 * 2**20)
    with rss_watch() as grew, pytest.raises(cx.OverBudget, match=r"ResNet-18 needs ~\d+ MB .*weights 44\.6 MB.*limit here is 20 MB"):
        cx.latency_of("resnet18")
    assert grew() < 200 * 2**20
    with pytest.raises(cx.OverBudget):
        cx.compare_counters("resnet18", (3, 64, 64))


def test_latency_is_measured_and_positive():
    lat = cx.measure_latency(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), (3, 32, 32), repeats=3, warmup=1)
    assert 0 < lat.best_ms <= lat.median_ms and lat.repeats == 3 and lat.threads >= 1
    assert math.isfinite(lat.median_ms)


# --- names: everything the page offers profiles; junk gets a sentence ------------------------------


@contextlib.contextmanager
def rss_watch(every: float = 0.002) -> Iterator[Callable[[], int]]:
    """Yields a function giving the largest RSS growth (bytes) seen while the block ran, sampled with psutil."""
    process = psutil.Process()
    start = process.memory_info().rss
    top = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            top[0] = max(top[0], process.memory_info().rss)
            done.wait(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: top[0] - start
    finally:
        done.set()
        sampler.join()
        top[0] = max(top[0], process.memory_info().rss)


# torchvision's model cards (weights.meta num_params and _ops, "GFLOPS" that are GMACs), one model per
# family at the card's resolution; "tv:" picks torchvision where the zoo has a timm model of that name.
TORCHVISION_FAMILIES = [
    "alexnet", "tv:convnext_tiny", "densenet121", "tv:efficientnet_b0", "efficientnet_v2_s", "googlenet",
    "maxvit_t", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "regnet_x_400mf", "regnet_y_400mf",
    "regnet_y_128gf", "resnext50_32x4d", "shufflenet_v2_x0_5", "squeezenet1_0", "swin_t", "swin_v2_t",
    "vgg11_bn", "vit_b_16", "wide_resnet50_2",
]  # fmt: skip


@pytest.mark.parametrize("name", TORCHVISION_FAMILIES)
def test_torchvision_families_profile_with_their_model_cards_counts(name):
    card = cx.torchvision_card(name)
    size = (3, card["resolution"], card["resolution"])
    with rss_watch() as grew:
        prof = cx.profile(name, size)
    assert prof.method == "meta"  # shapes only: regnet_y_128gf's 645M parameters (2.4 GB) are never allocated
    assert grew() < 200 * 2**20, grew()
    assert prof.total_params == card["params"]
    assert round(prof.total_macs / 1e9, 3) == round(card["gmacs"], 3)


def test_regnets_size_their_stages_with_tensor_arithmetic_and_still_build_on_meta():
    """RegNet's builder computes stage widths with torch and .tolist(): the default of the page's name box."""
    model = zoo.build("regnet_y_400mf")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert all(b.device.type == "meta" for b in model.buffers())
    prof = cx.profile("regnet_y_400mf")
    assert (prof.total_params, prof.total_macs) == (4_344_144, 401_842_848)  # card: 4,344,144 and 0.402 G


def test_inception_v3_differs_from_its_card_by_exactly_the_auxiliary_classifier():
    from torchvision.models.inception import InceptionAux

    card = cx.torchvision_card("inception_v3")
    aux = sum(p.numel() for p in InceptionAux(768, 1000).parameters())
    assert cx.profile("inception_v3").total_params == card["params"] - aux == 23_834_568


@pytest.mark.parametrize(
    "name",
    ["resnet26d", "regnetx_002", "convnext_atto", "mobilevitv2_050", "levit_128s", "efficientvit_b0",
     "vitamin_small_224"],  # the last runs a dummy input through its stem while it is being built
)  # fmt: skip
def test_timm_models_count_on_meta_what_a_real_build_has(name):
    import timm

    prof = cx.profile(name)
    real = timm.create_model(name, pretrained=False)
    assert prof.method == "meta"
    assert prof.total_params == sum(p.numel() for p in real.parameters())
    assert prof.total_buffers == sum(b.numel() for b in real.buffers())


def test_meta_builds_leave_other_threads_real_models_alone():
    """The registration hooks act only in the building thread: a session loading a real model meanwhile is untouched."""
    started, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def other_session() -> None:
        started.wait()
        seen.append(nn.Linear(4, 4).weight.device.type)
        release.set()

    thread = threading.Thread(target=other_session)
    thread.start()
    with zoo.state_on("meta"):
        started.set()
        release.wait(10)
        assert nn.Linear(4, 4).weight.device.type == "meta"
    thread.join()
    assert seen == ["cpu"]
    assert nn.Linear(4, 4).weight.device.type == "cpu"


@pytest.mark.parametrize(
    "name, phrase",
    [
        ("", "No model name given: type one, e.g. resnet50"),
        ("   \t ", "No model name given"),
        ("x" * 5000, "That name is 5,000 characters long; model names are short (at most 120)"),
        ("resnet5O", "Unknown model 'resnet5O': not in the zoo, torchvision or timm. Did you mean: resnet50, "),
        ("**bold** <b>x</b>", "Unknown model '**bold** <b>x</b>'"),
        ("timm:", "timm has no model ''"),
    ],
)
def test_junk_names_get_one_sentence(name, phrase):
    with pytest.raises(cx.ProfileError) as info:
        cx.profile(name)  # type: ignore[arg-type]
    assert str(info.value).startswith(phrase)
    assert len(str(info.value)) < 300
    assert "resnet50, resnet50" not in str(info.value)  # a name in the zoo, torchvision and timm is suggested once


def test_a_missing_name_is_not_a_crash():
    with pytest.raises(zoo.UnknownModel, match="No model name given"):
        zoo.resolve(None)  # type: ignore[arg-type]  # what a cleared Gradio dropdown sends


# --- memory budget: estimated from shapes, refused before allocating -----------------------------


def test_live_memory_follows_views_and_in_place_layers():
    """Peak activation memory is replayed: an in-place ReLU and a Flatten (a view) add nothing."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(80_000, 10))
    with torch.device("meta"):
        meta = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(80_000, 10))
    for module in (model, meta):
        prof = cx.profile(module, (3, 100, 100))
        assert prof.peak_activation_bytes == 4 * (30_000 + 80_000 + 10)  # input + conv output + logits
        assert prof.activation_bytes == 4 * (80_000 + 80_000 + 10)  # the per-layer sum counts the view's output


# The three typed networks the browser walk found: a 10,000 x 10,000 input, a 600M-parameter dense layer,
# a 1e8-wide dense layer (60 TB of weights: the allocator's own message before).
HUGE_SPECS = {
    "10k input": ("input 10000x10000x3\nconv 8 3x3\nrelu\nglobalavgpool\ndense 10", 3 * 9 * 8 + 8 + 8 * 10 + 10,
                  3 * 9 * 8 * 9998 * 9998 + 8 * 10),
    "600M dense": ("input 224x224x3\nflatten\ndense 4000", 150_528 * 4000 + 4000, 150_528 * 4000),
    "1e8 dense": ("input 224x224x3\nflatten\ndense 100000000", 150_528 * 10**8 + 10**8, 150_528 * 10**8),
}  # fmt: skip


@pytest.mark.parametrize("key", list(HUGE_SPECS))
def test_huge_typed_networks_are_refused_before_allocating_and_still_counted(key):
    spec, params, macs = HUGE_SPECS[key]
    with rss_watch() as grew:
        prof = cx.profile_spec(spec)
        with pytest.raises(cx.OverBudget) as info:
            cx.compare_spec_counters(spec)
    assert grew() < 200 * 2**20, f"{grew() / 2**20:.0f} MB"
    assert (prof.total_params, prof.total_macs) == (params, macs)  # the counts from shapes stand
    message = str(info.value)
    assert message.startswith("This network needs ~") and "for weights and activations" in message
    assert "the limit here is 1 GB per run" in message and "counted from shapes alone" in message
    estimate = info.value.estimate
    assert estimate.weights == 4 * params and estimate.total > memory_budget.RUN_BUDGET_BYTES
    assert f"needs ~{memory_budget.format_bytes(estimate.total)} " in message


def test_the_messages_numbers():
    assert "needs ~2.31 GB" in str(cx.OverBudget(cx.memory_estimate(cx.profile_spec(HUGE_SPECS["600M dense"][0]))))
    assert "weights 54.8 TB" in str(cx.OverBudget(cx.memory_estimate(cx.profile_spec(HUGE_SPECS["1e8 dense"][0]))))
    assert [memory_budget.format_bytes(n) for n in (512, 2048, 1_008 * 2**20, 2**30, 5.5 * 2**40)] == [
        "512 bytes", "2 KB", "0.984 GB", "1 GB", "5.5 TB",
    ]  # fmt: skip
    assert [cx.compact(n) for n in (999, 61_100_840, 138_357_544, 15_470_264_320, 17_563_828_224)] == [
        "999", "61.1 M", "138.4 M", "15.47 G", "17.56 G",
    ]  # fmt: skip


def test_zoo_models_at_large_inputs_are_refused_but_profiled():
    with rss_watch() as grew:
        prof = cx.profile("vgg16", (3, 1024, 1024))
        with pytest.raises(cx.OverBudget, match=r"VGG-16 needs ~[\d.]+ GB .*weights 528 MB"):
            cx.compare_counters("vgg16", (3, 1024, 1024))
        with pytest.raises(cx.OverBudget):
            cx.latency_of("vgg16", (3, 1024, 1024))
    assert grew() < 200 * 2**20
    assert prof.total_params == 138_357_544 and prof.layer("classifier.0").params == 25088 * 4096 + 4096
    assert cx.memory_estimate(cx.profile("vgg19")).fits()  # the biggest zoo model runs at its native size


_PEAK_SCRIPT = """
import re, sys, warnings
warnings.simplefilter("ignore")
import fvcore.nn
from cvdemo import complexity as cx

def peak_rss():  # VmHWM: the process's peak resident memory, reset below
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

spec = sys.argv[1]
estimate = cx.memory_estimate(cx.profile_spec(spec))
# A forked child starts with its parent's peak (pytest's, gigabytes): reset it to the current RSS.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = peak_rss()
cx.compare_spec_counters(spec)
print(peak_rss() - before, estimate.total)
"""


def test_the_estimate_is_above_the_real_peak_of_the_three_counters():
    """Measured in a fresh process (peak RSS): the three counters' real forward passes stay under the estimate."""
    from conftest import REPO

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")

    spec = "input 1000x1000x3\nconv 8 3x3\nrelu\nconv 16 3x3 stride 2\nbn\nrelu\nglobalavgpool\ndense 10"
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, spec], capture_output=True, text=True, cwd=REPO,
                         timeout=600, check=True)  # fmt: skip
    grew, estimate = (int(v) for v in out.stdout.split()[-2:])
    assert 30 * 2**20 < grew <= estimate, (grew, estimate)


def test_a_model_needing_real_values_runs_for_real_only_if_its_weights_fit(monkeypatch):
    real_run = profiler._run

    def meta_fails(model, example, *args):  # as a forward() calling .item() would on the meta device
        if example.device.type == "meta":
            raise RuntimeError("Tensor.item() cannot be called on meta tensors")
        return real_run(model, example, *args)

    monkeypatch.setattr(profiler, "_run", meta_fails)  # where profile() looks it up
    results.process_cache().clear()  # named models' profiles are remembered per process: profile anew
    prof = cx.profile("resnet18", (3, 64, 64))
    assert prof.method == "forward" and prof.total_params == 11_689_512
    monkeypatch.setattr(memory_budget, "RUN_BUDGET_BYTES", 20 * 2**20)
    results.process_cache().clear()  # a remembered profile costs no memory: ask for a new run
    with pytest.raises(cx.OverBudget, match=r"weights 44\.6 MB, activations unknown until it runs\); the limit here is 20 MB"):
        cx.profile("resnet18", (3, 64, 64))
