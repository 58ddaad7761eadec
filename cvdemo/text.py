"""User text shown as typed: file names, labels, class names and queries never turn into formatting.

Streamlit renders markdown (and its ``:red[...]`` / ``:material/...:`` directives and ``$`` LaTeX) in
messages, captions, image captions, spinners and widget labels; plotly renders a subset of HTML
(``<b>``, ``<br>``, ``<a>``) in labels and legends. A file named ``__init__.py`` must not show a bold
"init", and a label ``<b>x</b>`` must show its tags. Pages pass user text through these helpers
(``ui.literal`` is :func:`md_literal`); Gradio demos use them too.
"""

from __future__ import annotations

import html
import re

_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:=^&")


def md_literal(text: object) -> str:
    """Text for a Streamlit markdown context, shown as typed: every markdown, HTML, LaTeX (``$``) and
    directive character backslash-escaped, runs of white space (new lines too) as one space."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in " ".join(str(text).split()))


# Characters that start inline Markdown/HTML (emphasis, code, links, tags, strike, maths, tables, entities).
_INLINE = re.compile(r"([\\`*_\[\]<>~$|&])")
# A line that would become a heading, quote, list item or rule.
_BLOCK_START = re.compile(r"^(\s*)([#>+\-=])")
_ORDERED_ITEM = re.compile(r"^(\s*\d+)([.)])")
# Streamlit's directives (:smile:, :material/home:, :red[text]) start with ':' followed by a word.
_DIRECTIVE = re.compile(r":(?=[^\s:])")


def md_literal_light(text: object) -> str:
    """Like :func:`md_literal`, but escaping only what would start formatting (inline marks, a line's
    heading/list/quote start, directives broken by a zero-width space), so sentences keep their plain
    punctuation. The Few-shot page's messages use it (its tests pin that form)."""
    text = " ".join(str(text).split())
    text = _INLINE.sub(r"\\\1", text)
    text = _BLOCK_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    text = _ORDERED_ITEM.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    return _DIRECTIVE.sub(":\u200b", text)


_ASCII_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def md_literal_punctuation(text: str) -> str:
    """Text for Streamlit or Gradio markdown with every ASCII punctuation mark backslash-escaped (CommonMark
    allows it for each), new lines kept: the Architectures page and demo show names and spec lines this way."""
    return _ASCII_PUNCTUATION.sub(r"\\\1", text)


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
