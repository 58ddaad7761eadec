"""cvdemo.compression: every technique on small models with real numbers, compare(), bad inputs.

Small networks keep the techniques fast; the one check that needs the real pretrained model
(static INT8 keeps EfficientNet-Lite0's predictions) uses 16 calibration and 40 evaluation images.
"""

from __future__ import annotations

import io
import time
import zipfile

import pandas as pd
import pytest
import torch
import torch.nn as nn

from cvdemo import compression as cx
from cvdemo.stats import wilson_interval

torch.set_num_threads(2)


def _small_cnn(seed: int = 0, classes: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return cx.tiny_cnn(classes, width=16).eval()


def _images(n: int = 12, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _eval_set(n: int = 12, classes: int = 10) -> cx.EvalSet:
    labels = torch.arange(n) % classes
    return cx.EvalSet(_images(n), labels, [f"img{i}" for i in range(n)], "random test images")


# --- CPU flags ---------------------------------------------------------------------------------------------


def test_cpu_features_from_cpuinfo(tmp_path):
    avx2_only = tmp_path / "avx2"
    avx2_only.write_text("processor\t: 0\nmodel name\t: Some EPYC\nflags\t\t: fpu sse4_2 avx avx2 fma f16c\n")
    cpu = cx.cpu_features(avx2_only)
    assert cpu.model_name == "Some EPYC" and cpu.avx2 and not cpu.avx512 and not cpu.vnni and not cpu.amx
    assert "no VNNI" in cpu.summary() and cpu.relevant_flags == ["avx", "avx2", "f16c", "fma", "sse4_2"]
    server = tmp_path / "vnni"
    server.write_text("flags : avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_int8\n")
    cpu = cx.cpu_features(server)
    assert cpu.avx512 and cpu.vnni and cpu.bf16 and cpu.amx and "INT8 dot-product (VNNI)" in cpu.summary()
    assert cx.cpu_features(tmp_path / "missing").flags == frozenset()
    here = cx.cpu_features()  # CPUID as this process sees it: what ONNX Runtime's kernels dispatch on
    capabilities = torch.cpu.get_capabilities()
    assert here.source == "CPUID" and isinstance(here.flags, frozenset)
    assert here.avx2 == bool(capabilities.get("avx2")) and here.avx512 == bool(capabilities.get("avx512_f"))
    assert here.vnni == bool(capabilities.get("avx512_vnni") or capabilities.get("avx_vnni"))
    assert set(here.int8_flags) <= {"avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"}


# --- pruning -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_unstructured_pruning_zeroes_weights_but_keeps_shapes(scope):
    model = _small_cnn()
    variant = cx.prune_unstructured(model, 0.6, scope)
    original = cx.original_variant(model)
    params, nonzero = variant.parameter_counts()
    params0, nonzero0 = original.parameter_counts()
    assert params == params0  # same tensors ...
    weights = sum(r["weights"] for r in variant.layers)
    zeros = sum(r["zeros"] for r in variant.layers)
    assert zeros == pytest.approx(0.6 * weights, abs=len(variant.layers))  # ... with 60% of conv/linear weights zero
    assert nonzero0 - nonzero == zeros
    if scope == "layer":
        assert all(abs(r["sparsity"] - 0.6) < 0.05 for r in variant.layers)
    assert len(variant.file_bytes()) == pytest.approx(len(original.file_bytes()), rel=0.01)  # dense file
    assert len(__import__("zlib").compress(variant.file_bytes())) < 0.8 * len(__import__("zlib").compress(original.file_bytes()))
    assert next(model.parameters()).count_nonzero() == next(model.parameters()).numel()  # original untouched


@pytest.mark.parametrize("amount, words", [(0.0, "removes nothing"), (1.0, "every weight"), (1.5, "every weight")])
def test_pruning_rejects_0_and_100_percent(amount, words):
    with pytest.raises(cx.CompressionError, match=words):
        cx.prune_unstructured(_small_cnn(), amount)
    with pytest.raises(cx.CompressionError, match=words):
        cx.prune_structured(_small_cnn(), amount, _images(1))


def test_structured_pruning_removes_channels():
    model = _small_cnn()
    variant = cx.prune_structured(model, 0.5, _images(1))
    out = variant.module(_images(2))
    assert out.shape == (2, 10)  # the classifier keeps its classes
    params, _ = variant.parameter_counts()
    params0, _ = cx.original_variant(model).parameter_counts()
    assert params < 0.4 * params0  # halving channels on both sides of a conv quarters it
    convs = [r for r in variant.layers if r["kind"] == "Conv2d"]
    assert all(r["channels after"] == r["channels before"] // 2 for r in convs)
    assert variant.layers[-1]["channels after"] == 10
    assert cx.count_macs(variant.module, (3, 32, 32)) < 0.4 * cx.count_macs(model, (3, 32, 32))
    assert len(variant.file_bytes()) < 0.45 * len(cx.original_variant(model).file_bytes())
    deployed = cx.to_onnx_runtime(variant.module, (3, 32, 32), like=variant)
    assert (deployed.technique, deployed.runtime, deployed.layers) == ("prune_structured", cx.RUNTIME_ORT, variant.layers)
    assert deployed.name == "Structured 50% channels, ONNX Runtime"
    x = _images(4)
    torch.testing.assert_close(deployed.predict(x), variant.predict(x), atol=1e-4, rtol=1e-4)


# --- low-rank ------------------------------------------------------------------------------------------------


def test_low_rank_linear_is_exact_on_a_low_rank_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    with torch.no_grad():  # make the first layer exactly rank 5
        model[1].weight.copy_(torch.randn(64, 5) @ torch.randn(5, 48))
    variant = cx.low_rank(model, energy=0.999, layers=["1"])
    row = variant.layers[0]
    assert row["rank"] == 5 and row["status"] == "factorised" and row["params after"] == 5 * (64 + 48)
    x = torch.randn(4, 3, 4, 4)
    torch.testing.assert_close(variant.module(x), model(x), atol=1e-4, rtol=1e-4)
    assert isinstance(variant.module[1], nn.Sequential)


def test_low_rank_conv_becomes_kxk_then_1x1():
    model = _small_cnn()
    variant = cx.low_rank(model, rank=4)
    factorised = [r for r in variant.layers if r["status"] == "factorised"]
    assert factorised and all(r["rank"] == 4 for r in factorised)
    name = factorised[-2]["layer"]  # a conv
    pair = variant.module.get_submodule(name)
    assert pair[0].kernel_size == (3, 3) and pair[0].out_channels == 4 and pair[1].kernel_size == (1, 1)
    assert variant.parameter_counts()[0] < cx.original_variant(model).parameter_counts()[0]
    assert variant.module(_images(2)).shape == (2, 10)
    # a rank too large for small layers skips them when applied everywhere ...
    assert any(r["status"].startswith("skipped: rank") for r in cx.low_rank(model, rank=20).layers)


def test_low_rank_bad_ranks_are_explained():
    model = _small_cnn()
    last = [r for r in cx.factorisable_layers_of(model)][0]
    with pytest.raises(cx.CompressionError, match="rank is at most 10"):
        cx.low_rank(model, rank=500, layers=[last])  # Linear 64 -> 10
    with pytest.raises(cx.CompressionError, match="No layer was factorised"):
        cx.low_rank(model, energy=1.0)
    with pytest.raises(cx.CompressionError, match="at least 1"):
        cx.low_rank(model, rank=0)
    with pytest.raises(cx.CompressionError, match="not a Linear"):
        cx.low_rank(model, rank=2, layers=["nope"])


# --- quantization ---------------------------------------------------------------------------------------------


def test_dynamic_int8_quantizes_only_linear_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 512), nn.ReLU(),
                          nn.Linear(512, 10)).eval()
    variant = cx.quantize_dynamic_int8(model)
    kinds = {r["op"]: r["quantized"] for r in variant.layers}
    assert kinds == {"Conv2d": False, "Linear": True}
    assert variant.file_format == "torch.save" and variant.downloads() == {}
    assert len(variant.file_bytes()) < 0.4 * len(cx.original_variant(model).file_bytes())
    x = torch.randn(4, 3, 8, 8)
    assert (variant.predict(x).argmax(1) == model(x).argmax(1)).float().mean() >= 0.75


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_weights_halve_the_file(dtype):
    model = _small_cnn()
    variant = cx.cast_weights(model, dtype)
    assert len(variant.file_bytes()) == pytest.approx(len(cx.original_variant(model).file_bytes()) / 2, rel=0.05)
    assert variant.predict(_images(2)).dtype == torch.float32
    with pytest.raises(cx.CompressionError, match="float16 or bfloat16"):
        cx.cast_weights(model, torch.int8)


def test_shape_arithmetic_is_never_quantized():
    """timm's "same" padding exported by the TorchScript exporter computes pads from shapes in float."""
    import warnings

    from timm.layers import Conv2dSame

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Conv2dSame(3, 4, 3, stride=2).eval(), (torch.randn(1, 3, 16, 16),), buffer, dynamo=False,
                          input_names=["input"], dynamic_axes={"input": {0: "batch"}})
    import onnx

    nodes = {n.name: n.op_type for n in onnx.load_from_string(buffer.getvalue()).graph.node}
    excluded = cx.shape_computation_nodes(buffer.getvalue())
    assert "Shape" in {nodes[n] for n in excluded} and "Ceil" in {nodes[n] for n in excluded}
    assert not {nodes[n] for n in excluded} & {"Conv", "Pad"}  # the data path stays quantizable


