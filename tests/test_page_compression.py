"""The Compression page through the real app: one technique end to end, bad knobs, refused uploads."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch
from streamlit.testing.v1 import AppTest

from conftest import open_page
from markdown_view import formatting, rendered_text

PAGE = "app_pages/compression.py"


def _page() -> AppTest:
    return open_page(PAGE, timeout=300)


def _texts(at: AppTest, *kinds: str) -> str:
    return " ".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def _button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


@pytest.fixture(scope="module")
def measured() -> AppTest:
    """Unstructured pruning of EfficientNet-Lite0, 8 ants & bees images, 3 timed runs per batch size."""
    at = _page()
    at.multiselect(key="cx_techniques").set_value(["prune_unstructured"])
    at.slider(key="cx_limit").set_value(8)
    at.number_input(key="cx_repeats").set_value(3)
    at.run()
    _button(at, "cx_run").click().run()
    assert not at.exception, at.exception
    return at


def test_page_lists_models_and_cpu():
    at = _page()
    assert at.selectbox(key="cx_model").value == "efficientnet_lite0"
    assert "ResNet-18" in _texts(at, "markdown")  # listed as not on this machine, with the reason
    assert "VNNI" in _texts(at, "markdown")  # the CPU panel reads /proc/cpuinfo
    assert at.multiselect(key="cx_techniques").value == ["int8_static"]


def test_unstructured_pruning_end_to_end(measured):
    table = measured.dataframe[0].value
    assert list(table["model"]) == ["Original (FP32, PyTorch)", "Unstructured 30% (global), PyTorch"]
    original, pruned = table.iloc[0], table.iloc[1]
    assert pruned["non-zeros"] < 0.75 * original["non-zeros"] and pruned["params"] == original["params"]
    assert pruned["MMACs"] == pytest.approx(original["MMACs"]) and original["MMACs"] == pytest.approx(385.2, abs=1)
    assert pruned["file MB"] == pytest.approx(original["file MB"], rel=0.01) and pruned["zipped MB"] < original["zipped MB"]
    assert original["agreement"] == 1.0 and 0 <= pruned["agreement"] <= 1 and 0 <= original["top-1"] <= 1
    # n and a 95 % interval next to every accuracy, in the table, the caption and the explanation
    assert table["top-1 CI"].str.endswith("%").all() and table["agreement CI"].iloc[0].endswith("–100 %")
    assert any("top-1 on 8 labeled image(s), agreement on 8 image(s)" in c.value for c in measured.caption)
    assert "(95 % CI" in _texts(measured, "markdown") and "n = 8)" in _texts(measured, "markdown")
    explainer = _texts(measured, "markdown")
    assert "dense kernels multiply the zeros too" in explainer and "of the parameters are zero" in explainer
    assert len(measured.get("plotly_chart")) >= 3  # trade-off, sizes, per-layer sparsity
    assert any(b.label.startswith("Download") or "CSV" in b.label for b in measured.get("download_button"))


def test_sparsity_of_100_percent_is_explained(measured):
    measured.slider(key="cx_sparsity").set_value(100)
    measured.run()
    _button(measured, "cx_run").click().run()
    assert not measured.exception, measured.exception
    assert "would remove every weight" in _texts(measured, "error")


def test_empty_labeled_zip_is_explained():
    at = _page()
    at.radio(key="cx_eval").set_value("zip").run()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ants/notes.txt", "no pictures here")
    at.file_uploader(key="cx_zip").set_value(("mine.zip", buffer.getvalue(), "application/zip")).run()
    _button(at, "cx_run").click().run()
    assert not at.exception, at.exception
    assert "is empty" in _texts(at, "error")


def test_pickle_upload_is_refused():
    at = _page()
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2)}, buffer)
    at.file_uploader(key="up_file").set_value(("model.pth", buffer.getvalue(), "application/octet-stream")).run()
    _button(at, "up_run").click().run()
    assert not at.exception, at.exception
    assert "pickle" in _texts(at, "error")


def _jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_zip_file_names_are_shown_as_typed():
    at = _page()
    at.multiselect(key="cx_techniques").set_value(["prune_unstructured"])
    at.number_input(key="cx_repeats").set_value(3)
    at.radio(key="cx_eval").set_value("zip").run()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ants/a.jpg", _jpeg())
        archive.writestr("ants/__init__.jpg", b"not a picture")
    at.file_uploader(key="cx_zip").set_value(("mine.zip", buffer.getvalue(), "application/zip")).run()
    _button(at, "cx_run").click().run()
    assert not at.exception, at.exception
    skipped = next(w.value for w in at.warning if "skipped" in w.value)
    assert "__init__.jpg" in rendered_text(skipped) and "strong" not in formatting(skipped)


def test_every_registered_technique_gets_its_card_with_the_registry_defaults():
    from cvdemo import compression as cx

    at = _page()
    at.multiselect(key="cx_techniques").set_value(cx.list_techniques()).run()
    assert not at.exception, at.exception
    widgets = {"slider": at.slider, "percent": at.slider, "toggle": at.toggle, "choice": at.radio,
               "steps": at.select_slider, "number": at.number_input, "layers": at.multiselect}
    markdown, captions = _texts(at, "markdown"), _texts(at, "caption")
    for key in cx.list_techniques():
        technique = cx.get_technique(key)
        assert f"**{technique.label}**" in markdown
        if not technique.knobs:
            assert technique.description in captions
        defaults = technique.defaults()
        for knob in technique.knobs:
            if not knob.shown(defaults):
                continue
            widget = widgets[knob.kind](key=knob.widget_key)
            expected = (cx.default_layers(knob, cx.factorisable_layers("efficientnet_lite0")) if knob.kind == "layers"
                        else knob.display(knob.default))
            assert widget.value == expected and widget.label == knob.label


def test_the_default_settings_are_the_warm_starts_run():
    from cvdemo.compression import runs

    at = _page()
    assert at.session_state["cx_settings_key"] == runs.run_key(*runs.page_default())


def _small_settings(at: AppTest) -> AppTest:
    at.multiselect(key="cx_techniques").set_value(["prune_unstructured"]).run()
    at.slider(key="cx_sparsity").set_value(45)  # no other test measures this: nothing stored before it runs
    at.slider(key="cx_limit").set_value(8)
    at.number_input(key="cx_repeats").set_value(3)
    return at.run()


def _notes(at: AppTest) -> list[str]:
    return [i.value for i in at.info if "exactly these settings" in i.value]


def test_a_stored_run_shows_at_once_with_its_note_and_measures_again_live():
    first = _small_settings(_page())
    assert not _notes(first)  # nothing stored for these settings yet
    _button(first, "cx_run").click().run()
    assert not first.exception, first.exception
    live = first.session_state["cx_measured"].run
    assert live.stored_at is None and live.key == first.session_state["cx_settings_key"]

    other = _small_settings(_page())  # another student, the same settings: the stored run, nothing measured
    assert not other.exception, other.exception
    assert other.session_state["cx_measured"].run is None
    (note,) = _notes(other)
    assert note.startswith("Measured at ") and "latencies are from that run. **Measure again** to watch it live" in note
    shown = other.dataframe[0].value
    assert list(shown["model"]) == list(live.table["model"]) and list(shown["top-1"]) == list(live.table["top-1"])
    assert len(other.get("plotly_chart")) >= 3  # trade-off, sizes, per-layer sparsity from the stored layers
    assert "dense kernels multiply the zeros too" in _texts(other, "markdown")
    assert not any(b.label.startswith("Download") for b in other.get("download_button"))
    _button(other, "cx_rebuild").click().run()  # the networks are rebuilt only for a download
    assert not other.exception, other.exception
    assert any(b.label.startswith("Download Unstructured 45%") for b in other.get("download_button"))
    assert _notes(other) and other.session_state["cx_measured"].run is None  # still the stored run's numbers

    _button(other, "cx_remeasure").click().run()
    assert not other.exception, other.exception
    again = other.session_state["cx_measured"].run
    assert again is not None and again.stored_at is None and again is not live and not _notes(other)

    other.slider(key="cx_limit").set_value(9).run()  # a changed setting: no stored run's note
    assert not _notes(other)
