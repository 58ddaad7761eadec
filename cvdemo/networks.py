"""The networks the schedulers serve, in one place: network kind -> batch function and batch size.

Every model call that 30 students can make at once goes through ``networks.scheduler(kind, model,
identity)``: one FIFO scheduler per (kind, model identity) and process (see :mod:`cvdemo.scheduler`).
The batch function of each kind is made from the model object by a factory registered here. Those
batch functions send the forward pass to the inference server themselves when ``CVDEMO_INFERENCE_URL``
is set (:mod:`cvdemo.serve.client`), so the queue and the batching stay here.

=============  ==================================  ============================================  =====
kind           one input                           one output                                    batch
=============  ==================================  ============================================  =====
detector       (RGB PIL image, predict kwargs)     (ultralytics Results, input (h, w), raw out)  1 (*)
clip-image     RGB PIL image                       (dim,) float32, L2-normalised                 16
clip-text      text                                (dim,) float32, L2-normalised                 64
backbone       RGB PIL image                       (D,) float32 feature vector                   32
=============  ==================================  ============================================  =====

(*) The detector exports have a static batch axis of 1, so its requests run one by one, FIFO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from cvdemo import scheduler as scheduling

BatchFn = Callable[[list[Any]], Sequence[Any]]
BatchFactory = Callable[[Any], BatchFn]  # model object -> batch function


@dataclass(frozen=True)
class Network:
    kind: str
    max_batch: int
    local: BatchFactory  # runs the model in this process
    holds_gate: bool = True  # False: the batch function takes the compute gate around its forward pass only


def _detector_batch(detector: Any) -> BatchFn:
    return lambda items: [detector._predict(image, **kwargs) for image, kwargs in items]


def _clip_image_batch(engine: Any) -> BatchFn:
    def run(images: list[Any]) -> list[Any]:
        import torch

        with torch.inference_mode():
            pixels = engine.preprocess_batch(images)  # resizing photos: not compute the gate guards
            with scheduling.compute_gate().hold():
                return list(engine._image_vectors(pixels))  # here, or on the inference server (gate set aside)

    return run


def _clip_text_batch(engine: Any) -> BatchFn:
    from cvdemo.vectors import l2_normalize

    def run(texts: list[str]) -> list[Any]:
        unique = list(dict.fromkeys(texts))  # 30 students typing the same query: encode it once
        vectors = dict(zip(unique, l2_normalize(engine._text_vectors(unique))))  # here, or on the inference server
        return [vectors[t] for t in texts]

    return run


def _backbone_batch(extractor: Any) -> BatchFn:
    return lambda images: list(extractor.embed_now(images))


NETWORKS: dict[str, Network] = {
    "detector": Network("detector", 1, _detector_batch),
    "clip-image": Network("clip-image", 16, _clip_image_batch, holds_gate=False),
    "clip-text": Network("clip-text", 64, _clip_text_batch),
    "backbone": Network("backbone", 32, _backbone_batch, holds_gate=False),
}

def scheduler(kind: str, model: Any, identity: str) -> scheduling.Scheduler:
    """The process's scheduler for this network (one per kind and model identity)."""
    name = f"{kind}:{identity}"
    found = scheduling.existing(name)
    if found is not None:
        return found
    network = NETWORKS[kind]
    return scheduling.for_network(name, network.local(model), network.max_batch, network.holds_gate)
