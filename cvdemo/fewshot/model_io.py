"""The fine-tuned classifier: predict, export (safetensors, ONNX through the accelerated runtime), load back.

Both files carry a :class:`ClassifierSpec` (JSON: backbone, classes, head, preprocessing) and the
probabilities the model gave on a fixed seeded input when it was saved; loading recomputes them,
so a file that loads but does not reproduce its model is refused. Pickles are never unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from cvdemo.model_files import PICKLE_SUFFIXES, ModelFileError, looks_like_pickle

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from cvdemo import runtime
    from cvdemo.fewshot.extractor import FeatureExtractor
    from cvdemo.fewshot.ladder import LadderConfig

FORMAT_KEY = "cvdemo_fewshot_classifier"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 300 << 20
CHECK_TOLERANCE = 1e-3  # max |Δ| of the recorded probabilities


@dataclass
class ClassifierSpec:
    """What rebuilds the classifier (stored as JSON inside both exported files)."""

    backbone: str
    classes: list[str]
    dim: int
    head_hidden: int
    unfrozen_stages: int
    method: str
    data_config: dict
    description: str = ""
    check: list[list[float]] = field(default_factory=list)  # probabilities on check_input()
    format: str = FORMAT_KEY
    version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str, name: str) -> "ClassifierSpec":
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT_KEY:
                raise ValueError
            spec = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
            if not isinstance(spec.classes, list) or len(spec.classes) < 2:
                raise ValueError
        except (ValueError, TypeError, KeyError):
            raise ModelFileError(f"{name} does not describe a cvdemo few-shot classifier (its metadata is not ours).")
        return spec


def check_input(input_size: Sequence[int]) -> "torch.Tensor":
    """Two fixed pseudo-random images (seeded): the same on every machine with this torch."""
    import torch

    return torch.randn(2, *input_size, generator=torch.Generator().manual_seed(20220404))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class _Predicts:
    """Shared by both loaded forms: timm's eval preprocessing, then probabilities."""

    spec: ClassifierSpec

    def _transform(self):
        transform = getattr(self, "_eval_transform", None)
        if transform is None:
            import timm

            config = {k: v for k, v in self.spec.data_config.items() if k in ("input_size", "interpolation", "mean",
                                                                             "std", "crop_pct", "crop_mode")}
            config["input_size"] = tuple(config["input_size"])
            config["mean"], config["std"] = tuple(config["mean"]), tuple(config["std"])
            transform = self._eval_transform = timm.data.create_transform(**config, is_training=False)
        return transform

    def preprocess(self, images: Sequence[Image.Image]) -> "torch.Tensor":
        import torch

        from cvdemo.images import load_image

        transform = self._transform()
        return torch.stack([transform(img if isinstance(img, Image.Image) else load_image(img)) for img in images])

    def logits(self, batch: "torch.Tensor") -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, images: Sequence[Any]) -> np.ndarray:
        """``(N, C)`` class probabilities, columns in ``classes`` order."""
        return _softmax(self.logits(self.preprocess(images)))

    @property
    def classes(self) -> list[str]:
        return list(self.spec.classes)

    def self_check(self) -> float:
        """Max |Δ| between the recorded probabilities and this model's on the check input."""
        got = _softmax(self.logits(check_input(self.spec.data_config["input_size"])))
        want = np.asarray(self.spec.check, np.float64)
        return float(np.abs(got - want).max()) if want.shape == got.shape else float("inf")


