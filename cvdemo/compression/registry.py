"""The technique registry: one place that says which compression techniques exist and what their knobs are.

Modelled on timm's model registry (``register_model`` / ``list_models`` / ``is_model``): each technique
registers itself once with a key, a label, a one-sentence description, its knobs (default, range, help)
and an ``apply(model name, knobs, progress) -> Variant`` function. The Compression page lays out its
settings cards from it, the Gradio demo builds its dropdown and slider from it, :func:`make_variant`
applies through it, and the tests loop over :func:`list_techniques` as timm's loop over ``list_models()``.

Plain data, no torch: the registrations themselves live in :mod:`cvdemo.compression.techniques`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from cvdemo.compression.errors import CompressionError, Progress

if TYPE_CHECKING:
    from cvdemo.compression.variant import Variant

# How a knob is set (and drawn): an integer slider, a fraction shown in percent, an on/off switch,
# one of a few named choices, one of a few numbers on a slider, a number box, or layers of the model.
KNOB_KINDS = ("slider", "percent", "toggle", "choice", "steps", "number", "layers")


@dataclass(frozen=True)
class Knob:
    """One setting of a technique: the argument it fills, how it is shown, its default and range.

    ``percent`` knobs hold fractions (0.3) and are shown in percent (30); ``low``/``high``/``step`` are in
    the knob's own unit (fractions for percent knobs). ``when=("keep", "rank")``: the knob is only used
    (and shown) while knob ``keep`` has value ``"rank"``. ``widget_key``: the page widget's stable id (its
    session state and the tests find the widget by it).
    """

    key: str
    label: str
    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple = ()
    choice_labels: Mapping[Any, str] = field(default_factory=dict)
    help: str | None = None
    when: tuple[str, Any] | None = None
    widget_key: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KNOB_KINDS:
            raise ValueError(f"Knob {self.key!r}: kind {self.kind!r} is not one of {', '.join(KNOB_KINDS)}.")

    def shown(self, values: Mapping[str, Any]) -> bool:
        """Whether this knob is used with the other knobs at ``values``."""
        return self.when is None or values.get(self.when[0]) == self.when[1]

    def display(self, value: float) -> int | float:
        """A value as the widget shows it: percent knobs in whole percent, others unchanged."""
        return int(round(value * 100)) if self.kind == "percent" else value

    def from_display(self, shown: float) -> float | int:
        """The widget's value back in the knob's unit (30 % -> 0.3; whole numbers stay whole)."""
        if self.kind == "percent":
            return float(shown) / 100
        return int(shown) if self.kind in ("slider", "number", "steps") else shown


Apply = Callable[[str, dict[str, Any], "Progress | None"], "Variant"]


@dataclass(frozen=True)
class Technique:
    """A registered technique: what it is called, what it does, its knobs, and how it is applied.

    ``demo_knob``: the one knob the Gradio demo offers (None: no knob); ``demo_fixed``: knobs the demo pins
    so a shared run stays short (e.g. no recovery fine-tune).
    """

    key: str
    label: str
    description: str
    knobs: tuple[Knob, ...]
    apply: Apply
    demo_knob: Knob | None = None
    demo_fixed: Mapping[str, Any] = field(default_factory=dict)

    def knob(self, key: str) -> Knob:
        return next(k for k in self.knobs if k.key == key)

    def defaults(self) -> dict[str, Any]:
        """Every knob at its default."""
        return {k.key: k.default for k in self.knobs}

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``given`` completed with defaults. A knob that chooses between others (``when``) and is not
        given follows the given knob it gates: ``{"energy": 0.8}`` alone means keep an energy fraction."""
        given = dict(given or {})
        out = dict(given)
        for knob in self.knobs:
            if knob.key in out:
                continue
            implied = {k.when[1] for k in self.knobs if k.when and k.when[0] == knob.key and k.key in given}
            out[knob.key] = implied.pop() if len(implied) == 1 else knob.default
        return out


_TECHNIQUES: dict[str, Technique] = {}
TECHNIQUES: dict[str, str] = {}  # key -> label, in registration order (kept in step by register_technique)


def register_technique(
    key: str,
    label: str,
    description: str,
    knobs: tuple[Knob, ...] = (),
    demo_knob: Knob | None = None,
    demo_fixed: Mapping[str, Any] | None = None,
) -> Callable[[Apply], Apply]:
    """Decorator: register ``apply(name, knobs, progress) -> Variant`` as technique ``key``."""

    def register(apply: Apply) -> Apply:
        if key in _TECHNIQUES:
            raise ValueError(f"Technique {key!r} is registered twice.")
        _TECHNIQUES[key] = Technique(key, label, description, tuple(knobs), apply, demo_knob, dict(demo_fixed or {}))
        TECHNIQUES[key] = label
        return apply

    return register


def list_techniques() -> list[str]:
    """Every registered technique's key, in the order the page lists them."""
    return list(_TECHNIQUES)


def is_technique(key: str) -> bool:
    return key in _TECHNIQUES


def get_technique(key: str) -> Technique:
    """The technique registered as ``key``; an unknown key is a :class:`CompressionError`."""
    try:
        return _TECHNIQUES[key]
    except KeyError:
        raise CompressionError(f"Unknown technique {key!r}.") from None
