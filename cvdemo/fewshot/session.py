"""What the few-shot page keeps between reruns, as one typed object (not string-keyed dicts).

The page stores a single :class:`FewshotSession` in Streamlit's session state; everything in it
is a library type, so tests can read it without knowing the page's widget keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from cvdemo.fewshot.embedding_cache import EmbeddingCache
from cvdemo.fewshot.examples import ExampleSet

if TYPE_CHECKING:
    import pandas as pd

    from cvdemo.fewshot.evaluation_plan import CrossValidatedLadder
    from cvdemo.fewshot.extractor import FeatureExtractor
    from cvdemo.fewshot.ladder import LadderRun
    from cvdemo.fewshot.ladder_shots import ShotsRun
    from cvdemo.fewshot.model_io import FineTunedClassifier, OnnxClassifier
    from cvdemo.fewshot.view_bank import ViewBank
    from cvdemo.runtime import RuntimeInfo

    AnyLadder = Union[LadderRun, CrossValidatedLadder]


@dataclass(frozen=True)
class Note:
    """A message written by a callback, shown once on the next run: ``level`` is st.success/info/warning/error."""

    level: str
    text: str


@dataclass(frozen=True)
class EmbedSpeed:
    """How long the last embedding run took per image, and what ran it (for the latency badge)."""

    ms_per_image: float
    runtime: "RuntimeInfo"


@dataclass
class LadderSession:
    """A ladder run and what it was run on (so the page can say so next to the table)."""

    job: "AnyLadder"
    held_out: str  # how the held-out images were chosen, in words
    backbone_key: str
    parity_images: list = field(default_factory=list)  # held-out photos for the ONNX parity check
    shared: bool = False  # other sessions may watch the same run: never stopped implicitly
    classifier: "FineTunedClassifier | None" = None  # built from the finished run on first use
    onnx: bytes | None = None
    onnx_note: str = ""


@dataclass
class EffectResult:
    table: "pd.DataFrame"
    held_out: str
    settings: str


@dataclass
class LoadedModel:
    """A classifier file brought back onto the page."""

    name: str
    model: "FineTunedClassifier | OnnxClassifier"


@dataclass
class FewshotSession:
    examples: ExampleSet = field(default_factory=ExampleSet)
    cache: EmbeddingCache = field(default_factory=EmbeddingCache)
    notes: list[Note] = field(default_factory=list)
    upload_generation: int = 0  # bumped to give upload widgets a fresh (empty) key
    embed_speed: EmbedSpeed | None = None
    ladder: LadderSession | None = None
    shots: "ShotsRun | None" = None
    shots_held_out: str = ""
    effect: EffectResult | None = None
    loaded: LoadedModel | None = None
    model_note: Note | None = None  # the last model file's verdict (loaded, or why not)
    query: tuple[str, Any] | None = None  # (name, PIL image) of the query on the page now
    banks: dict[str, "ViewBank"] = field(default_factory=dict)  # per feature space: views are reused across runs

    def note(self, level: str, text: str) -> None:
        self.notes.append(Note(level, text))

    def take_notes(self) -> list[Note]:
        notes, self.notes = self.notes, []
        return notes

    def bank_for(self, extractor: "FeatureExtractor") -> "ViewBank":
        from cvdemo.fewshot.view_bank import ViewBank

        if extractor.key not in self.banks:
            self.banks[extractor.key] = ViewBank(extractor, self.cache)
        return self.banks[extractor.key]

    def stop_all(self) -> None:
        """Stop this session's own background work (before starting more, or when the examples are cleared);
        a ladder run shared with other sessions goes on (only its Stop button stops it)."""
        own = [self.shots] + ([self.ladder.job] if self.ladder is not None and not self.ladder.shared else [])
        for job in own:
            if job is not None and job.running:
                job.stop()
