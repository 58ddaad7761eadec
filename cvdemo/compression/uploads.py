"""A user's model file (ONNX or safetensors; pickle refused) as a :class:`Variant` to measure."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cvdemo import model_files
from cvdemo.runtime import ort_session
from cvdemo.compression.errors import ModelFileError
from cvdemo.compression.quantize import quantized_layers
from cvdemo.compression.variant import RUNTIME_ORT, RUNTIME_TORCH, Variant


PICKLE_SUFFIXES = model_files.PICKLE_SUFFIXES


def load_model_file(
    filename: str, data: bytes, reference: nn.Module, input_size: tuple[int, int, int] = (3, 224, 224)
) -> Variant:
    """A user's model file as a Variant: ONNX (runs in ONNX Runtime) or safetensors (weights for
    ``reference``'s architecture). Pickle-based checkpoints are refused: loading one can run code.
    """
    suffix = Path(filename).suffix.lower()
    if not data:
        raise ModelFileError(f"{filename} is empty.")
    if suffix in PICKLE_SUFFIXES or model_files.looks_like_pickle(data):
        raise ModelFileError(
            f"{filename} looks like a pickle-based PyTorch checkpoint. Loading pickle can run arbitrary code, so it is "
            "refused: save the weights with safetensors (safetensors.torch.save_file) or export the model to ONNX."
        )
    if suffix == ".safetensors" or model_files.looks_like_safetensors(data):
        return _safetensors_variant(filename, data, reference)
    if suffix == ".onnx" or suffix == "":
        return _onnx_variant(filename, data, reference, input_size)
    raise ModelFileError(f"{filename} is neither a .safetensors nor an .onnx file; only those two formats are accepted.")


def _safetensors_variant(filename: str, data: bytes, reference: nn.Module) -> Variant:
    from safetensors.torch import load

    try:
        state = load(data)
    except Exception as exc:
        raise ModelFileError(f"{filename} is not a readable safetensors file ({exc}).") from None
    model = copy.deepcopy(reference)
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ModelFileError(
                f"{filename} does not fit the chosen model: weight {key!r} is missing. Safetensors holds weights only, "
                "so a pruned or factorised model must be uploaded as ONNX."
            )
        if tuple(state[key].shape) != tuple(value.shape):
            raise ModelFileError(
                f"{filename} does not fit the chosen model: {key!r} has shape {tuple(state[key].shape)}, the model expects "
                f"{tuple(value.shape)}. Upload pruned or factorised models as ONNX."
            )
    model.load_state_dict({k: state[k].float() for k in own}, strict=True)
    return Variant(name=f"Uploaded: {filename}", technique="uploaded", runtime=RUNTIME_TORCH, precision="FP32",
                   module=model.eval(), notes=["Weights loaded from safetensors into the chosen architecture."])


def _onnx_variant(filename: str, data: bytes, reference: nn.Module, input_size: tuple[int, int, int]) -> Variant:
    import onnx

    try:
        proto = onnx.load_from_string(data)
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ModelFileError(f"{filename} is not a valid ONNX model ({str(exc).splitlines()[0][:160]}).") from None
    inputs = [i for i in proto.graph.input if i.name not in {init.name for init in proto.graph.initializer}]
    if len(inputs) != 1:
        raise ModelFileError(f"{filename} has {len(inputs)} inputs; an image classifier has exactly one.")
    try:
        session = ort_session(data)
        name = session.get_inputs()[0].name
        out = session.run(None, {name: np.zeros((1, *input_size), np.float32)})[0]
    except Exception as exc:
        raise ModelFileError(
            f"{filename} does not run on a 1x{'x'.join(map(str, input_size))} image ({str(exc).splitlines()[0][:160]})."
        ) from None
    with torch.inference_mode():
        classes = reference(torch.zeros(1, *input_size)).shape[-1]
    if out.ndim != 2 or out.shape[-1] != classes:
        raise ModelFileError(f"{filename} outputs shape {tuple(out.shape)}; the chosen model has {classes} classes.")
    layers = quantized_layers(data)
    variant = Variant(name=f"Uploaded: {filename}", technique="uploaded", runtime=RUNTIME_ORT,
                      precision="INT8" if any(r["quantized"] for r in layers) else "FP32",
                      module=reference, onnx_model=data, layers=layers,
                      notes=["Parameters and MACs are those of the chosen architecture, not read from the file."])
    try:  # a batch-1-only graph cannot be timed at batch 8
        session.run(None, {name: np.zeros((2, *input_size), np.float32)})
    except Exception:
        variant.notes.append("The graph has a fixed batch size of 1.")
    return variant
