"""What a reader sees when Streamlit renders a markdown string: its text, with the formatting it got.

Streamlit renders messages, captions and labels with a CommonMark + GFM renderer (plus ``$`` math and
``:colour[...]`` directives); markdown-it-py's GFM-like preset renders the same CommonMark, so a test can
check that user text comes out as typed instead of asserting on escaped source.
"""

from __future__ import annotations

import html
import re

from markdown_it import MarkdownIt

_RENDERER = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def rendered_html(source: str) -> str:
    return _RENDERER.render(str(source))


def rendered_text(source: str) -> str:
    """The visible text: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", rendered_html(source))).strip()


def formatting(source: str) -> set[str]:
    """Formatting tags the source produced (strong, em, code, a, del, ...), besides the paragraph."""
    return set(re.findall(r"<(\w+)", rendered_html(source))) - {"p"}
