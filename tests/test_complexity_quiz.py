"""The classroom quiz: answers read forgivingly with a stated tolerance, seeded questions, worked formulas."""

from __future__ import annotations

import pytest

from cvdemo import complexity as cx
from cvdemo.complexity import quiz
from cvdemo.complexity.answers import judge_count, judge_field, judge_shape, parse_count


# --- reading answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["34,944", "34944", "34 944", "34.9K", "34.9 k", "3.4944e4", "34,944 params", "34'944"]
)
def test_alexnet_conv1_parameters_written_every_way(text):
    # 11·11·3·96 + 96 = 34,944 (the lecture's AlexNet, 96 filters on a 227×227×3 input)
    assert judge_count(text, 34_944).correct, text


@pytest.mark.parametrize(
    "text", ["105M", "105 M", "1.05e8", "1.05E8", "1.05 × 10^8", "1.05×10⁸", "1.05*10**8", "0.105G", "105 million",
             "105.4M", "105,415,200", "105415200", "1,05e8"],
)  # fmt: skip
def test_alexnet_conv1_macs_written_every_way(text):
    # 11·11·3·96·55·55 = 105,415,200 multiply-adds
    assert judge_count(text, 105_415_200).correct, text


def test_the_tolerance_catches_the_classic_slips():
    forgot_bias = judge_count("34,848", 34_944)  # 11·11·3·96 without the 96 biases: 0.27% off
    assert not forgot_bias.correct and forgot_bias.hint == "96 short."
    assert not judge_count("34.8K", 34_944).correct  # rounded, but from the wrong number
    rounded_in_full = judge_count("105,000,000", 105_415_200)
    assert not rounded_in_full.correct and "write e.g. 105M" in rounded_in_full.hint
    too_rounded = judge_count("0.1G", 105_415_200)
    assert not too_rounded.correct and "three significant digits" in too_rounded.hint
    assert not judge_count("105.5M", 105_415_200).correct  # 105.4152 does not round to 105.5
    assert parse_count("105M").half_unit == 500_000 and parse_count("34944").exact
    assert "within 1%" in cx.TOLERANCE and "must be exact" in cx.TOLERANCE


@pytest.mark.parametrize("text", ["55x55x96", "55 × 55 × 96", "55X55X96", "(55, 55, 96)", "55*55*96", "55 by 55 by 96",
                                  "96x55x55", "[96, 55, 55]"])  # fmt: skip
def test_shapes_in_the_lectures_order_or_pytorchs(text):
    verdict = judge_shape(text, (55, 55, 96))
    assert verdict.correct, text
    assert verdict.read_as.endswith("(H×W×C)") or verdict.read_as.endswith("(C×H×W, PyTorch's order)")


def test_wrong_and_unreadable_answers():
    assert not judge_shape("27x27x96", (55, 55, 96)).correct
    assert judge_shape("55x55", (55, 55, 96)).hint == "The output has 3 dimensions."
    assert judge_shape("4096", (4096,)).correct
    assert judge_field("195 px", 195).correct and judge_field("195x195", 195).correct
    assert not judge_field("163", 195).correct and "r = r_in + (k − 1)·d·j_in" in judge_field("163", 195).hint
    for bad, kind in [("abc", judge_count), ("12 apples", judge_count), ("", judge_count), ("x", judge_shape),
                      ("1 2 3", judge_field)]:  # fmt: skip
        with pytest.raises(cx.AnswerError):
            kind(bad, 195) if kind is not judge_shape else kind(bad, (1, 2, 3))


# --- questions ------------------------------------------------------------------------------------


def test_the_lectures_alexnet_conv1_is_in_the_pool_with_its_worked_formulas():
    pool = [c for c in quiz.question_pool() if c.source.startswith("AlexNet as in the lecture") and c.layer == "conv1"]
    by_kind = {c.kind: c for c in pool}
    assert set(by_kind) == {"shape", "params", "macs", "field"}
    assert by_kind["shape"].answer == (55, 55, 96)
    assert by_kind["shape"].worked == "W_out = (227 − 11 + 2·0)/4 + 1 = 55;  C = 96 filters  →  55×55×96"
    assert by_kind["params"].answer == (34_944,) and by_kind["params"].worked == "11·11·3·96 + 96 = 34,944"
    assert by_kind["macs"].answer == (105_415_200,) and by_kind["macs"].worked == "11·11·3·96·55·55 = 105,415,200"
    assert by_kind["field"].answer == (11,) and by_kind["field"].layer_text == "conv 96 11x11 stride 4"
    assert "Input: 227×227×3" in by_kind["params"].given


