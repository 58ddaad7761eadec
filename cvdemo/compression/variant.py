"""A :class:`Variant`: one network in a runtime and precision, plus the record of what was done to it."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from cvdemo.runtime import export_onnx, ort_session


RUNTIME_TORCH = "PyTorch eager"
RUNTIME_ORT = "ONNX Runtime"


@dataclass(eq=False)
class Variant:
    """One model to measure: what runs, in which runtime and precision, and what was changed.

    ``module`` is the FP32 network this variant computes (parameters, non-zeros and MACs are
    read from it). What actually runs is ``onnx_model`` in ONNX Runtime when set, else
    ``run_module`` (dynamic INT8, FP16/BF16 weights) or ``module`` in PyTorch.
    """

    name: str
    technique: str
    runtime: str
    precision: str
    module: nn.Module
    onnx_model: bytes | None = None
    run_module: nn.Module | None = None
    input_dtype: torch.dtype = torch.float32
    layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _sessions: dict[int, Any] = field(default_factory=dict, repr=False)
    _file: bytes | None = field(default=None, repr=False)

    # running ---------------------------------------------------------------------------------
    def _torch_module(self) -> nn.Module:
        """The network PyTorch runs and stores: ``run_module`` when set, else ``module``."""
        return self.run_module if self.run_module is not None else self.module

    def session(self, threads: int | None = None):
        """An ONNX Runtime session with ``threads`` intra-op threads (cached per thread count)."""
        threads = threads or torch.get_num_threads()
        if threads not in self._sessions:
            self._sessions[threads] = ort_session(self.onnx_model, threads)
        return self._sessions[threads]

    def predict(self, images: torch.Tensor, threads: int | None = None) -> torch.Tensor:
        """FP32 logits for a batch of preprocessed images."""
        if self.onnx_model is not None:
            session = self.session(threads)
            name = session.get_inputs()[0].name
            out = session.run(None, {name: images.numpy().astype(np.float32, copy=False)})[0]
            return torch.from_numpy(out).float()
        net = self._torch_module()
        with torch.inference_mode():
            return net(images.to(self.input_dtype)).float()

    def runner(self, images: torch.Tensor, threads: int | None = None) -> Callable[[], object]:
        """A zero-argument call that runs one forward pass on ``images`` (for timing)."""
        if self.onnx_model is not None:
            session = self.session(threads)
            feed = {session.get_inputs()[0].name: images.numpy().astype(np.float32)}
            return lambda: session.run(None, feed)
        net = self._torch_module()
        batch = images.to(self.input_dtype)

        def run() -> object:
            with torch.inference_mode():
                return net(batch)

        return run

    # files ----------------------------------------------------------------------------------
    @property
    def file_format(self) -> str:
        if self.onnx_model is not None:
            return "onnx"
        return "safetensors" if _plain_tensors(self._torch_module().state_dict()) else "torch.save"

    def file_bytes(self) -> bytes:
        """The serialized model as it would be stored: ONNX, else safetensors of the weights.

        Dynamically quantized PyTorch modules hold packed weights that safetensors cannot
        store; their size is measured with ``torch.save`` (they are never offered for download).
        """
        if self._file is None:
            if self.onnx_model is not None:
                self._file = self.onnx_model
            else:
                state = self._torch_module().state_dict()
                if _plain_tensors(state):
                    self._file = safetensors_bytes(state)
                else:
                    buffer = io.BytesIO()
                    torch.save(state, buffer)
                    self._file = buffer.getvalue()
        return self._file

    def downloads(self, input_size: tuple[int, int, int] = (3, 224, 224)) -> dict[str, tuple[str, Callable[[], bytes]]]:
        """Formats this variant can be downloaded in: ``{label: (file suffix, make bytes)}``."""
        if self.onnx_model is not None:
            return {"ONNX": (".onnx", lambda: self.onnx_model)}
        if self.file_format != "safetensors":
            return {}
        out: dict[str, tuple[str, Callable[[], bytes]]] = {"safetensors (weights)": (".safetensors", self.file_bytes)}
        if self.run_module is None:  # FP32 networks also export to a self-contained ONNX graph
            out["ONNX"] = (".onnx", lambda: export_onnx(self.module, input_size))
        return out

    def parameter_counts(self) -> tuple[int, int]:
        """(parameters, non-zero parameters) of the network."""
        total = nonzero = 0
        for p in self.module.parameters():
            total += p.numel()
            nonzero += int(torch.count_nonzero(p.detach()))
        return total, nonzero


def _plain_tensors(state: dict) -> bool:
    return all(isinstance(v, torch.Tensor) and not v.is_quantized for v in state.values())


def safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    # safetensors refuses views that share memory; contiguous copies are what gets stored anyway.
    return save({k: v.detach().contiguous().clone() for k, v in state.items()})


def original_variant(model: nn.Module, name: str = "Original (FP32, PyTorch)") -> Variant:
    return Variant(name=name, technique="original", runtime=RUNTIME_TORCH, precision="FP32", module=model.eval())
