"""The Architectures page through the real app: a zoo model, a typed network, the on-demand panels."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO
from cvdemo import complexity as cx
from test_complexity import HUGE_SPECS, rss_watch

PAGE = "app_pages/architectures.py"


@pytest.fixture
def page() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.switch_page(PAGE).run()  # no Home run first: see conftest.open_page
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def exact(at: AppTest) -> dict[str, str]:
    """The exact figure each headline metric gives on hover ("Exactly 15,470,264,320 MACs: ...")."""
    return {m.label: re.search(r"Exactly ([\d,]+)", m.help).group(1) for m in at.metric if "Exactly" in m.help}


def shown(markdown: str) -> str:
    """What Streamlit displays for escaped markdown: every backslash escape undone."""
    return re.sub(r"\\(.)", r"\1", markdown)


def test_zoo_model_totals_papers_and_formula(page):
    at = page
    assert metrics(at)["Parameters"] == "61.1 M" and exact(at)["Parameters"] == "61,100,840"  # AlexNet by default
    at.selectbox(key="arch_model").set_value("vgg16").run()
    assert not at.exception, at.exception
    # Compact headline numbers fit a narrow window (issue 19: "15,470,264,3…"); the exact figure is on hover.
    assert metrics(at) == {"Parameters": "138.4 M", "MACs": "15.47 G", "Weights": "528 MB", "Activations": "57.6 MB",
                           "Receptive field": "212 px"}  # fmt: skip
    assert exact(at) == {"Parameters": "138,357,544", "MACs": "15,470,264,320"}
    papers = at.dataframe[0].value
    assert papers["source"].str.contains("Simonyan").any() and papers["source"].str.contains("Sze").any()
    layers = at.dataframe[1].value
    assert len(layers) == len(cx.profile("vgg16").layers) and layers["params"].sum() == 138_357_544
    code = " ".join(c.value for c in at.code)
    assert "3·3·3·64 + 64 = 1,792" in code  # formula view of the first conv
    assert any("the formula agrees" in s.value for s in at.success)

    at.segmented_control(key="arch_unit").set_value("FLOPs").run()
    assert metrics(at)["FLOPs"] == "30.94 G" and exact(at)["FLOPs"] == "30,940,528,640"
    at.selectbox(key="arch_model").set_value("vit_base_patch16_224").run()
    at.segmented_control(key="arch_unit").set_value("MACs").run()
    assert metrics(at)["MACs"] == "17.56 G" and exact(at)["MACs"] == "17,563,828,224"


def test_resolution_slider_changes_macs_not_params(page):
    at = page
    at.selectbox(key="arch_model").set_value("mobilenetv1_100").run()
    at.select_slider(key="arch_res_mobilenetv1_100").set_value(160).run()
    assert not at.exception, at.exception
    assert exact(at) == {"Parameters": "4,231,976", "MACs": "290,675,200"}
    assert metrics(at)["MACs"] == "290.7 M"
    papers = at.dataframe[0].value
    assert papers["source"].str.contains("Howard").any()  # Table 7's 160 px row


def test_typed_network_and_a_bad_line(page):
    at = page
    at.segmented_control(key="arch_source").set_value("Type a network").run()
    assert not at.exception, at.exception
    assert exact(at)["Parameters"] == "2,103,636"
    at.text_area(key="arch_spec").set_value("input 32x32x3\nconv 8 3x3\nconv 16 40x40\n").run()
    assert not at.exception
    assert any("Line 3" in e.value and "does not fit" in e.value for e in at.error)


def test_any_model_default_and_the_names_its_help_offers(page):
    at = page
    at.segmented_control(key="arch_source").set_value("Any timm / torchvision model").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.text_input(key="arch_name").value == "regnet_y_400mf"  # was "Cannot copy out of meta tensor"
    assert exact(at) == {"Parameters": "4,344,144", "MACs": "401,842,848"}  # torchvision's card: 4,344,144; 0.402 G
    for name, params in [("squeezenet1_0", "1,248,424"), ("swin_t", "28,288,354"), ("resnet26d", "16,014,408")]:
        assert name in at.text_input(key="arch_name").help
        at.text_input(key="arch_name").set_value(name).run()
        assert not at.exception and not at.error and exact(at)["Parameters"] == params, name


@pytest.mark.parametrize(
    "name, kind, phrase",
    [
        ("", "info", "Type a model name above, e.g. resnet50"),
        ("   ", "info", "Type a model name above"),
        ("resnet5O", "error", "Unknown model 'resnet5O': not in the zoo, torchvision or timm. Did you mean: resnet50,"),
        ("x" * 500, "error", "Unknown model 'xxxx"),  # the box keeps 120 characters
        ("**bold** <b>x</b> [a](http://e.com) :red[hi] $x$ `c`", "error",
         "Unknown model '**bold** <b>x</b> [a](http://e.com) :red[hi] $x$ `c`'"),
    ],
)  # fmt: skip
def test_junk_names_get_a_clear_message_not_a_traceback(page, name, kind, phrase):
    at = page
    at.segmented_control(key="arch_source").set_value("Any timm / torchvision model").run()
    at.text_input(key="arch_name").set_value(name).run()
    assert not at.exception, at.exception  # an empty name raised an uncaught exception before
    messages = [m.value for m in (at.info if kind == "info" else at.error)]
    assert len(messages) == 1 and shown(messages[0]).startswith(phrase), messages
    assert not at.metric  # nothing counted for a name that is not a model
    if kind == "error":  # user text is escaped: Streamlit shows it as typed, not as bold, a link, red or maths
        assert "**" not in messages[0] and "<b>" not in messages[0] and "[a]" not in messages[0] and len(messages[0]) < 600


@pytest.mark.parametrize("key", list(HUGE_SPECS))
def test_huge_typed_networks_are_counted_from_shapes_and_never_run(page, key):
    spec, params, macs = HUGE_SPECS[key]
    at = page
    at.segmented_control(key="arch_source").set_value("Type a network").run()
    at.session_state["arch_tab"] = "Counters disagree"
    with rss_watch() as grew:
        at.text_area(key="arch_spec").set_value(spec).run()
        assert not at.exception, at.exception
        assert exact(at) == {"Parameters": f"{params:,}", "MACs": f"{macs:,}"}  # by formula, no forward pass
        (warning,) = [w.value for w in at.warning]
        assert shown(warning).startswith("This network needs ~") and "the limit here is 1 GB per run" in shown(warning)
        assert f"parameters ({params:,}) and MACs ({macs:,}) above are counted from shapes alone" in shown(warning)
        assert at.button(key="arch_counters_run").disabled  # and cx.compare_spec_counters refuses too
    assert grew() < 200 * 2**20, f"{grew() / 2**20:.0f} MB"  # the browser walk saw 9.2 GB for the first one


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


def test_a_smaller_budget_refuses_counters_and_timing_with_the_sentence(page, monkeypatch):
    from cvdemo.complexity import memory_budget

    monkeypatch.setattr(memory_budget, "RUN_BUDGET_BYTES", 2**20)  # 1 MB: even LeNet-5's run is over it
    at = page
    at.selectbox(key="arch_model").set_value("lenet5").run()
    at.session_state["arch_tab"] = "Counters disagree"
    at.run()
    assert at.button(key="arch_counters_run").disabled
    (warning,) = [shown(w.value) for w in at.warning]
    assert warning.startswith("This network needs ~") and "the limit here is 1 MB per run" in warning
    at.session_state["arch_tab"] = "FLOPs ≠ speed"
    at.run()
    # A model no other test timed (a cached timing costs no memory and is shown as it is).
    at.multiselect(key="arch_speed").set_value(["mobilenetv1_075"]).run()
    at.button(key="arch_speed_run").click().run()
    assert not at.exception, at.exception
    assert any(shown(w.value).startswith("MobileNetV1 0.75 needs ~") and "not run for real" in shown(w.value)
               for w in at.warning)  # fmt: skip
    assert "Nothing timed yet" in " ".join(c.value for c in at.caption)


# --- receptive fields, the picture, design rules, the quiz ----------------------------------------------


def test_receptive_field_column_metric_and_tab(page):
    at = page
    at.selectbox(key="arch_model").set_value("vgg16").run()
    layers = at.dataframe[1].value.set_index("layer")
    assert layers.loc["features.30", "field (px)"] == 212 and layers.loc["features.30", "jump (px)"] == 32
    assert layers.loc["features.0", "field (px)"] == 3
    assert "sees 212 px of the 224 px image" in shown(next(m.help for m in at.metric if m.label == "Receptive field"))
    at.session_state["arch_tab"] = "Receptive field"
    at.run()
    assert not at.exception, at.exception
    assert any("sees 212 px of the 224 px image" in shown(i.value) for i in at.info)
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # field vs depth, the field on the picture, the effective field
    caption = " ".join(shown(c.value) for c in at.caption)
    assert "EfficientNet-Lite0, pretrained on ImageNet sees" in caption and "95% of the gradient" in caption
    assert "none outside" in caption


def test_picture_with_the_models_own_random_weights(page):
    at = page
    at.selectbox(key="arch_model").set_value("resnet18").run()
    at.session_state["arch_tab"] = "Receptive field"
    at.run()
    merges = " ".join(shown(m.value) for m in at.markdown)
    assert "layer1.0 (add): layer1.0.bn2 27 px vs maxpool 11 px; the widest, layer1.0.bn2, sets the field." in merges
    at.radio(key="arch_pic_net").set_value("ResNet-18, random weights").run()
    assert not at.exception, at.exception
    caption = " ".join(shown(c.value) for c in at.caption)
    assert "Measured with random weights" in caption and "Random weights" in caption


def test_a_model_the_tracer_cannot_follow_gets_a_sentence(page):
    at = page
    at.segmented_control(key="arch_source").set_value("Any timm / torchvision model").run()
    at.text_input(key="arch_name").set_value("swin_t").run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Receptive field"] == "—"
    at.session_state["arch_tab"] = "Receptive field"
    at.run()
    assert not at.exception, at.exception
    (warning,) = [shown(w.value) for w in at.warning]
    assert warning.startswith("The tracer cannot follow aten.view (windows) in features.1.0.attn")


def test_a_design_rule_opens_in_the_typed_network_box(page):
    at = page
    at.session_state["arch_tab"] = "Receptive field"
    at.run()
    at.segmented_control(key="arch_rule").set_value("dilation").run()
    rows = next(d.value for d in at.dataframe if "variant" in d.value.columns).set_index("variant")
    assert rows.loc["dilations 1-2-4", "field (px)"] == 15 and rows.loc["three 3×3", "field (px)"] == 7
    at.button(key="arch_rule_open_dilation_dilations 1-2-4").click().run()
    assert not at.exception, at.exception
    assert at.segmented_control(key="arch_source").value == "Type a network"
    assert "dilation 4" in at.text_area(key="arch_spec").value
    assert {m.label: m.value for m in at.metric}["Receptive field"] == "15 px"


def test_quiz_checks_answers_keeps_score_and_the_lecturer_reveals_all(page):
    at = page
    at.session_state["arch_tab"] = "Quiz"
    at.run()
    assert not at.exception, at.exception
    state: cx.QuizState = at.session_state["arch_quiz"]
    assert state.questions == cx.make_quiz(1, 8).questions  # quiz code 1 by default: the whole class gets these
    first = state.questions[0]
    at.text_input(key="arch_quiz_answer_1_1").set_value(first.answer_text)
    at.button(key="FormSubmitter:arch_quiz_form_1_1-Check").click().run()
    assert not at.exception, at.exception
    assert any(shown(s.value).startswith("Right: read as") for s in at.success)
    assert next(m.value for m in at.metric if m.label == "Score") == "1 / 8"
    assert any(f"answer: {first.answer_text}" in c.value for c in at.code)  # the worked formula after a right answer
    second = state.questions[1]
    at.text_input(key="arch_quiz_answer_1_2").set_value("**bold** <b>x</b> $y$")
    at.button(key="FormSubmitter:arch_quiz_form_1_2-Check").click().run()
    (warning,) = [w.value for w in at.warning]
    assert "**" not in warning and "<b>" not in warning and shown(warning).startswith("'**bold** <b>x</b> $y$' is not")
    at.text_input(key="arch_quiz_answer_1_2").set_value("1")
    at.button(key="FormSubmitter:arch_quiz_form_1_2-Check").click().run()
    assert any(shown(e.value).startswith("Not quite: you wrote “1”") for e in at.error)
    assert at.session_state["arch_quiz"].attempts[2].tries == 1 and second.kind == "params"
    at.toggle(key="arch_quiz_reveal").set_value(True).run()
    revealed = [c.value for c in at.code if "answer:" in c.value]
    assert len(revealed) == 8
    at.number_input(key="arch_quiz_seed").set_value(2).run()
    assert at.session_state["arch_quiz"].questions == cx.make_quiz(2, 8).questions
    assert next(m.value for m in at.metric if m.label == "Score") == "0 / 8"
