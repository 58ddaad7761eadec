"""User text (class names, file names) shown literally: never rendered as Markdown, HTML or a Plotly tag.

Streamlit renders Markdown in every message and caption; Plotly renders a few HTML tags in labels.
A class called ``**<b>x</b>**`` must appear as typed, so pages and figures pass user text through
these two functions.
"""

from __future__ import annotations

import html
import re

# Characters that start inline Markdown/HTML (emphasis, code, links, tags, strike, maths, tables, entities).
_INLINE = re.compile(r"([\\`*_\[\]<>~$|&])")
# A line that would become a heading, quote, list item or rule.
_BLOCK_START = re.compile(r"^(\s*)([#>+\-=])")
_ORDERED_ITEM = re.compile(r"^(\s*\d+)([.)])")
# Streamlit's directives (:smile:, :material/home:, :red[text]) start with ':' followed by a word.
_DIRECTIVE = re.compile(r":(?=[^\s:])")


def markdown(text: object) -> str:
    """``text`` for st.markdown / st.info / st.caption, shown exactly as typed (on one line)."""
    text = " ".join(str(text).split())
    text = _INLINE.sub(r"\\\1", text)
    text = _BLOCK_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    text = _ORDERED_ITEM.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    return _DIRECTIVE.sub(":\u200b", text)


def plotly(text: object) -> str:
    """``text`` for Plotly labels, legends and hover text: its HTML-like tags shown, not applied."""
    return html.escape(str(text), quote=False)