def test_static_int8_keeps_efficientnet_predictions():
    """Issue 13's goal on 40 ants & bees images: >= 95% top-1 agreement with FP32, with the recipe this CPU gets
    and with the unsigned-weight recipe (exact integer math on every x86 CPU, AVX2 included)."""
    model = cx.backbone("efficientnet_lite0")
    eval_set = cx.standard_eval_set("efficientnet_lite0", "hymenoptera", 40)
    assert eval_set.labeled == 40 and set(eval_set.labels.tolist()) == {309, 310}
    fp32 = cx.to_onnx_runtime(model, onnx_model=cx.backbone_onnx("efficientnet_lite0"))
    reference = cx.predictions(cx.original_variant(model), eval_set)
    assert (cx.predictions(fp32, eval_set) == reference).all()  # the runtime alone changes nothing
    calibration = cx.train_images("efficientnet_lite0", 16)
    cpu = cx.cpu_features()
    for recipe in dict.fromkeys([cx.int8_recipe(cpu).key, "no_vnni"]):  # the VNNI recipe saturates without VNNI
        int8 = cx.quantize_int8(model, calibration, onnx_model=fp32.onnx_model, cpu=cpu, recipe=recipe)
        assert [r["weights"] for r in int8.layers].count("FP32") == 1 and not int8.layers[0]["quantized"]
        assert sum(r["quantized"] for r in int8.layers) == len(int8.layers) - 1 == 49  # 48 Conv + the classifier
        assert len(int8.file_bytes()) < 0.35 * len(fp32.file_bytes())  # 8-bit weights, 4x smaller
        agreement = float((cx.predictions(int8, eval_set) == reference).float().mean())
        assert agreement >= 0.95, f"{recipe}: {agreement:.3f}"
    with pytest.raises(cx.CompressionError, match="calibration images"):
        cx.quantize_int8(model, torch.empty(0, 3, 224, 224), onnx_model=fp32.onnx_model)


