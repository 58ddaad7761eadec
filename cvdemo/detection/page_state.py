"""The Detection page's session state as typed dataclasses (what a rerun keeps between clicks)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cvdemo.detection.evaluation import Evaluation


@dataclass
class EvaluationState:
    """The last evaluation of this session, with what the labeled set left out and the notes about it."""

    evaluation: Evaluation
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
