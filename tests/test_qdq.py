"""cvdemo.qdq: the float-activation graph of the classroom INT8 QDQ YOLO file, as a graph edit."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from cvdemo import qdq, runtime


@pytest.fixture(scope="module")
def source(weights_dir) -> Path:
    return weights_dir / "yolov8n_coco_int8_qdq.onnx"


@pytest.fixture(scope="module")
def int8_model(source) -> onnx.ModelProto:
    return onnx.load(str(source))


def test_edit_removes_every_qdq_node_and_keeps_the_network(int8_model):
    plain = qdq.dequantized(int8_model)
    before = Counter(n.op_type for n in int8_model.graph.node)
    after = Counter(n.op_type for n in plain.graph.node)
    assert before["QuantizeLinear"] > 100 and before["DequantizeLinear"] > 200
    assert "QuantizeLinear" not in after and "DequantizeLinear" not in after
    assert after == Counter({k: v for k, v in before.items() if k not in ("QuantizeLinear", "DequantizeLinear")})
    assert not qdq.is_quantized(plain) and qdq.is_quantized(int8_model)
    assert {t.data_type for t in plain.graph.initializer} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    assert [i.name for i in plain.graph.input] == ["images"] and [o.name for o in plain.graph.output] == ["output0"]
    assert {p.key: p.value for p in plain.metadata_props} == {p.key: p.value for p in int8_model.metadata_props}
    assert int8_model.graph.node[0].op_type == "QuantizeLinear"  # the input model is left as it was


def test_weights_are_the_int8_values_times_their_scale(int8_model):
    plain = qdq.dequantized(int8_model)
    inits = {t.name: numpy_helper.to_array(t) for t in int8_model.graph.initializer}
    floats = {t.name: numpy_helper.to_array(t) for t in plain.graph.initializer}
    dq = next(n for n in int8_model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("weight_quantized"))
    q, scale, zero = (inits[name] for name in dq.input[:3])
    expected = (q.astype(np.float64) - zero) * scale
    np.testing.assert_allclose(floats[dq.output[0]], expected.astype(np.float32), rtol=0, atol=0)
    assert floats[dq.output[0]].dtype == np.float32 and len(np.unique(floats[dq.output[0]])) <= 256


def test_a_float_graph_has_nothing_to_dequantize():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    with pytest.raises(qdq.NotQuantized):
        qdq.dequantized(model)


def test_per_channel_weights_and_a_dequantized_graph_output():
    """Per-channel scales broadcast along ``axis``; a QDQ pair right before the output keeps the output's name."""
    w = numpy_helper.from_array(np.array([[1, -2], [3, 4]], dtype=np.int8), "w_q")
    scale = numpy_helper.from_array(np.array([0.5, 0.25], dtype=np.float32), "w_scale")
    zero = numpy_helper.from_array(np.array([0, 1], dtype=np.int8), "w_zero")
    s = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s")
    z = numpy_helper.from_array(np.array(0, dtype=np.uint8), "z")
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0),
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("QuantizeLinear", ["h", "s", "z"], ["h_q"]),
        helper.make_node("DequantizeLinear", ["h_q", "s", "z"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[w, scale, zero, s, z])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    plain = qdq.dequantized(model)
    weight = numpy_helper.to_array(next(t for t in plain.graph.initializer if t.name == "w"))
    np.testing.assert_array_equal(weight, [[0.5, -1.0], [0.5, 0.75]])  # row 0: *0.5; row 1: (q - 1) * 0.25
    assert [n.op_type for n in plain.graph.node] == ["MatMul", "Identity"] and plain.graph.output[0].name == "y"
    import onnxruntime as ort

    out = ort.InferenceSession(plain.SerializeToString()).run(None, {"x": np.array([[1.0, 2.0]], dtype=np.float32)})[0]
    np.testing.assert_allclose(out, [[1.5, 0.5]])  # float: no rounding to the 0.1 grid of the removed pair


def test_operator_oriented_int8_graphs_are_refused():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, 1, 3, 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.INT32, [1, 1, 1, 1])
    w = numpy_helper.from_array(np.ones((1, 1, 3, 3), dtype=np.uint8), "w")
    graph = helper.make_graph([helper.make_node("ConvInteger", ["x", "w"], ["y"])], "g", [x], [y], initializer=[w])
    with pytest.raises(ValueError, match="quantized kernels \\(ConvInteger\\)"):
        qdq.dequantized(helper.make_model(graph))


def test_float_file_is_derived_once_keyed_by_source_and_recipe(source, monkeypatch, tmp_path):
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(tmp_path))
    path = qdq.float_activation_file(source)
    assert path.parent.parent == runtime.cache_folder() / "qdq" == tmp_path / "runtime" / "qdq"
    assert path.parent.name == f"yolov8n_coco_int8_qdq-284ab9b5fc38daaa-r{qdq.RECIPE}"
    assert [p.name for p in path.parent.iterdir()] == ["yolov8n_coco_int8_qdq_float.onnx"]  # no temp file left
    model = onnx.load(str(path))
    derived = json.loads({p.key: p.value for p in model.metadata_props}[qdq.DERIVED_KEY])
    assert derived == {"file": source.name, "sha256": "284ab9b5fc38daaa749031f2d1eb64873d92d9141cbc2c61ccb6a83bddb1c795",
                       "recipe": qdq.RECIPE}
    stamp = path.stat().st_mtime_ns

    def no_edit(model):
        raise AssertionError("derived again")

    monkeypatch.setattr(qdq, "dequantized", no_edit)
    assert qdq.float_activation_file(source) == path and path.stat().st_mtime_ns == stamp
    monkeypatch.setattr(qdq, "RECIPE", qdq.RECIPE + 1)  # a new recipe is a new file
    with pytest.raises(AssertionError, match="derived again"):
        qdq.float_activation_file(source)
    assert not list(tmp_path.rglob("*.tmp"))


def test_is_quantized_file(source, tmp_path):
    assert qdq.is_quantized_file(source)
    assert not qdq.is_quantized_file(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    assert not qdq.is_quantized_file(tmp_path / "junk.onnx")
    assert not qdq.is_quantized_file(source.with_suffix(".md"))
