"""User text shown as typed: file names, labels, class names and queries never turn into formatting.

Streamlit renders markdown (and its ``:red[...]`` / ``:material/...:`` directives and ``$`` LaTeX) in
messages, captions, image captions, spinners and widget labels; plotly renders a subset of HTML
(``<b>``, ``<br>``, ``<a>``) in labels and legends. A file named ``__init__.py`` must not show a bold
"init", and a label ``<b>x</b>`` must show its tags. Pages pass user text through these helpers
(``ui.literal`` is :func:`md_literal`); Gradio demos use them too.
"""

from __future__ import annotations

import html

_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:=^&")


def md_literal(text: object) -> str:
    """Text for a Streamlit markdown context, shown as typed: every markdown, HTML, LaTeX (``$``) and
    directive character backslash-escaped, runs of white space (new lines too) as one space."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in " ".join(str(text).split()))


def quoted(text: object) -> str:
    """User text between quotes, escaped for markdown (see :func:`md_literal`)."""
    return f"“{md_literal(text)}”"


def plot_literal(text: object, max_chars: int | None = None) -> str:
    """Text for a plotly label, legend or hover: its HTML-like tags escaped and, with ``max_chars``,
    shortened with an ellipsis so labels do not run into each other."""
    text = " ".join(str(text).split())
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def html_literal(text: object) -> str:
    """Text inside an HTML snippet (``st.html``, ``gr.HTML``): tags and entities shown, not parsed."""
    return html.escape(str(text), quote=True)
