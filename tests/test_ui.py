"""cvdemo.ui and cvdemo.text: user text shown as typed, and a runtime switch that is never empty."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from conftest import REPO
from cvdemo import scheduler, text, ui
from markdown_view import formatting, rendered_text

TRICKY = [
    "__init__.py",
    "<b>x</b>",
    "**bold** _it_ `code`",
    "[link](http://example.com)",
    ":red[alarm] :material/home:",
    "$E=mc^2$ costs $5",
    "# heading",
    "- item",
    "a\\b & c",
    "ants ~~bees~~ | x",
]


def test_literal_markdown_shows_the_text_as_typed():
    for typed in TRICKY:
        shown = ui.literal(typed)
        assert rendered_text(shown) == typed, (typed, shown)
        assert formatting(shown) == set(), (typed, shown)
    # inside a sentence with the page's own formatting, only the user's part is neutralised
    sentence = f"**Loaded** {ui.literal('__init__.py')}"
    assert rendered_text(sentence) == "Loaded __init__.py" and formatting(sentence) == {"strong"}


def test_literal_collapses_line_breaks():
    assert rendered_text(ui.literal("two\n\nparagraphs")) == "two paragraphs"


def test_plot_and_html_literals_escape_tags():
    assert text.plot_literal("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"
    assert text.plot_literal("a very long label indeed", 10) == "a very lo…"
    assert text.html_literal('<img src=x onerror="alert(1)">') == "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"


def test_clip_uses_the_same_helpers():
    from cvdemo import clip

    assert clip.md_literal is text.md_literal and clip.plot_literal is text.plot_literal


def _uploader_app():
    from cvdemo import ui

    ui.image_input("t", samples={}, camera=False)


def test_image_input_names_a_bad_file_literally():
    at = AppTest.from_function(_uploader_app, default_timeout=60).run()
    at.file_uploader(key="t_upload").set_value(("__init__.py", b"print('not an image')", "text/x-python")).run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert "__init__.py" in rendered_text(error.value) and "strong" not in formatting(error.value)
    at.file_uploader(key="t_upload").set_value(("**bold** <i>.png", b"\x89PNG broken", "image/png")).run()
    (error,) = at.error
    assert rendered_text(error.value).startswith("**bold** <i>.png") and formatting(error.value) == set()


def test_remembered_is_bounded_per_caller_and_computes_once(monkeypatch):
    session: dict = {}
    monkeypatch.setattr(ui.st, "session_state", session)
    calls = []
    for name in ["a", "a", "b", "c", "a"]:
        value, _ = ui.remembered(("small", name), lambda k=name: calls.append(k) or k.upper(), max_entries=2)
        assert value == name.upper()
    assert calls == ["a", "b", "c", "a"]  # "a" once until it was the oldest of three; then computed again
    assert list(session["cvdemo_remembered"]["small"]) == [("small", "c"), ("small", "a")]
    ui.remembered(("other", 1), lambda: calls.append("other"))  # another caller: its own bound
    ui.remembered(("other", 2), lambda: calls.append("other"))
    assert len(session["cvdemo_remembered"]["small"]) == 2 and len(session["cvdemo_remembered"]["other"]) == 2


def _uploader_keeping_app():
    import streamlit as st

    from cvdemo import ui

    st.session_state["got"] = ui.image_input("t", samples={}, camera=False)


def test_image_input_decodes_an_upload_once():
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 6), "red").save(png, "PNG")
    at = AppTest.from_function(_uploader_keeping_app, default_timeout=60).run()
    at.file_uploader(key="t_upload").set_value(("red.png", png.getvalue(), "image/png")).run()
    ((name, first),) = at.session_state["got"]
    assert name == "red.png" and first.size == (8, 6)
    at.run()  # a rerun (a slider moved): the same image object, so its fingerprint is not hashed again
    ((_, again),) = at.session_state["got"]
    assert again is first


def test_runtime_switch_cannot_end_empty():
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    switch = at.segmented_control(key=ui.RUNTIME_KEY)
    assert switch.value == ui.RUNTIME_ACCELERATED and switch.proto.required  # the browser refuses to clear it
    switch.set_value(ui.RUNTIME_PYTORCH).run()
    assert at.segmented_control(key=ui.RUNTIME_KEY).value == ui.RUNTIME_PYTORCH
    at.segmented_control(key=ui.RUNTIME_KEY).set_value(None).run()  # a client that clears it anyway
    assert not at.exception, at.exception
    assert at.segmented_control(key=ui.RUNTIME_KEY).value == ui.RUNTIME_PYTORCH  # the last choice is back
    assert at.session_state[ui.RUNTIME_KEY] == ui.RUNTIME_PYTORCH


def test_page_runs_collect_garbage_at_most_every_interval(monkeypatch):
    """Streamlit's collection after every run is off (config.toml); ui collects cycles now and then instead."""
    import gc
    import tomllib
    import weakref

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False

    class Node:
        pass

    def cycle() -> weakref.ref:
        node = Node()
        node.me = node  # freed only by the cycle collector
        return weakref.ref(node)

    gc.disable()  # no automatic collection during the test
    try:
        monkeypatch.setattr(ui, "_last_gc", [0.0])  # long ago: this run collects
        first = cycle()
        ui._collect_garbage_now_and_then()
        assert first() is None
        second = cycle()
        ui._collect_garbage_now_and_then()  # a moment later: the next student does not pay for it
        assert second() is not None
        busy = scheduler.ComputeGate(1)
        monkeypatch.setattr(ui, "_last_gc", [0.0])
        with busy.hold():  # another page run is under way: the burst is not over yet
            ui._collect_garbage_now_and_then(busy)
        assert second() is not None
        ui._collect_garbage_now_and_then(busy)  # idle now
        assert second() is None
    finally:
        gc.enable()
        gc.collect()
