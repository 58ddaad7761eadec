"""The Architectures page through the real app: a zoo model, a typed network, the on-demand panels."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO
from cvdemo import complexity as cx

PAGE = "app_pages/architectures.py"


@pytest.fixture
def page() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_zoo_model_totals_papers_and_formula(page):
    at = page
    assert metrics(at)["Parameters"] == "61,100,840"  # AlexNet by default
    at.selectbox(key="arch_model").set_value("vgg16").run()
    assert not at.exception, at.exception
    shown = metrics(at)
    assert shown["Parameters"] == "138,357,544" and shown["MACs"] == "15,470,264,320"
    papers = at.dataframe[0].value
    assert papers["source"].str.contains("Simonyan").any() and papers["source"].str.contains("Sze").any()
    layers = at.dataframe[1].value
    assert len(layers) == len(cx.profile("vgg16").layers) and layers["params"].sum() == 138_357_544
    code = " ".join(c.value for c in at.code)
    assert "3·3·3·64 + 64 = 1,792" in code  # formula view of the first conv
    assert any("the formula agrees" in s.value for s in at.success)

    at.segmented_control(key="arch_unit").set_value("FLOPs").run()
    assert metrics(at)["FLOPs"] == "30,940,528,640"


def test_resolution_slider_changes_macs_not_params(page):
    at = page
    at.selectbox(key="arch_model").set_value("mobilenetv1_100").run()
    at.select_slider(key="arch_res_mobilenetv1_100").set_value(160).run()
    assert not at.exception, at.exception
    shown = metrics(at)
    assert shown["Parameters"] == "4,231,976" and shown["MACs"] == "290,675,200"
    papers = at.dataframe[0].value
    assert papers["source"].str.contains("Howard").any()  # Table 7's 160 px row


def test_typed_network_and_a_bad_line(page):
    at = page
    at.segmented_control(key="arch_source").set_value("Type a network").run()
    assert not at.exception, at.exception
    assert metrics(at)["Parameters"] == "2,103,636"
    at.text_area(key="arch_spec").set_value("input 32x32x3\nconv 8 3x3\nconv 16 40x40\n").run()
    assert not at.exception
    assert any("Line 3" in e.value and "does not fit" in e.value for e in at.error)


def test_unknown_name_is_a_sentence_not_a_traceback(page):
    at = page
    at.segmented_control(key="arch_source").set_value("Any timm / torchvision model").run()
    at.text_input(key="arch_name").set_value("resnet5O").run()
    assert not at.exception
    assert any("Unknown model" in e.value for e in at.error)
    at.text_input(key="arch_name").set_value("squeezenet1_0").run()
    assert not at.exception and metrics(at)["Parameters"] == "1,248,424"


def test_counters_and_latency_on_demand(page):
    at = page
    at.selectbox(key="arch_model").set_value("lenet5").run()
    at.session_state["arch_tab"] = "Counters disagree"
    at.run()
    at.button(key="arch_counters_run").click().run()
    assert not at.exception, at.exception
    tools = at.dataframe[-1].value["tool"].tolist()
    assert any("FlopCounterMode" in t for t in tools) and any("fvcore" in t for t in tools)
    assert any("exactly 2 × our 416,520 MACs" in m.value for m in at.markdown)

    at.session_state["arch_tab"] = "FLOPs ≠ speed"
    at.run()
    at.multiselect(key="arch_speed").set_value(["lenet5", "mobilenetv1_025"]).run()
    at.button(key="arch_speed_run").click().run()
    assert not at.exception, at.exception
    timed = at.dataframe[-1].value
    assert list(timed["model"]) == ["LeNet-5", "MobileNetV1 0.25"] and (timed["median ms"] > 0).all()


def test_compare_tab_scatter_separable_and_mobilenet_grid(page):
    at = page
    at.session_state["arch_tab"] = "Compare models"
    at.run()
    assert not at.exception, at.exception
    sep = next(d.value for d in at.dataframe if "layer" in d.value.columns and len(d.value) == 2)
    assert sep["MACs"].tolist() == [3 * 3 * 128 * 256 * 56 * 56, (9 * 128 + 128 * 256) * 56 * 56]
    grid = next(d.value for d in at.dataframe if "α" in d.value.columns)
    assert "paper 569M" in grid.loc[0, "224 px"]