class FineTunedClassifier(_Predicts):
    """A timm backbone + new head as one PyTorch module (``x -> logits``)."""

    def __init__(self, module: "nn.Module", spec: ClassifierSpec) -> None:
        self.module = module.eval()
        self.spec = spec
        self._accelerated: "runtime.AcceleratedModel | None" = None

    @classmethod
    def from_network(
        cls, network: "nn.Module", classes: Sequence[str], extractor: "FeatureExtractor", method: str,
        config: "LadderConfig",
    ) -> "FineTunedClassifier":
        data_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in extractor.data_config.items()}
        spec = ClassifierSpec(
            backbone=extractor.backbone,
            classes=[str(c) for c in classes],
            dim=int(network.head.dim),
            head_hidden=int(network.head.hidden),
            unfrozen_stages=int(network.unfrozen),
            method=method,
            data_config=data_config,
            description=(f"last {network.unfrozen} of {len(network.stage_names)} stages unfrozen, LR factor "
                         f"{config.lr_factor:g}, seed {config.seed}" if network.unfrozen
                         else f"new head on the frozen base, seed {config.seed}"),
        )
        classifier = cls(network, spec)
        spec.check = _softmax(classifier.logits(check_input(data_config["input_size"]))).tolist()
        return classifier

    def logits(self, batch: "torch.Tensor") -> np.ndarray:
        import torch

        if self._accelerated is not None and self._accelerated.accelerated:
            return self._accelerated(batch).numpy()
        with torch.inference_mode():
            return self.module(batch).float().numpy()

    @property
    def runtime_info(self) -> "runtime.RuntimeInfo":
        from cvdemo import runtime

        return self._accelerated.runtime_info if self._accelerated is not None else runtime.PYTORCH_RUNTIME

    def accelerate(self, parity_images: Sequence[Image.Image] = ()) -> "runtime.AcceleratedModel":
        """Export to ONNX once and run in OpenVINO / ONNX Runtime after the parity check on real photos
        (``parity_images``, e.g. held-out examples; else the runtime's sample photos)."""
        import torch

        from cvdemo import runtime

        if self._accelerated is None:
            images = list(parity_images)[:8] or runtime.parity_images()
            self._accelerated = runtime.accelerate(
                self.module,
                torch.zeros(1, *self.spec.data_config["input_size"]),
                name=f"fewshot-{self.spec.method}-{self.spec.backbone}",
                parity_inputs=self.preprocess(images),
                classifier=True,
            )
        return self._accelerated

    def to_safetensors(self) -> bytes:
        from safetensors.torch import save

        state = {k: v.detach().contiguous() for k, v in self.module.state_dict().items()}
        return save(state, metadata={FORMAT_KEY: self.spec.to_json()})

    def to_onnx(self, parity_images: Sequence[Image.Image] = ()) -> bytes:
        """The ONNX graph the accelerated runtime exported and parity-checked, with the spec as metadata."""
        import onnx

        accelerated = self.accelerate(parity_images)
        if accelerated.path is None:
            raise ModelFileError(f"The ONNX export is not available here: {accelerated.reason or 'export refused'}.")
        model = onnx.load_model(str(accelerated.path))
        del model.metadata_props[:]
        entry = model.metadata_props.add()
        entry.key, entry.value = FORMAT_KEY, self.spec.to_json()
        return model.SerializeToString()


class OnnxClassifier(_Predicts):
    """An exported classifier running in ONNX Runtime (what a student downloads and brings back)."""

    def __init__(self, data: bytes, spec: ClassifierSpec) -> None:
        from cvdemo import runtime

        self.spec = spec
        self._session = runtime.ort_session(data)
        self._input = self._session.get_inputs()[0].name

    def logits(self, batch: "torch.Tensor") -> np.ndarray:
        array = np.ascontiguousarray(batch.numpy(), dtype=np.float32)
        return np.asarray(self._session.run(None, {self._input: array})[0], np.float32)

    @property
    def runtime_info(self) -> "runtime.RuntimeInfo":
        from cvdemo import runtime

        return runtime.RuntimeInfo(runtime.BACKEND_LABELS[runtime.ONNXRUNTIME], True)


