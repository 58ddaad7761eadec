"""Student and lecturer journeys in real Chromium against ``streamlit run app.py``.

AppTest cannot run JavaScript, iframes, file choosers or downloads; these journeys do. They assert
what holds on any CPU (a bus is found, boxes are drawn, texts agree with the result), never counts
or scores that depend on the CPU's kernels.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import PurePosixPath

import numpy as np
import pytest
from PIL import Image

from cvdemo.catalog import PAGES

from .streamlit_page import (
    assert_no_exception,
    choose,
    click,
    download,
    expect,
    expect_loaded,
    image_bytes,
    image_with_caption,
    main,
    open_page,
    set_slider,
    settle,
    slider_value,
    start_shared_demo,
    type_text,
    upload,
)

pytestmark = pytest.mark.browser


def url_path(script: str) -> str:
    """Streamlit's URL path for a page script: app_pages/clip_search.py -> clip_search."""
    return PurePosixPath(script).stem


def test_home_cards_open_every_page(page, app_url):
    open_page(page, app_url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("cvdemo")
    for info in PAGES:
        click(page, main(page).get_by_role("link", name=f"Open {info.title}"))
        expect(page).to_have_url(re.compile(rf"/{url_path(info.path)}$"))
        expect(main(page).get_by_role("heading", level=1).first).to_be_visible()
        # Every page ends with its "Share this demo" expander: the script ran to its last line.
        expect(main(page).get_by_text("Share this demo")).to_be_visible()
        main_text = main(page).inner_text()
        assert "Traceback" not in main_text, f"{info.title} shows a traceback"
        click(page, page.get_by_test_id("stSidebarNav").get_by_role("link", name="Home"))
        expect(page).to_have_url(re.compile(r"/$"))


def test_detection_sample_finds_a_bus_and_draws_boxes(page, app_url):
    open_page(page, app_url, "detection")
    heading = main(page).get_by_role("heading", name=re.compile(r"^\d+ detections? in 1 image"))
    expect(heading).to_be_visible()
    total = int(heading.inner_text().split()[0])
    assert total >= 2, heading.inner_text()  # the bus and its passengers, whatever the CPU
    expect(main(page).get_by_text(re.compile(rf"(^|\D){total} objects$"))).to_be_visible()  # the badge

    original = image_with_caption(page, re.compile(r"^Original · \d+×\d+"))
    annotated = image_with_caption(page, f"{total} detections (confidence ≥ 0.25)")
    expect_loaded(original)
    expect_loaded(annotated)
    before = np.asarray(Image.open(io.BytesIO(image_bytes(page, original))).convert("RGB"), dtype=np.int16)
    after = np.asarray(Image.open(io.BytesIO(image_bytes(page, annotated))).convert("RGB"), dtype=np.int16)
    assert before.shape == after.shape
    changed = np.abs(before - after).max(axis=2) > 40
    assert 0.002 < changed.mean() < 0.5, f"{changed.mean():.4f} of the pixels changed: no boxes drawn?"

    rows = list(csv.DictReader(io.StringIO(download(page, "Detections CSV").decode())))
    assert len(rows) == total, "the page's count is not the result's"
    classes = [row["class"] for row in rows]
    assert "bus" in classes and classes.count("person") >= 1, classes
    assert all(float(row["score"]) >= 0.25 for row in rows)


def test_upload_a_photo_and_a_non_image_through_the_file_chooser(page, app_url, samples_dir):
    open_page(page, app_url, "detection")
    choose(page, "Images source", "Upload")
    upload(page, [samples_dir / "bus.jpg", samples_dir / "lecture notes.txt"])
    error = main(page).get_by_test_id("stAlertContentError").filter(has_text="lecture notes.txt")
    expect(error).to_be_visible()
    assert "not an image" in error.inner_text()
    heading = main(page).get_by_role("heading", name=re.compile(r"^\d+ detections? in 1 image"))
    expect(heading).to_be_visible()  # the photo was kept and processed, the text file was not
    total = int(heading.inner_text().split()[0])
    expect_loaded(image_with_caption(page, f"{total} detections (confidence ≥ 0.25)"))
    rows = list(csv.DictReader(io.StringIO(download(page, "Detections CSV").decode())))
    assert "bus" in [row["class"] for row in rows]


def test_the_same_photo_uploaded_twice_is_detected_once(page, app_url, samples_dir, tmp_path):
    open_page(page, app_url, "detection")
    choose(page, "Images source", "Upload")
    copy = tmp_path / "bus *copy*.jpg"  # markdown characters in the name: shown as they are
    copy.write_bytes((samples_dir / "bus.jpg").read_bytes())
    upload(page, [samples_dir / "bus.jpg", copy])
    note = main(page).get_by_test_id("stAlertContentWarning").filter(has_text="Skipped")
    expect(note).to_be_visible()
    assert "“bus *copy*.jpg” (the same pixels as “bus.jpg”)" in note.inner_text(), note.inner_text()
    expect(main(page).get_by_role("heading", name=re.compile(r"^\d+ detections? in 1 image"))).to_be_visible()
    assert main(page).get_by_role("tab", name="bus *copy*.jpg").count() == 0  # one photo, no second tab
    assert_no_exception(page)


def test_fewshot_sample_gives_a_prediction_with_its_neighbours(page, app_url):
    open_page(page, app_url, "fewshot")
    click(page, main(page).get_by_role("button", name=re.compile("Load ants vs bees")))
    expect(main(page).get_by_text(re.compile(r"^Added \d+ images from the ants/bees sample set"))).to_be_visible()
    prediction = main(page).get_by_role("heading", name=re.compile(r"^Prediction: (ants|bees) \(\d+% of the vote\)"))
    expect(prediction).to_be_visible()
    neighbours = main(page).get_by_text(re.compile(r"^#\d+ (ants|bees) · d = \d\.\d{3}$"))
    expect(neighbours.first).to_be_visible()
    k = int(slider_value(page, "neighbours that vote"))
    assert neighbours.count() == k
    why = main(page).get_by_text(re.compile(r"^Why: the \d+ nearest examples"))
    expect(why).to_contain_text(f"the {k} nearest")


def test_fewshot_ladder_runs_on_the_sample_and_reloading_gives_one_note(page, app_url):
    open_page(page, app_url, "fewshot")
    load = main(page).get_by_role("button", name=re.compile("Load ants vs bees"))
    click(page, load)
    click(page, load)  # the same 20 images again: one sentence, not 20 banners
    skipped = main(page).get_by_text(re.compile(r"already in the set and were skipped"))
    expect(skipped).to_have_count(1)
    expect(main(page).get_by_text(re.compile(r"already in '(ants|bees)', skipped"))).to_have_count(0)
    ladder = main(page).get_by_role("heading", name=re.compile("the transfer-learning ladder"))
    ladder.scroll_into_view_if_needed()
    # a short run: held out from the examples (features already computed), every rung, fewer epochs
    choose(page, "Held-out images (never trained on)", "a share of my examples")
    set_slider(page, "New head: epochs", "Home", presses=2)
    set_slider(page, "Unfreeze: epochs", "Home", presses=1)
    click(page, main(page).get_by_role("button", name="Run the ladder"))
    finished = main(page).get_by_text(re.compile(r"^Finished in \d+ s on this CPU"))
    expect(finished).to_be_visible(timeout=400_000)
    settle(page)  # the finished run reruns the whole page
    best = main(page).get_by_text(re.compile(r"^Best on these held-out images: .+ \(\d+/\d+, 95% CI \d+–\d+%\)\.$"))
    expect(best).to_be_visible()
    expect(main(page).get_by_text("Optimizer parameter groups of the unfreeze rung")).to_be_visible()
    main(page).get_by_role("tab", name="Export & import").click()  # plain st.tabs: showing one is no rerun
    model = download(page, "Download (.safetensors)")
    assert model[8:9] == b"{" and b"cvdemo_fewshot_classifier" in model[:4096]


def test_segmentation_trains_one_epoch_and_paints_an_overlay(page, app_url):
    open_page(page, app_url, "segmentation")
    set_slider(page, "Stage 1: epochs with the encoder frozen", "Home", presses=1)
    set_slider(page, "Stage 2: epochs fine-tuning everything", "Home")
    set_slider(page, "Training image size (px)", "Home")
    click(page, main(page).get_by_role("button", name="Train", exact=True))
    finished = main(page).get_by_text(re.compile(r"^Finished after 1 of 1 epochs"))
    expect(finished).to_be_visible(timeout=240_000)
    settle(page)  # the finished run reruns the whole page
    overlays = main(page).locator('[data-testid="stImage"]').filter(
        has=page.get_by_text(re.compile(r"^prediction · foreground IoU \d\.\d\d$"))
    )
    expect(overlays.first).to_be_visible()
    for i in range(overlays.count()):
        expect_loaded(overlays.nth(i).locator("img"))
    expect(main(page).get_by_text("Held-out images", exact=False).first).to_be_visible()


def test_clip_new_labels_change_the_scores(page, app_url):
    open_page(page, app_url, "clip_search")
    verdict = main(page).locator('[data-testid="stAlertContainer"]').filter(has_text="cosine")
    expect(verdict.first).to_be_visible()
    before = verdict.first.inner_text()
    labels = main(page).get_by_label("Labels (comma-separated): each becomes a class")
    type_text(page, labels, "a red double-decker bus, a bowl of soup, a sleeping cat", submit="Control+Enter")
    expect(verdict.first).not_to_have_text(before)
    after = verdict.first.inner_text()
    assert any(label in after for label in ("a red double-decker bus", "a bowl of soup", "a sleeping cat")), after
    chart = main(page).locator('[data-testid="stPlotlyChart"]').first
    for label in ("a bowl of soup", "a sleeping cat"):
        expect(chart).to_contain_text(label)


def test_compression_int8_is_measured(page, app_url):
    open_page(page, app_url, "compression")
    main(page).get_by_text("Measurement settings").click()
    set_slider(page, "Evaluation images", "Home")
    type_text(page, main(page).get_by_label("Timed runs per batch size (median)", exact=True), "3")
    set_slider(page, "Calibration images", "Home", presses=6)
    click(page, main(page).get_by_role("button", name="Compress and measure"))
    done = main(page).get_by_text(re.compile(r"^Done: \d+ variant\(s\) measured"))
    expect(done).to_be_visible(timeout=240_000)
    expect(main(page).get_by_role("heading", name="Original vs compressed, measured here")).to_be_visible()
    errors = main(page).get_by_test_id("stAlertContentError")
    assert errors.count() == 0, errors.first.inner_text()
    rows = list(csv.DictReader(io.StringIO(download(page, "Results (CSV)").decode())))
    techniques = {row["technique"] for row in rows}
    assert {"original", "int8_static"} <= techniques, techniques
    int8 = next(row for row in rows if row["technique"] == "int8_static")
    assert float(int8["latency b1 ms"]) > 0 and 0 <= float(int8["agreement"]) <= 1
    assert float(int8["file MB"]) < float(next(r for r in rows if r["technique"] == "original")["file MB"])


def test_share_this_demo_answers_inside_the_page(page, app_url):
    open_page(page, app_url, "architectures")
    section = start_shared_demo(page)
    src = section.locator('[data-testid="stIFrame"]').get_attribute("src")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", src), src  # the host this browser used for the app
    # Opened on the lecturer's machine: the link to hand out is this machine's network address.
    links = section.get_by_test_id("stCode").all_inner_texts()
    assert len(links) == 1 and links[0].endswith(src.rsplit(":", 1)[1]), links
    demo = page.frame_locator('[data-testid="stIFrame"]')
    totals = demo.get_by_text(re.compile(r"parameters"))
    expect(totals.first).to_be_visible(timeout=120_000)  # the demo's load event answered
    demo.get_by_label("Typed network", exact=True).check()
    demo.get_by_role("button", name="Count").click()
    expect(demo.get_by_role("heading", name=re.compile(r"at 3×32×32"))).to_be_visible(timeout=60_000)
    # The twin's quiz: code 1 gives the page's questions; the right answer is counted.
    from cvdemo.complexity import make_quiz

    first = make_quiz(1, 8).questions[0]
    demo.get_by_role("tab", name="Quiz").click()
    demo.get_by_role("button", name="Start").click()
    expect(demo.get_by_text(re.compile(r"Question 1 of 8"))).to_be_visible(timeout=120_000)
    demo.get_by_label("Your answer").fill(first.answer_text)
    demo.get_by_role("button", name="Check").click()
    expect(demo.get_by_text(re.compile(r"^Right"))).to_be_visible(timeout=60_000)
    expect(demo.get_by_text(re.compile(r"1 of 8 right"))).to_be_visible()
    assert_no_exception(page)


def test_receptive_field_on_a_picture_and_the_classroom_quiz(page, app_url):
    from cvdemo.complexity import make_quiz

    open_page(page, app_url, "architectures")  # AlexNet at 224 px by default
    click(page, main(page).get_by_role("tab", name="Receptive field"))
    expect(main(page).get_by_text("sees 195 px of the 224 px image", exact=False).first).to_be_visible()
    expect(main(page).get_by_text("The last layer sees 195 px of a 224 px image")).to_be_visible()
    # The field chart, the field on the sample photo and the effective field of pretrained EfficientNet-Lite0.
    assert main(page).locator('[data-testid="stPlotlyChart"]').count() == 3
    expect(main(page).get_by_text(re.compile(r"Effective \(trained\): 95% in \d+ px"))).to_be_visible()
    click(page, main(page).get_by_role("tab", name="Quiz"))
    first = make_quiz(1, 8).questions[0]  # quiz code 1: the whole class gets these questions
    main(page).get_by_label("Your answer").first.fill(first.answer_text)
    click(page, main(page).get_by_role("button", name="Check").first)
    expect(main(page).get_by_text(re.compile(r"^Right: read as"))).to_be_visible()
    score = main(page).get_by_test_id("stMetric").filter(has_text="Score")
    expect(score.get_by_test_id("stMetricValue")).to_have_text("1 / 8")
    expect(main(page).get_by_text(f"answer: {first.answer_text}", exact=False)).to_be_visible()
