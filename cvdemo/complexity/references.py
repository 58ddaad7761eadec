"""Published counts beside ours: the papers' numbers (``assets/paper_numbers.json``) and torchvision's model cards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cvdemo import zoo
from cvdemo.complexity.results import Profile


def paper_numbers() -> dict[str, Any]:
    """``assets/paper_numbers.json``: published parameter and multiply-add counts with citations."""
    import json
    from pathlib import Path

    return json.loads((Path(__file__).resolve().parents[2] / "assets" / "paper_numbers.json").read_text())


def paper_facts(key: str, resolution: int | None = None) -> list[dict[str, Any]]:
    """Published numbers for zoo model ``key`` (at ``resolution`` when the paper gives one)."""
    data = paper_numbers()
    facts = [f for f in data["facts"] if f["model"] == key]
    if resolution is not None:
        facts = [f for f in facts if f.get("resolution") in (None, resolution)]
    return [{**f, "citation": data["sources"][f["source"]]} for f in facts]


@dataclass(frozen=True)
class Reference:
    """A published (or library-reported) count beside ours."""

    source: str  # full citation
    where: str  # table / section
    called: str  # the source's own word for the compute number
    params: int | None
    macs: int | None
    ours_params: int
    ours_macs: int
    url: str = ""
    note: str = ""
    short: str = ""  # e.g. "He et al. 2016"

    @property
    def params_ratio(self) -> float | None:
        return self.ours_params / self.params if self.params else None

    @property
    def macs_ratio(self) -> float | None:
        return self.ours_macs / self.macs if self.macs else None


def torchvision_card(name: str) -> dict[str, Any] | None:
    """torchvision's own metadata for its pretrained weights: parameters and "GFLOPS" (which are GMACs)."""
    try:
        source, arch = zoo.resolve(name)
    except zoo.UnknownModel:
        return None
    if source != "torchvision":
        return None
    from torchvision.models import get_model_weights

    weights = list(get_model_weights(arch))
    if not weights:
        return None
    meta = weights[0].meta
    size = meta.get("min_size")
    transforms = weights[0].transforms()
    crop = getattr(transforms, "crop_size", None)
    resolution = int(crop[0]) if crop else (int(size[0]) if size else None)
    return {"weights": str(weights[0]), "params": meta.get("num_params"), "gmacs": meta.get("_ops"), "resolution": resolution}


_CARD_NOTES = {
    "inception_v3": "Its parameter count includes the auxiliary classifier used only in training, which the zoo leaves out.",
}


def references(key: str, prof: Profile) -> list[Reference]:
    """Paper numbers for zoo model ``key`` at the profiled resolution, and torchvision's model card."""
    resolution = prof.input_size[-1]
    out = [
        Reference(
            source=f["citation"]["cite"], where=f["where"], called=f["called"], params=f["params"], macs=f["macs"],
            ours_params=prof.total_params, ours_macs=prof.total_macs, url=f["citation"].get("url", ""), note=f.get("note", ""),
            short=f["citation"].get("short", f["source"]),
        )
        for f in paper_facts(key, resolution)
    ]  # fmt: skip
    card = torchvision_card(key)
    if card and card["resolution"] == resolution and card["gmacs"]:
        out.append(
            Reference(
                source=f"torchvision model card ({card['weights']})", where="weights.meta: num_params, _ops",
                called="GFLOPS (really GMACs)", params=card["params"], macs=round(card["gmacs"] * 1e9),
                ours_params=prof.total_params, ours_macs=prof.total_macs,
                url="https://pytorch.org/vision/stable/models.html",
                note=_CARD_NOTES.get(zoo.resolve(key)[1], "Printed to 3 decimals in G."),
                short="torchvision model card",
            )
        )  # fmt: skip
    return out