def load_classifier(data: bytes, filename: str = "the file") -> FineTunedClassifier | OnnxClassifier:
    """A classifier exported by :meth:`FineTunedClassifier.to_safetensors` or ``to_onnx``.

    Raises :class:`ModelFileError` with a sentence for anything else: pickles (refused unread), empty
    or huge files, other formats, files without our metadata, weights that do not fit or do not
    reproduce the probabilities recorded at export.
    """
    name = str(filename)
    lower = name.lower()
    if not data:
        raise ModelFileError(f"{name} is empty (0 bytes).")
    if len(data) > MAX_FILE_BYTES:
        raise ModelFileError(f"{name} is {len(data) / 2**20:,.0f} MB; a few-shot classifier is under {MAX_FILE_BYTES >> 20} MB.")
    if lower.endswith(PICKLE_SUFFIXES) or looks_like_pickle(data):
        raise ModelFileError(
            f"{name} looks like a pickled PyTorch/Python file. Loading a pickle can run any code, so it is refused: "
            "use the .safetensors or .onnx file this page exports."
        )
    if lower.endswith(".onnx") or not lower.endswith(".safetensors") and not _safetensors_header(data):
        return _load_onnx(data, name)
    return _load_safetensors(data, name)


def _safetensors_header(data: bytes) -> dict | None:
    try:
        length = int.from_bytes(data[:8], "little")
        if not 2 <= length <= min(len(data) - 8, 100 << 20):
            return None
        header = json.loads(data[8 : 8 + length])
        return header if isinstance(header, dict) else None
    except (ValueError, UnicodeDecodeError):
        return None


def _load_safetensors(data: bytes, name: str) -> FineTunedClassifier:
    from safetensors import SafetensorError
    from safetensors.torch import load

    from cvdemo.backbones import BACKBONES, create_backbone
    from cvdemo.fewshot.network import LadderError, classifier_head, fine_tune_network

    header = _safetensors_header(data)
    if header is None:
        raise ModelFileError(f"{name} is not a valid .safetensors file.")
    meta = (header.get("__metadata__") or {}).get(FORMAT_KEY)
    if meta is None:
        raise ModelFileError(f"{name} is a safetensors file, but not a classifier exported by this page (no '{FORMAT_KEY}' metadata).")
    spec = ClassifierSpec.from_json(meta, name)
    if spec.backbone not in BACKBONES:
        raise ModelFileError(f"{name} was trained on backbone '{spec.backbone}', which this installation does not know.")
    try:
        state = load(data)
    except (SafetensorError, ValueError, MemoryError):
        raise ModelFileError(f"{name} is not a valid .safetensors file.") from None
    try:
        backbone = create_backbone(spec.backbone, pretrained=False, num_classes=0)  # every weight is in the file
        head = classifier_head(spec.dim, len(spec.classes), spec.head_hidden)
        network = fine_tune_network(backbone, head, spec.unfrozen_stages)
        network.load_state_dict(state, strict=True)
    except (RuntimeError, LadderError) as exc:
        raise ModelFileError(f"{name}: the weights do not fit a {spec.backbone} classifier ({str(exc)[:200]}).") from None
    classifier = FineTunedClassifier(network, spec)
    _verify(classifier, name)
    return classifier


def _load_onnx(data: bytes, name: str) -> OnnxClassifier:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
        if not model.graph.node:
            raise ValueError("no graph")
    except (DecodeError, ValueError, RuntimeError):
        raise ModelFileError(f"{name} is neither a .safetensors nor an .onnx model file; only those two are accepted.") from None
    meta = {p.key: p.value for p in model.metadata_props}.get(FORMAT_KEY)
    if meta is None:
        raise ModelFileError(f"{name} is an ONNX model, but not a classifier exported by this page (no class names inside).")
    spec = ClassifierSpec.from_json(meta, name)
    try:
        classifier = OnnxClassifier(data, spec)
    except Exception as exc:  # ONNX Runtime's own message (bad opset, corrupt graph)
        raise ModelFileError(f"{name} could not be opened by ONNX Runtime: {str(exc)[:200]}") from None
    _verify(classifier, name)
    return classifier


def _verify(classifier: _Predicts, name: str) -> None:
    try:
        diff = classifier.self_check()
    except Exception as exc:
        raise ModelFileError(f"{name} could not run its self-check: {str(exc)[:200]}") from None
    if not diff <= CHECK_TOLERANCE:
        raise ModelFileError(
            f"{name} loads, but does not reproduce the probabilities recorded when it was exported "
            f"(max difference {diff:.2g} > {CHECK_TOLERANCE:g}); it was changed or is damaged."
        )
    classifier.check_difference = diff  # type: ignore[attr-defined]
