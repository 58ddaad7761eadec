"""Issue 19's layout and wording fixes, as a browser shows them: user text as typed, a runtime switch that
stays on one choice, and Compression's settings cards readable with every technique selected."""

from __future__ import annotations

import pytest

from .streamlit_page import click, expect, main, open_page, rerun_after, settle, upload

pytestmark = pytest.mark.browser


def test_a_markdown_file_name_is_shown_literally(page, app_url, tmp_path):
    tricky = tmp_path / "__init__.py"
    tricky.write_text("print('a Python file, not a picture')\n")
    open_page(page, app_url, "segmentation")
    click(page, main(page).get_by_text("Instance vs semantic", exact=True))
    click(page, main(page).get_by_role("radiogroup", name="Photo source").get_by_text("Upload", exact=True))
    upload(page, [tricky])
    error = main(page).get_by_test_id("stAlertContentError").filter(has_text="__init__.py")
    expect(error).to_be_visible()  # the underscores are shown, not eaten by bold
    assert error.locator("strong, em, b, i").count() == 0, error.inner_html()


def test_the_runtime_switch_cannot_be_emptied(page, app_url):
    open_page(page, app_url)
    switch = page.get_by_test_id("stSidebar").get_by_label("Inference runtime", exact=True)
    selected = switch.get_by_role("radio", checked=True)
    expect(selected).to_have_text("Accelerated")
    rerun_after(page, lambda: selected.click())  # clicking the chosen runtime again must not clear it
    expect(switch.get_by_role("radio", checked=True)).to_have_text("Accelerated")
    rerun_after(page, lambda: switch.get_by_role("radio", name="PyTorch").click())
    expect(switch.get_by_role("radio", checked=True)).to_have_text("PyTorch")


@pytest.mark.parametrize("width", [1280, 1400])
def test_compression_settings_cards_stay_readable_with_every_technique(page, app_url, width):
    page.set_viewport_size({"width": width, "height": 1000})
    open_page(page, app_url, "compression")
    titles = ["INT8 static", "INT8 dynamic", "FP16 weights", "BF16 weights", "unstructured", "structured channels",
              "SVD factorisation"]
    picker = main(page).get_by_test_id("stMultiSelect").first
    for title in titles[1:]:  # INT8 static is the default; add the others as a lecturer picks them
        picker.locator("input").first.click()  # the text field, not a chip (its x would remove it)
        option = page.get_by_role("option").filter(has_text=title).first
        expect(option).to_be_visible()
        option.click()
        page.keyboard.press("Escape")
        settle(page)
    for title in titles:
        heading = main(page).locator("strong", has_text=title).first
        expect(heading).to_be_visible()
        box = heading.bounding_box()
        assert box["width"] >= 150, f"'{title}' is squeezed to {box['width']:.0f} px at {width} px"
    layers = main(page).get_by_test_id("stMultiSelect").filter(has_text="Layers (empty = all)")
    assert layers.bounding_box()["width"] >= 220, "the low-rank layer picker shrank"
