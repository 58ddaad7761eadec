"""The networks the inference server can run: each one's key, loader and batch function.

A network key is ``<model>/<tower>`` and is also its path on the server: ``yolov8n/detect``,
``efficientnet_lite0/features``, ``clip/image``, ``clip/text``, ``conse/image`` ... One model (one
Ray Serve deployment, one set of weights in memory) serves all its towers. The loaders are the app's
own (:class:`cvdemo.detection.Detector`, :class:`cvdemo.fewshot.FeatureExtractor`,
:func:`cvdemo.clip.engines.create_engine`), with the app's defaults, and the batch functions are the
methods the app itself calls when it runs a network in process, so the server computes the same numbers.

Inputs and outputs are plain values and numpy arrays (see :mod:`cvdemo.serve.wire`):

=============================  ======================================  ==============================================
network                        one input                               one output
=============================  ======================================  ==============================================
``<detector>/detect``          :func:`cvdemo.detection.detect_input`   ``{"boxes": (N, 6), "input_shape", "speed", ...}``
``<backbone>/features``        ``{"crop": uint8 (3, H, W)}``           ``{"stage1": (C1,), ..., "head": (D,)}``
``<engine>/image``             ``{"pixels": float32 (3, H, W)}``       ``(dim,)`` float32, L2-normalised
``<engine>/text``              ``{"text": str}``                       ``(dim,)`` float32
=============================  ======================================  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from cvdemo import weights
from cvdemo.backbones import BACKBONES
from cvdemo.clip.engines import ENGINE_ORDER, ENGINE_LABELS, engine_available
from cvdemo.detection import DETECTION_MODELS

# Batching defaults of every deployment (here, not in deployment.py, so the CLI reads them without Ray).
MAX_BATCH_SIZE = 16
BATCH_WAIT_TIMEOUT_S = 0.01  # long enough to gather a burst, short beside a forward pass (tens of ms)


@dataclass(frozen=True)
class ServedModel:
    """One model the server can load, and the networks (towers) it answers for."""

    name: str  # "yolov8n", "efficientnet_lite0", "clip", "conse", ...
    label: str
    towers: dict[str, Callable[[Any, list], list]]  # tower -> batch function(loaded model, inputs) -> outputs
    load: Callable[[], Any]

    @property
    def network_keys(self) -> list[str]:
        return [f"{self.name}/{tower}" for tower in self.towers]

    def available(self) -> bool:
        """Whether this machine has the model's weights (no download, no load)."""
        if self.name in ENGINE_ORDER:
            return engine_available(self.name)
        return weights.available(self.name)


def _detector(name: str) -> Callable[[], Any]:
    def load() -> Any:
        from cvdemo.detection import Detector

        return Detector(name)  # the page's default: accelerated

    return load


def _backbone(name: str) -> Callable[[], Any]:
    def load() -> Any:
        from cvdemo.fewshot.extractor import FeatureExtractor

        return FeatureExtractor(name)  # pretrained, accelerated: the page's default

    return load


def _engine(key: str) -> Callable[[], Any]:
    def load() -> Any:
        from cvdemo.clip.engines import create_engine

        return create_engine(key)

    return load


def _models() -> dict[str, ServedModel]:
    models = [ServedModel(name, f"{name} detector", {"detect": lambda m, x: m.predict_batch(x)}, _detector(name))
              for name in DETECTION_MODELS]
    models += [ServedModel(name, spec.label, {"features": lambda m, x: m.features_batch(x)}, _backbone(name))
               for name, spec in BACKBONES.items()]
    models += [ServedModel(key, ENGINE_LABELS[key], {"image": lambda m, x: m.image_batch(x),
                                                     "text": lambda m, x: m.text_batch(x)}, _engine(key))
               for key in ENGINE_ORDER]
    return {m.name: m for m in models}


MODELS: dict[str, ServedModel] = _models()
# What `python -m cvdemo.serve` serves by default (those whose weights are here): the pages' default models.
DEFAULT_MODELS: tuple[str, ...] = ("yolov8n", "efficientnet_lite0", "clip", "mobileclip_s0", "conse")


def network_keys() -> list[str]:
    return [key for model in MODELS.values() for key in model.network_keys]


def split_key(network_key: str) -> tuple[ServedModel, str]:
    """``"clip/text"`` -> (the clip model, "text"); KeyError with the known keys when there is no such network."""
    model, _, tower = network_key.partition("/")
    if model not in MODELS or tower not in MODELS[model].towers:
        raise KeyError(f"Unknown network '{network_key}'. Known: {', '.join(network_keys())}")
    return MODELS[model], tower


def run_batch(loaded: Any, network_key: str, inputs: list) -> list:
    """``network_key``'s batch function on a loaded model: one output per input, in order."""
    model, tower = split_key(network_key)
    outputs = model.towers[tower](loaded, list(inputs))
    if len(outputs) != len(inputs):
        raise RuntimeError(f"{network_key} returned {len(outputs)} outputs for {len(inputs)} inputs.")
    return outputs
