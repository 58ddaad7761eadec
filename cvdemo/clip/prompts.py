"""User text for the CLIP lesson: class labels, prompt templates (the CLIP paper's 80-prompt ensemble), queries.

Each function cleans what a student typed and says, in a note or a :class:`ClipInputError`, what it changed.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Sequence

from cvdemo.clip._common import ClipInputError

# --- limits: user input is checked against these, with a sentence when it does not fit -------------
MAX_LABELS = 100
MAX_LABEL_CHARS = 100
MAX_QUERY_CHARS = 300

ENSEMBLE = "ensemble"
TEMPLATE_CHOICES: dict[str, str] = {
    ENSEMBLE: "80-prompt ensemble (CLIP paper)",
    "a photo of a {}.": "“a photo of a {}.”",
    "{}": "label only",
}

LABEL_PRESETS: dict[str, list[str]] = {
    "Street scene": ["bus", "car", "person", "bicycle", "traffic light", "building", "tree"],
    "CIFAR-10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "Cat or dog": ["cat", "dog"],
    "Pet breeds": ["Abyssinian cat", "Bengal cat", "Bombay cat", "British Shorthair cat", "Maine Coon cat",
                   "American bulldog", "Great Pyrenees dog"],
    "Ants vs bees": ["ant", "bee"],
    "Nothing fits (chair, banana, spaceship)": ["chair", "banana", "spaceship"],
}


@lru_cache(maxsize=1)
def imagenet_templates() -> tuple[str, ...]:
    """The 80 prompt templates of the CLIP paper (as shipped by open_clip), with ``{}`` for the label."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


def template_list(templates: str | Sequence[str]) -> list[str]:
    """``"ensemble"`` -> the 80 CLIP prompts; one template or a list of them, each with ``{}``."""
    if isinstance(templates, str):
        if templates == ENSEMBLE:
            return list(imagenet_templates())
        templates = [templates]
    out = [str(t) for t in templates]
    if not out:
        raise ClipInputError("Choose at least one prompt template.")
    bad = [t for t in out if "{}" not in t]
    if bad:
        raise ClipInputError(f"A prompt template needs {{}} where the label goes; {quoted(bad[0])} has none.")
    return out


def parse_labels(labels: str | Iterable[str]) -> tuple[list[str], list[str]]:
    """Clean class labels: split on commas/new lines, trim, drop empties and duplicates.

    Returns ``(labels, notes)``; notes explain what was changed. Raises :class:`ClipInputError`
    when no label is left or there are more than :data:`MAX_LABELS`.
    """
    raw = re.split(r"[,\n;]", labels) if isinstance(labels, str) else [str(x) for x in labels]
    notes: list[str] = []
    cleaned: list[str] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    for item in raw:
        label = " ".join(item.split())
        if not label:
            continue
        if len(label) > MAX_LABEL_CHARS:
            notes.append(f"{quoted(label[:30] + '…')} was cut to {MAX_LABEL_CHARS} characters.")
            label = label[:MAX_LABEL_CHARS]
        if label.casefold() in seen:
            duplicates.append(label)
            continue
        seen.add(label.casefold())
        cleaned.append(label)
    if duplicates:
        notes.append(f"Duplicate labels were removed: {', '.join(quoted(d) for d in dict.fromkeys(duplicates))}.")
    if not cleaned:
        raise ClipInputError("Type at least one label (comma-separated), e.g. “cat, dog, car”.")
    if len(cleaned) > MAX_LABELS:
        raise ClipInputError(f"{len(cleaned)} labels is too many; use at most {MAX_LABELS}.")
    if len(cleaned) == 1:
        notes.append(
            "With one label the softmax is always 100%: probabilities only compare labels. "
            "Read the raw cosine (or add labels) to judge the match."
        )
    return cleaned, notes


_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:=^&")


def md_literal(text: str) -> str:
    """User text for a Streamlit markdown message, shown as typed: every markdown, HTML, LaTeX ($) and
    directive (``:red[...]``, ``:material/...:``) character backslash-escaped, new lines as spaces."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in " ".join(str(text).split()))


def quoted(text: str) -> str:
    """User text between quotes, escaped for markdown (see :func:`md_literal`)."""
    return f"“{md_literal(text)}”"


def plot_literal(text: str, max_chars: int | None = None) -> str:
    """User text for a plotly label or legend: its HTML-like tags escaped (plotly renders <b>, <br>, <a>)
    and, with ``max_chars``, shortened with an ellipsis so labels do not run into each other."""
    text = " ".join(str(text).split())
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clean_query(text: str) -> tuple[str, list[str]]:
    """A search query trimmed to :data:`MAX_QUERY_CHARS`; notes say if it was cut."""
    query = " ".join(str(text or "").split())
    if not query:
        raise ClipInputError("Type a query, e.g. “a photo of a ship”.")
    notes = []
    if len(query) > MAX_QUERY_CHARS:
        notes.append(
            f"The query had {len(query):,} characters; only the first {MAX_QUERY_CHARS} were used "
            "(text encoders read a few dozen words at most)."
        )
        query = query[:MAX_QUERY_CHARS]
    return query, notes
