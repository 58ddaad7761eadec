"""The Gradio architecture calculator: builds, and its handler returns real counts (no server)."""

from __future__ import annotations

import gradio as gr

from cvdemo.complexity import SPEC_EXAMPLE
from cvdemo.demos import architectures as demo


def test_build_returns_blocks():
    assert isinstance(demo.build(), gr.Blocks)


def test_zoo_model_totals_and_table():
    totals, table = demo.count("Model zoo", "mobilenetv1_075", 224, "")
    assert "2,585,560" in totals and "325,400,448" in totals  # parameters, MACs
    assert "Howard" in totals and "325,000,000" in totals  # the paper's Table 6 beside ours
    assert list(table.columns) == demo.TABLE_COLUMNS
    assert table["params"].sum() == 2_585_560 and table["MACs"].sum() == 325_400_448


def test_typed_network_and_fixed_resolution_models():
    totals, table = demo.count("Typed network", "alexnet", 224, SPEC_EXAMPLE)
    assert "2,103,636" in totals and table["params"].tolist()[:2] == [224, 3_216]
    totals, _ = demo.count("Model zoo", "lenet5", 320, "")  # LeNet-5 ignores the slider: 32x32 only
    assert "1×32×32" in totals and "61,706" in totals


def test_errors_become_messages():
    totals, table = demo.count("Typed network", "alexnet", 224, "input 8x8x3\nmaxpool 9x9")
    assert totals.startswith("**Cannot count this network.**") and "Line 2" in totals and table.empty
    totals, table = demo.count("Model zoo", "not-a-model", 224, "")
    assert "Unknown model" in totals and table.empty


def test_empty_and_junk_names_are_messages_shown_as_typed():
    for empty in ("", "   ", None):
        totals, table = demo.count("Model zoo", empty, 224, "")
        assert totals == "**No model picked.** Pick one from the list." and table.empty
    totals, table = demo.count("Model zoo", "**x** <b>y</b> $z$", 224, "")
    assert totals == "**Unknown model** '\\*\\*x\\*\\* \\<b\\>y\\<\\/b\\> \\$z\\$'. Pick one from the list." and table.empty
    totals, _ = demo.count("Model zoo", "x" * 10_000, 224, "")
    assert len(totals) < 200
    totals, _ = demo.count("Typed network", "alexnet", 224, "input 8x8x3\n**conv** 8 3x3")
    assert "unknown layer \\'\\*\\*conv\\*\\*\\'" in totals  # the typed line is quoted, not rendered bold


def test_headline_numbers_exact_and_compact_and_the_memory_to_run_it():
    totals, _ = demo.count("Model zoo", "vgg16", 224, "")
    assert "| 15,470,264,320 (15.47 G) |" in totals and "| 138,357,544 (138.4 M) |" in totals
    assert "| memory to run it once (estimate) | 666 MB |" in totals and "limit here" not in totals


def test_huge_typed_networks_are_counted_without_allocating():
    from test_complexity import HUGE_SPECS, rss_watch

    for spec, params, macs in HUGE_SPECS.values():
        with rss_watch() as grew:
            totals, table = demo.count("Typed network", "alexnet", 224, spec)
        assert grew() < 200 * 2**20
        assert f"| {params:,}" in totals and f"| {macs:,} (" in totals and table["params"].sum() == params
        assert "for weights and activations" in totals and "the limit here is 1 GB per run" in totals.replace("\\", "")