def _depthwise_net() -> nn.Module:
    """Stem conv, depthwise conv, pointwise conv, classifier: one layer of each kind the INT8 recipes treat apart."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU6(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU6(),
        nn.Conv2d(16, 32, 1), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).eval()
    with torch.no_grad():  # a near-dead channel, as BatchNorm folding leaves them: its bias must survive int32
        net[4].weight[5].mul_(1e-9)
        net[4].bias[5] = 3.0
    return net


def _stored_weight_types(onnx_model: bytes) -> dict[str, str]:
    """Conv/Gemm node -> the element type of the initializer behind its weight (read from the graph itself)."""
    import onnx

    graph = onnx.load_from_string(onnx_model).graph
    types = {init.name: onnx.TensorProto.DataType.Name(init.data_type) for init in graph.initializer}
    source = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return {n.op_type + str(i): types[source.get(n.input[1], n.input[1])]
            for i, n in enumerate(x for x in graph.node if x.op_type in ("Conv", "Gemm"))}


def test_int8_recipe_follows_vnni_keeps_the_stem_float_and_biases_intact():
    import onnx
    from onnx import numpy_helper

    net = _depthwise_net()
    images = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    vnni = cx.CpuFeatures("server", frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni"}), 2)
    laptop = cx.CpuFeatures("laptop", frozenset({"avx2", "fma"}), 2)
    alder_lake = cx.CpuFeatures("desktop", frozenset({"avx2", "avx_vnni"}), 2)
    assert cx.int8_recipe(vnni).key == cx.int8_recipe(alder_lake).key == "vnni"
    assert cx.int8_recipe(laptop).key == "no_vnni"

    signed = cx.quantize_int8(net, images, cpu=vnni)
    unsigned = cx.quantize_int8(net, images, cpu=laptop)
    # stem, depthwise, pointwise, classifier
    assert list(_stored_weight_types(signed.onnx_model).values()) == ["FLOAT", "INT8", "INT8", "INT8"]
    assert list(_stored_weight_types(unsigned.onnx_model).values()) == ["FLOAT", "INT8", "UINT8", "UINT8"]
    assert [r["weights"] for r in unsigned.layers] == ["FP32", "INT8", "UINT8", "UINT8"]
    assert [r["quantized"] for r in unsigned.layers] == [False, True, True, True]
    assert "CPUs without VNNI" in unsigned.notes[0] and "first convolution stays FP32" in unsigned.notes[0]
    assert "CPUs with VNNI" in signed.notes[0] and any("AVX2-only" in n for n in signed.notes)
    per_tensor = cx.quantize_int8(net, images, cpu=laptop, per_channel=False)
    assert list(_stored_weight_types(per_tensor.onnx_model).values()) == ["FLOAT", "INT8", "UINT8", "UINT8"]

    for variant in (signed, unsigned):  # the near-dead channel keeps its bias (int32 overflow would clip it)
        graph = onnx.load_from_string(variant.onnx_model).graph
        arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        conv = [n for n in graph.node if n.op_type == "Conv"][2]
        dq = next(n for n in graph.node if n.output[0] == conv.input[2])
        bias = arrays[dq.input[0]].astype("float64") * arrays[dq.input[1]]
        assert bias[5] == pytest.approx(3.0, rel=1e-3)
        x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            expected = net(x)
        assert torch.corrcoef(torch.stack([variant.predict(x).flatten(), expected.flatten()]))[0, 1] > 0.99

    with pytest.raises(cx.CompressionError, match="Unknown INT8 recipe"):
        cx.quantize_int8(net, images, recipe="int4")


# --- compare ----------------------------------------------------------------------------------------------------


def test_compare_table_has_every_column():
    model = _small_cnn()
    eval_set = _eval_set(12)
    variants = [cx.prune_unstructured(model, 0.5), cx.cast_weights(model, torch.bfloat16),
                cx.to_onnx_runtime(model, (3, 32, 32))]
    calls = []
    table = cx.compare(model, variants, eval_set, repeats=2, warmup=1, progress=lambda f, t: calls.append(f))
    assert list(table.columns) == cx.COLUMNS and len(table) == 4
    original, pruned, bf16, ort = (table.iloc[i] for i in range(4))
    assert original["agreement"] == 1.0 and original["speed-up b1"] == 1.0
    assert ort["agreement"] == 1.0 and ort["top-1"] == original["top-1"]  # same FP32 network
    assert pruned["non-zeros"] < 0.75 * original["non-zeros"] and pruned["params"] == original["params"]
    assert pruned["MMACs"] == original["MMACs"] == cx.count_macs(model, (3, 32, 32)) / 1e6 > 0
    assert bf16["file MB"] == pytest.approx(original["file MB"] / 2, rel=0.05)
    assert (table[["latency b1 ms", "latency b8 ms"]] > 0).all().all()
    assert 0 <= pruned["agreement"] <= 1 and 0 <= original["top-1"] <= 1
    # every accuracy comes with its n and a 95 % Wilson interval around it
    labeled = int((eval_set.labels >= 0).sum())
    assert (table["top-1 n"] == labeled).all() and (table["agreement n"] == len(eval_set)).all()
    for column in ("top-1", "agreement"):
        assert (table[f"{column} low"] <= table[column]).all() and (table[column] <= table[f"{column} high"]).all()
    assert (original["agreement low"], original["agreement high"]) == wilson_interval(12, 12)
    assert (pruned["top-1 low"], pruned["top-1 high"]) == wilson_interval(round(pruned["top-1"] * labeled), labeled)
    assert calls[-1] == 1.0 and calls == sorted(calls)
    assert (table[["runs b1", "runs b8"]] >= 2).all().all()  # tiny models: every run within the budget
    csv = cx.results_csv(table).decode()
    assert csv.splitlines()[0].startswith("model,technique,runtime")


def test_slow_models_get_fewer_timed_runs_within_the_budget():
    calls = {"slow": 0, "fast": 0}

    def runner(name, seconds):
        def run():
            calls[name] += 1
            time.sleep(seconds)
        return run

    samples = cx.time_interleaved({"slow": runner("slow", 0.2), "fast": runner("fast", 0.0)}, repeats=20, warmup=3,
                                  budget=0.5, min_repeats=5)
    assert len(samples["slow"]) == 5 and calls["slow"] == 6  # 20 x 0.2 s > 0.5 s: the minimum, one warm-up
    assert len(samples["fast"]) == 20 and calls["fast"] == 23  # within budget: the lecture's 20 after 3 warm-ups
    unlimited = cx.time_interleaved({"slow": runner("slow", 0.01)}, repeats=4, warmup=1, budget=None)
    assert len(unlimited["slow"]) == 4


def test_compare_without_labels_and_empty_sets():
    model = _small_cnn()
    unlabeled = cx.EvalSet(_images(4), torch.full((4,), -1), list("abcd"), "unlabeled")
    table = cx.compare(model, [cx.prune_unstructured(model, 0.3)], unlabeled, repeats=1, warmup=0, batch_sizes=(1,))
    assert table["top-1"].isna().all() and table["agreement"].iloc[0] == 1.0
    with pytest.raises(cx.CompressionError, match="empty"):
        cx.EvalSet(torch.empty(0, 3, 32, 32), torch.empty(0), [], "nothing")


def test_explain_gives_accuracies_with_n_and_interval():
    row = {"model": "m", "runtime": cx.RUNTIME_TORCH, "file MB": 10.0, "zipped MB": 9.0, "params": 100,
           "non-zeros": 100, "MMACs": 50.0, "latency b1 ms": 10.0, "top-1 n": 64, "agreement n": 64}

    def with_counts(technique, correct, same):
        return {**row, "technique": technique, "top-1": correct / 64, "agreement": same / 64,
                **dict(zip(("top-1 low", "top-1 high"), wilson_interval(correct, 64))),
                **dict(zip(("agreement low", "agreement high"), wilson_interval(same, 64)))}

    cpu = cx.CpuFeatures("x", frozenset(), 2)
    close = pd.DataFrame([with_counts("original", 53, 64), with_counts("low_rank", 56, 58)])
    text = cx.explain("low_rank", close, cpu)
    # the numbers: 87.5 % vs 82.8 % on 64 images is within noise
    assert "top-1 87.5% (95 % CI 77–94 %, n = 64) vs 82.8% (95 % CI 72–90 %, n = 64)" in text
    assert "intervals overlap" in text and "neither is shown to be better" in text
    far = pd.DataFrame([with_counts("original", 60, 64), with_counts("low_rank", 20, 25)])
    assert "do not overlap" in cx.explain("low_rank", far, cpu)


def test_explain_separates_runtime_from_int8():
    table = pd.DataFrame([
        {"technique": "original", "latency b1 ms": 90.0, "file MB": 18.8, "zipped MB": 17.0, "agreement": 1.0, "top-1": 0.85,
         "params": 100, "non-zeros": 100, "MMACs": 385.0},
        {"technique": "onnx_fp32", "latency b1 ms": 25.0, "file MB": 18.6, "zipped MB": 17.0, "agreement": 1.0, "top-1": 0.85,
         "params": 100, "non-zeros": 100, "MMACs": 385.0},
        {"technique": "int8_static", "latency b1 ms": 22.0, "file MB": 5.2, "zipped MB": 4.4, "agreement": 0.96,
         "top-1": 0.84, "params": 100, "non-zeros": 100, "MMACs": 385.0},
    ])
    no_vnni = cx.CpuFeatures("old", frozenset({"avx2"}), 2)
    text = cx.explain("int8_static", table, no_vnni)
    assert "runtime (PyTorch -> ONNX Runtime, both FP32) gave 3.6x" in text
    assert "INT8 in the same runtime gave 1.14x" in text and "no VNNI" in text and "less than the lecture" in text
    assert "unsigned 8-bit weights" in text and "VPMADDUBSW" in text and "has no VNNI (INT8 flags seen in" in text
    assert "flags seen in /proc/cpuinfo: avx2)" in text and "Measured on an Intel Xeon" in text
    vnni = cx.CpuFeatures("new", frozenset({"avx2", "avx512f", "avx512_vnni"}), 2, source="CPUID")
    assert "has an INT8 dot-product instruction" in cx.explain("int8_static", table, vnni)
    vnni_text = cx.explain("int8_static", table, vnni)
    assert "signed 8-bit weights (U8S8" in vnni_text and "flags seen in CPUID: avx2, avx512_vnni)" in vnni_text
    assert cx.SATURATION_LESSON in vnni_text  # the lesson is told on every CPU
    assert "runtime's effect alone" in cx.explain("onnx_fp32", table, vnni)
    assert "noise" not in cx.explain("int8_static", table, vnni) and "**Here:** 22.0 ms vs 90.0 ms" in text


def test_explain_structured_pruning_in_both_runtimes():
    base = {"file MB": 18.8, "zipped MB": 17.0, "agreement": 1.0, "top-1": 0.85, "params": 100, "non-zeros": 100}
    table = pd.DataFrame([
        {**base, "technique": "original", "runtime": cx.RUNTIME_TORCH, "latency b1 ms": 10.0, "MMACs": 385.0},
        {**base, "technique": "onnx_fp32", "runtime": cx.RUNTIME_ORT, "latency b1 ms": 5.0, "MMACs": 385.0},
        {**base, "technique": "prune_structured", "runtime": cx.RUNTIME_TORCH, "latency b1 ms": 7.0, "MMACs": 103.0},
        {**base, "technique": "prune_structured", "runtime": cx.RUNTIME_ORT, "latency b1 ms": 2.0, "MMACs": 103.0},
    ])
    text = cx.explain("prune_structured", table, cx.CpuFeatures("x", frozenset(), 2))
    assert "MACs 385 M -> 103 M (3.7x fewer) made it 1.43x faster at batch 1" in text
    assert "less than proportionally" in text and "In ONNX Runtime the pruned model is 2.50x faster" in text


# --- distillation -------------------------------------------------------------------------------------------------


def test_distillation_trains_a_student_from_soft_targets():
    split = cx.cifar_split(train_per_class=6)
    assert split.train_images.shape == (60, 3, 32, 32) and len(split.test) == 440 and split.test.labeled == 440
    teacher = cx.distill(None, cx.make_student("tiny_cnn", 10, seed=1), (split.train_images, split.train_labels),
                         alpha=1.0, epochs=10, lr=1e-2, views=1).student  # confident: soft targets far from uniform
    student = cx.make_student("tiny_cnn", 10, seed=0)
    progress = []
    result = cx.distill(teacher, student, (split.train_images, split.train_labels), temperature=4.0, alpha=0.5,
                        epochs=5, lr=1e-2, progress=lambda f, t: progress.append(t))
    history = result.history
    assert list(history["epoch"]) == [1, 2, 3, 4, 5] and progress[-1].startswith("epoch 5/5")
    assert history["soft-target loss"].iloc[-1] < 0.8 * history["soft-target loss"].iloc[0]
    assert (history["hard-label loss"] > 0).all() and history["train accuracy"].between(0, 1).all()
    changed = any(not torch.equal(a, b) for a, b in zip(student.state_dict().values(), result.student.state_dict().values()))
    assert changed and not result.student.training
    # partly labeled (-1 = no label): the hard loss uses the labeled images only
    partial = torch.where(cx.labeled_mask(split.train_labels, 2), split.train_labels, -1)
    assert (partial >= 0).sum() == 20
    assert cx.distill(teacher, student, (split.train_images, partial), alpha=0.5, epochs=1).history["hard-label loss"][0] > 0
    # soft-only with no labels (the pruning fine-tune) and the bad knobs
    cx.distill(teacher, student, (split.train_images[:8], None), alpha=0.0, epochs=1)
    with pytest.raises(cx.CompressionError, match="needs labels"):
        cx.distill(teacher, student, (split.train_images, None), alpha=0.5, epochs=1)
    with pytest.raises(cx.CompressionError, match="Temperature"):
        cx.distill(teacher, student, (split.train_images, split.train_labels), temperature=0, epochs=1)
    with pytest.raises(cx.CompressionError, match="empty"):
        cx.distill(teacher, student, (split.train_images[:0], None), alpha=0.0, epochs=1)
    with pytest.raises(cx.CompressionError, match="1 to 49"):
        cx.cifar_split(50)


def test_run_distillation_compares_two_students_from_one_initialisation():
    split = cx.cifar_split(train_per_class=6)
    teacher = cx.distill(None, cx.make_student("tiny_cnn", 10, seed=1), (split.train_images, split.train_labels),
                         alpha=1.0, epochs=8, lr=1e-2, views=1).student
    views = cx.augmented_views(split.train_images[:5], 4, seed=0)
    assert views.shape == (4, 5, 3, 32, 32) and torch.equal(views[1], split.train_images[:5].flip(3))
    outcome = cx.run_distillation(teacher, split, "tiny_cnn", 4.0, 0.5, epochs=2, labeled_per_class=2, transfer=True)
    assert (outcome.labeled, outcome.transfer) == (20, 60)
    reference, students = outcome.variants()
    table = cx.compare(reference, students, split.test, repeats=1, warmup=0, batch_sizes=(1,))
    assert list(table["technique"]) == ["teacher", "distill", "hard_labels"]
    assert table["params"].iloc[1] == table["params"].iloc[2]  # the same student architecture twice
    text = cx.explain_distillation(table, outcome.labeled, outcome.transfer)
    assert "Labeled training images: 20" in text and "40 images that have no label" in text


# --- evaluation data and uploaded files ------------------------------------------------------------------------------


def test_imagenet_label_map_matches_folder_names():
    mapping = cx.imagenet_label_map(["ants", "bees", "Golden_Retriever", "spaceships"])
    assert mapping == {"ants": 310, "bees": 309, "Golden_Retriever": 207}


def test_eval_set_from_zip_skips_bad_files(data_dir):
    from torchvision import transforms

    val = data_dir / "hymenoptera_data" / "val"
    ant = sorted((val / "ants").iterdir())[0].read_bytes()
    bee = sorted((val / "bees").iterdir())[0].read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("set/ants/a.jpg", ant)
        z.writestr("set/bees/b.jpg", bee)
        z.writestr("set/bees/broken.jpg", b"not an image")
        z.writestr("set/teapots/t.jpg", ant)
    tf = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor()])
    eval_set = cx.eval_set_from_zip(buffer.getvalue(), tf, cx.imagenet_label_map)
    assert len(eval_set) == 3 and eval_set.labeled == 3  # "teapots" is the ImageNet class "teapot"
    assert sorted(eval_set.labels.tolist()) == [309, 310, 849]
    assert len(eval_set.skipped) == 1 and "broken.jpg" in eval_set.skipped[0]
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("ants/readme.txt", "no images")
    with pytest.raises(cx.CompressionError, match="empty"):
        cx.eval_set_from_zip(empty.getvalue(), tf, cx.imagenet_label_map)


def test_uploaded_model_files(tmp_path):
    from safetensors.torch import save

    model = _small_cnn()
    size = (3, 32, 32)
    pickled = io.BytesIO()
    torch.save(model.state_dict(), pickled)
    for name, data in [("model.pt", pickled.getvalue()), ("weights.safetensors", pickled.getvalue()),
                       ("weights.bin", b"\x80\x04K\x01.")]:
        with pytest.raises(cx.ModelFileError, match="pickle"):
            cx.load_model_file(name, data, model, size)
    with pytest.raises(cx.ModelFileError, match="empty"):
        cx.load_model_file("m.onnx", b"", model, size)
    with pytest.raises(cx.ModelFileError, match="not a valid ONNX"):
        cx.load_model_file("m.onnx", b"garbage bytes", model, size)
    with pytest.raises(cx.ModelFileError, match="neither"):
        cx.load_model_file("m.txt", b"hello there", model, size)

    weights = save({k: v.contiguous() for k, v in model.state_dict().items()})
    loaded = cx.load_model_file("w.safetensors", weights, _small_cnn(seed=5), size)
    x = _images(3)
    torch.testing.assert_close(loaded.predict(x), model(x))
    pruned = cx.prune_structured(model, 0.5, _images(1))
    with pytest.raises(cx.ModelFileError, match="has shape"):
        cx.load_model_file("p.safetensors", pruned.file_bytes(), model, size)

    onnx_bytes = cx.export_onnx(pruned.module, size)
    uploaded = cx.load_model_file("pruned.onnx", onnx_bytes, model, size)
    assert uploaded.runtime == cx.RUNTIME_ORT and uploaded.precision == "FP32"
    torch.testing.assert_close(uploaded.predict(x), pruned.module(x), atol=1e-4, rtol=1e-4)
    wrong_classes = cx.export_onnx(_small_cnn(classes=3), size)
    with pytest.raises(cx.ModelFileError, match="10 classes"):
        cx.load_model_file("three.onnx", wrong_classes, model, size)


def test_model_choices_list_missing_weights_with_a_reason():
    rows = {r["name"]: r for r in cx.model_choices()}
    assert rows["efficientnet_lite0"]["available"]
    for name, row in rows.items():
        assert row["available"] or name in row["reason"]


# --- the technique registry: every registered technique, as timm's tests loop over list_models() ----------------


def test_registry_lists_the_seven_techniques_and_refuses_unknown_ones():
    assert cx.list_techniques() == list(cx.TECHNIQUES) == [
        "int8_static", "int8_dynamic", "fp16", "bf16", "prune_unstructured", "prune_structured", "low_rank"]
    assert cx.is_technique("low_rank") and not cx.is_technique("magic")
    with pytest.raises(cx.CompressionError, match="Unknown technique 'magic'"):
        cx.get_technique("magic")
    with pytest.raises(cx.CompressionError, match="Unknown technique"):
        cx.make_variant("efficientnet_lite0", cx.TechniqueSpec("magic"))
    with pytest.raises(ValueError, match="registered twice"):
        cx.register_technique("fp16", "again", "a second FP16")(lambda name, knobs, progress=None: None)


def test_one_default_per_knob():
    import inspect

    # the function's own default is the registry's (and the page's): one threshold across the network
    scope = cx.get_technique("prune_unstructured").knob("scope").default
    assert scope == "global" == inspect.signature(cx.prune_unstructured).parameters["scope"].default
    low_rank = cx.get_technique("low_rank")
    assert low_rank.resolve({})["keep"] == "rank"
    assert low_rank.resolve({"energy": 0.8})["keep"] == "energy"  # a knob given picks the mode that uses it
    assert low_rank.resolve({"rank": 12})["keep"] == "rank" and low_rank.resolve({"rank": 12})["rank"] == 12


@pytest.mark.parametrize("key", cx.list_techniques())
def test_every_registered_technique_applies_with_its_defaults(key):
    technique = cx.get_technique(key)
    assert technique.key == key and technique.label == cx.TECHNIQUES[key] and technique.description
    for knob in technique.knobs:  # every default is one the page's widget can show
        assert knob.widget_key.startswith("cx_") and knob.label
        if knob.choices:
            assert knob.default in knob.choices
        if knob.low is not None:
            assert knob.low <= knob.default <= knob.high
        if knob.kind == "percent":
            assert 0 <= knob.low <= knob.high <= 1
    if technique.demo_knob is not None and technique.demo_knob.low is not None:
        assert technique.demo_knob.low <= technique.demo_knob.default <= technique.demo_knob.high
    # the defaults, with the recovery fine-tune on its smallest image count to keep the test short
    knobs = technique.defaults()
    if "fine_tune_images" in knobs:
        knobs["fine_tune_images"] = min(technique.knob("fine_tune_images").choices)
    calls = []
    variant = cx.make_variant("efficientnet_lite0", cx.TechniqueSpec(key, knobs), progress=lambda f, t: calls.append(f))
    assert isinstance(variant, cx.Variant) and variant.technique == key and variant.name and variant.notes
    images = cx.standard_eval_set("efficientnet_lite0", "hymenoptera", 2).images
    logits = variant.predict(images)
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()
    if key == "prune_structured":
        assert calls and "1 epoch fine-tune" in variant.name  # the page's default: one short recovery epoch
    if key == "low_rank":
        assert [r["layer"] for r in variant.layers if r["status"] == "factorised"] == ["classifier"]