def test_every_question_accepts_its_own_answer_and_shows_it_worked_out():
    questions = [quiz.Question(0, c.source, c.layer, c.kind, c.layer_text, c.given, c.answer, c.symbols, c.worked)
                 for c in quiz.question_pool()]  # fmt: skip
    assert len(questions) > 300 and {q.kind for q in questions} == set(cx.KINDS)
    for q in questions:
        assert q.judge(q.answer_text).correct, (q.source, q.layer, q.kind)
        if q.kind in ("params", "macs"):
            assert q.worked.endswith(f"= {q.answer[0]:,}"), q
            assert not q.judge(str(q.answer[0] + 1)).correct
        elif q.kind == "field":
            assert f"= {q.answer[0]} " in q.worked + " ", q
        else:
            assert q.worked.endswith("×".join(map(str, q.answer))), q


def test_the_same_quiz_code_gives_the_class_the_same_questions():
    a, b = cx.make_quiz(7), cx.make_quiz(7)
    assert a.questions == b.questions and len(a.questions) == 8
    assert cx.make_quiz(8).questions != a.questions
    assert [q.kind for q in a.questions] == ["shape", "params", "macs", "field"] * 2  # the kinds take turns
    assert len({(q.source, q.layer) for q in a.questions}) == 8  # no layer twice
    fields_only = cx.make_quiz(3, 5, ["field"])
    assert {q.kind for q in fields_only.questions} == {"field"} and len(fields_only.questions) == 5
    sources = {q.source for q in cx.make_quiz(1, 12).questions}
    assert len(sources) >= 4  # drawn from the zoo and the lecture exercises


def test_quiz_state_keeps_score():
    state = cx.make_quiz(7, 4)
    q1, q2 = state.questions[0], state.questions[1]
    wrong = state.answer(1, "1x1x1")
    assert not wrong.correct and wrong.tries == 1 and state.right == 0 and state.answered == 1
    assert state.answer(1, q1.answer_text).correct and state.attempts[1].tries == 2
    assert state.answer(2, q2.answer_text).correct
    state.answer(2, "7")  # a later wrong answer does not take a right one away
    assert state.right == 2 and state.attempts[2].correct
    assert state.score() == "2 of 4 right (1 at the first try), 2 answered"
    with pytest.raises(cx.AnswerError):
        state.answer(3, "??")
    assert state.answered == 2


# --- design rules -------------------------------------------------------------------------------------


def test_design_rules_show_what_the_lecture_says():
    stacked = {r.variant: r for r in cx.compare_design(cx.DESIGN_RULES[0])}
    # two 3×3: 2·(3·3·64·64 + 64) = 73,856 vs one 5×5: 5·5·64·64 + 64 = 102,464; both see 5 px.
    assert (stacked["two 3×3"].field, stacked["one 5×5"].field) == (5, 5)
    assert (stacked["two 3×3"].params, stacked["one 5×5"].params) == (73_856, 102_464)
    assert (stacked["three 3×3"].field, stacked["one 7×7"].field) == (7, 7)
    dilation = {r.variant: r for r in cx.compare_design(cx.DESIGN_RULES[1])}
    assert (dilation["three 3×3"].field, dilation["dilations 1-2-4"].field, dilation["one 15×15"].field) == (7, 15, 15)
    assert dilation["three 3×3"].params == dilation["dilations 1-2-4"].params
    assert dilation["one 15×15"].params > 8 * dilation["dilations 1-2-4"].params
    assert dilation["3×3 with pooling"].output == "64×14×14" and dilation["dilations 1-2-4"].output == "64×56×56"
    separable = {r.variant: r for r in cx.compare_design(cx.DESIGN_RULES[2])}
    standard, split = separable["standard 3×3"], separable["depthwise 3×3 + pointwise 1×1"]
    assert standard.field == split.field == 3
    assert split.macs / standard.macs == pytest.approx(1 / 128 + 1 / 9)
    # The sentences under the tables are filled in from these rows, not written by hand.
    lessons = [cx.design_lesson(rule, cx.compare_design(rule)) for rule in cx.DESIGN_RULES]
    assert lessons[0].startswith("Two 3×3 convolutions see 5 px like one 5×5 (5 px) with 28% fewer parameters and "
                                 "MACs; three see 7 px like one 7×7 (7 px) with 45% fewer")  # 1 - 73,856 / 102,464
    assert "see 15 px instead of 7 for the same parameters and MACs" in lessons[1] and "8.3× the parameters" in lessons[1]
    assert "shrinks the map to 64×14×14" in lessons[1]
    assert f"for {1 / 128 + 1 / 9:.3f} of its MACs" in lessons[2]
