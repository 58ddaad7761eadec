"""Where parameters, MACs and activation memory live: a profile's layers in at most 40 groups."""

from __future__ import annotations

from dataclasses import dataclass

from cvdemo.complexity.results import LayerRow, Profile


@dataclass(frozen=True)
class Group:
    name: str
    label: str  # name plus what the layer is, e.g. "features.0 · conv 11×11, 64"
    params: int
    macs: int
    activation_bytes: int
    layers: int


def breakdown(prof: Profile, max_groups: int = 40) -> list[Group]:
    """Where parameters, MACs and activation memory live, in at most ``max_groups`` groups in order.

    Small nets: one group per conv/dense layer, with the BatchNorm, activation and pooling layers
    after it. Big nets: layers grouped by module path prefix (e.g. ``layer1.0``), the finest that fits.
    """
    rows = list(prof.layers)
    if not rows:
        return []
    computing = [r for r in rows if r.macs]
    keys: list[str]
    if len(computing) <= max_groups:
        keys, current = [], computing[0].name if computing else rows[0].name
        for r in rows:
            if r.macs:
                current = r.name
            keys.append(current)
    else:
        depth = 1
        for d in range(1, 8):
            if len({".".join(r.name.split(".")[:d]) for r in rows}) <= max_groups:
                depth = d
            else:
                break
        keys = [".".join(r.name.split(".")[:depth]) for r in rows]
    groups: dict[str, list[LayerRow]] = {}
    for key, r in zip(keys, rows):
        groups.setdefault(key, []).append(r)
    return [
        Group(
            key,
            _group_label(key, rs),
            sum(r.params for r in rs),
            sum(r.macs for r in rs),
            sum(r.activation_bytes for r in rs),
            len(rs),
        )
        for key, rs in groups.items()
    ]


def _group_label(key: str, rows: list[LayerRow]) -> str:
    head = next((r for r in rows if r.name == key), None)
    if head is None:
        return key
    a = head.attrs
    if "kernel_size" in a and "out_channels" in a:
        kind = "dwconv" if a.get("groups", 1) == a.get("in_channels") != 1 else "conv"
        return f"{key} · {kind} {'×'.join(map(str, a['kernel_size']))}, {a['out_channels']}"
    if "out_features" in a:
        return f"{key} · dense {a['out_features']}"
    return f"{key} · {head.type}"
