"""Classroom quiz: a layer's output shape, parameters, MACs or receptive field, worked by hand.

Questions come from the lecture's exercises (typed networks) and the zoo. Every answer is the
profiler's and the tracer's own number, and a question is only asked where the lecture's formula
reproduces it, so the worked solution shown after an answer is always the formula with that
layer's numbers. ``make_quiz(seed)`` is deterministic: a class using the same quiz code gets the
same questions. :class:`QuizState` is what a page keeps in its session (typed, not a dict).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from cvdemo.complexity.answers import AnswerError, Verdict, judge_count, judge_field, judge_shape
from cvdemo.complexity.field_layout import pair
from cvdemo.complexity.formulas import formula
from cvdemo.complexity.profiler import profile, profile_spec
from cvdemo.complexity.receptive_field import FieldRow, field_formula, number, receptive_field
from cvdemo.complexity.results import LayerRow

KINDS: dict[str, str] = {
    "shape": "output shape",
    "params": "parameters",
    "macs": "MACs",
    "field": "receptive field",
}

# The lecture's pen-and-paper networks, in the typed-network language.
LECTURE_EXERCISES: dict[str, str] = {
    "AlexNet as in the lecture (227×227)": """\
input 227x227x3
conv 96 11x11 stride 4      # CONV1
relu
maxpool 3x3 stride 2        # POOL1
conv 256 5x5 padding 2      # CONV2
relu
maxpool 3x3 stride 2        # POOL2
conv 384 3x3 padding 1      # CONV3
relu
conv 384 3x3 padding 1      # CONV4
relu
conv 256 3x3 padding 1      # CONV5
relu
maxpool 3x3 stride 2        # POOL3
flatten
dense 4096                  # FC6
relu
dense 4096                  # FC7
relu
dense 1000                  # FC8
""",
    "Two-convolution block (exercise)": """\
input 32x32x3
conv 8 3x3 stride 1 padding same
conv 16 5x5 stride 2 padding same
flatten
dense 512
dense 4
""",
    "VGG's first two blocks": """\
input 224x224x3
conv 64 3x3 padding 1
conv 64 3x3 padding 1
maxpool 2x2
conv 128 3x3 padding 1
conv 128 3x3 padding 1
maxpool 2x2
""",
    "Dilated stack 1-2-4": """\
input 64x64x16
conv 16 3x3 padding same
conv 16 3x3 dilation 2 padding same
conv 16 3x3 dilation 4 padding same
""",
}
ZOO_SOURCES = ("lenet5", "alexnet", "vgg16", "resnet18", "mobilenetv1_100")


@dataclass(frozen=True)
class Question:
    number: int  # 1-based, in the order asked (0 in the question pool)
    source: str  # the network, e.g. "AlexNet as in the lecture (227×227)" or "ResNet-18"
    layer: str  # module name
    kind: str  # a key of KINDS
    layer_text: str  # the layer as the lecture writes it, e.g. "conv 96 11x11 stride 4"
    given: tuple[str, ...]  # what the student is told
    answer: tuple[int, ...]  # H×W×C (or (N,)) for shapes, one number otherwise
    symbols: str  # the formula
    worked: str  # the formula with this layer's numbers

    @property
    def prompt(self) -> str:
        return {
            "shape": "What is the output shape (height × width × channels)?",
            "params": "How many parameters (weights and biases) does it have?",
            "macs": "How many multiply-adds (MACs) does it do for one image?",
            "field": "How many input pixels does one of its output units see (receptive field)?",
        }[self.kind]

    @property
    def answer_text(self) -> str:
        if self.kind == "shape":
            return "×".join(map(str, self.answer))
        return f"{self.answer[0]:,} px" if self.kind == "field" else f"{self.answer[0]:,}"

    def judge(self, text: str) -> Verdict:
        """Raises :class:`AnswerError` when the text cannot be read as an answer."""
        if self.kind == "shape":
            return judge_shape(text, self.answer)
        if self.kind == "field":
            return judge_field(text, self.answer[0])
        return judge_count(text, self.answer[0])


@dataclass(frozen=True)
class Attempt:
    text: str
    correct: bool
    read_as: str
    hint: str
    tries: int  # answers given to this question so far


@dataclass
class QuizState:
    """One student's quiz in one session: the questions and their latest attempts."""

    seed: int
    kinds: tuple[str, ...]
    questions: tuple[Question, ...]
    attempts: dict[int, Attempt] = field(default_factory=dict)  # by question number

    def answer(self, number: int, text: str) -> Attempt:
        """Check ``text`` against question ``number`` and keep the attempt; unreadable text raises AnswerError."""
        question = self.questions[number - 1]
        verdict = question.judge(text)
        previous = self.attempts.get(number)
        attempt = Attempt(text, verdict.correct, verdict.read_as, verdict.hint, (previous.tries if previous else 0) + 1)
        if previous is None or not previous.correct:  # a right answer stays right
            self.attempts[number] = attempt
        return attempt

    @property
    def right(self) -> int:
        return sum(a.correct for a in self.attempts.values())

    @property
    def answered(self) -> int:
        return len(self.attempts)

    def score(self) -> str:
        first_try = sum(a.correct and a.tries == 1 for a in self.attempts.values())
        return f"{self.right} of {len(self.questions)} right ({first_try} at the first try), {self.answered} answered"


def _hwc(shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if shape is None:
        return None
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)


def _describe(row: LayerRow) -> str:
    """A zoo layer as the lecture writes it, e.g. "conv 64 11x11 stride 4 padding 2"."""
    a = row.attrs
    k, s, p, d = (a.get(key) for key in ("kernel_size", "stride", "padding", "dilation"))
    first = lambda v: v[0] if isinstance(v, (tuple, list)) else v  # noqa: E731
    if "out_channels" in a:
        groups = a.get("groups", 1)
        kind = "dwconv" if groups == a.get("in_channels") and groups > 1 else "conv"
        text = f"{kind} {a['out_channels']} {first(k)}x{first(k)}" if kind == "conv" else f"dwconv {first(k)}x{first(k)}"
        text += f" stride {first(s)}" if first(s) != 1 else ""
        text += f" padding {first(p)}" if first(p) else ""
        text += f" dilation {first(d)}" if d is not None and first(d) != 1 else ""
        text += f" groups {groups}" if kind == "conv" and groups > 1 else ""
        return text + ("" if a.get("bias") else " nobias")
    if "out_features" in a:
        return f"dense {a['out_features']}" + ("" if a.get("bias") else " nobias")
    if k is not None:
        pool = "maxpool" if "Max" in row.type else "avgpool"
        return f"{pool} {first(k)}x{first(k)} stride {first(s) or first(k)}" + (f" padding {first(p)}" if first(p) else "")
    return row.type


def _shape_work(row: LayerRow, hwc_in: tuple[int, ...], hwc_out: tuple[int, ...]) -> tuple[str, str] | None:
    a = row.attrs
    if len(hwc_in) != 3 or len(hwc_out) != 3 or "kernel_size" not in a:
        return None
    (k, k2), (s, s2), pad, (d, d2) = pair(a["kernel_size"]), pair(a.get("stride") or a["kernel_size"]), a.get("padding", 0), pair(a.get("dilation", 1))
    if isinstance(pad, str) or k != k2 or s != s2 or d != d2 or hwc_in[0] != hwc_in[1]:
        return None
    p = pair(pad)[0]
    w = hwc_in[0]
    span = (w - d * (k - 1) - 1 + 2 * p) if d != 1 else (w - k + 2 * p)
    out = span // s + 1
    if out != hwc_out[0] or hwc_out[0] != hwc_out[1]:
        return None  # ceil mode or asymmetric padding: not the lecture's formula
    if "out_channels" not in a:
        channels = f"C = {hwc_out[2]} (pooling keeps the channels)"
    elif a.get("groups", 1) == a.get("in_channels") != 1:
        channels = f"C = {hwc_out[2]} (depthwise: one filter per input channel)"
    else:
        channels = f"C = {hwc_out[2]} filters"
    if d == 1:
        symbols = "W_out = (W − F + 2P)/S + 1" if span % s == 0 else "W_out = ⌊(W − F + 2P)/S⌋ + 1"
        body = f"({w} − {k} + 2·{p})/{s} + 1" if span % s == 0 else f"⌊({w} − {k} + 2·{p})/{s}⌋ + 1"
    else:
        symbols = "W_out = ⌊(W + 2P − D·(F − 1) − 1)/S⌋ + 1"
        body = f"⌊({w} + 2·{p} − {d}·({k} − 1) − 1)/{s}⌋ + 1"
    return symbols + ",  C_out = number of filters", f"W_out = {body} = {out};  {channels}  →  {'×'.join(map(str, hwc_out))}"


def _candidates(source: str, rows: tuple[LayerRow, ...], fields: dict[str, FieldRow], input_hwc: tuple[int, ...]) -> list[Question]:
    out: list[Question] = []
    previous = input_hwc
    for row in rows:
        hwc_in, hwc_out = _hwc(row.input_shape) or previous, _hwc(row.output_shape)
        if hwc_out is None:
            continue
        previous = hwc_out
        computing = "out_channels" in row.attrs or "out_features" in row.attrs
        if not (computing or "kernel_size" in row.attrs):
            continue
        text = row.note.split(": ", 1)[1].split("#")[0].strip() if row.note.startswith("line ") else _describe(row)
        base = (f"Layer {row.name}: {text}", f"Input: {'×'.join(map(str, hwc_in))}")
        shape = _shape_work(row, hwc_in, hwc_out)
        if shape:
            out.append(Question(0, source, row.name, "shape", text, base, hwc_out, *shape))
        f = formula(row) if computing else None
        if f is not None and (f.params, f.macs) == (row.params, row.macs) and row.calls == 1:
            out.append(Question(0, source, row.name, "params", text, base, (row.params,), f.params_symbols, f.params_numbers))
            given = base + (f"Output: {'×'.join(map(str, hwc_out))}",)
            out.append(Question(0, source, row.name, "macs", text, given, (row.macs,), f.macs_symbols, f.macs_numbers))
        fr = fields.get(row.name)
        work = field_formula(fr) if fr is not None else None
        if fr is not None and work and fr.input_height is not None and float(fr.size or 0).is_integer():
            given = base[:1] + (f"Its input sees r_in = {number(fr.input_height.size)} px, with jump j_in = "
                                f"{number(fr.input_height.jump)} px between neighbouring input units",)  # fmt: skip
            out.append(Question(0, source, row.name, "field", text, given, (int(fr.size or 0),), *work))
    return out


def question_pool() -> tuple[Question, ...]:
    """Every question the quiz can ask (numbered 0), in a fixed order (profiles are deterministic).

    Built once per process; sessions asking while it is built wait for it instead of building it too.
    """
    from cvdemo import cache

    return cache.shared(_all_questions)


def _all_questions() -> tuple[Question, ...]:
    from cvdemo import zoo

    pool: list[Question] = []
    for source, spec in LECTURE_EXERCISES.items():
        prof = profile_spec(spec)
        fields = receptive_field(spec).by_name()
        c, h, w = prof.input_size
        pool += _candidates(source, prof.layers, fields, (h, w, c))
    for key in ZOO_SOURCES:
        prof = profile(key)
        fields = receptive_field(key).by_name()
        c, h, w = prof.input_size
        pool += _candidates(zoo.label(key), prof.layers, fields, (h, w, c))
    return tuple(pool)


def make_quiz(seed: int, count: int = 8, kinds: tuple[str, ...] | list[str] = tuple(KINDS)) -> QuizState:
    """``count`` questions, the kinds taking turns, drawn with ``random.Random(seed)``: same seed, same quiz."""
    kinds = tuple(k for k in KINDS if k in kinds) or tuple(KINDS)
    rng = random.Random(seed)
    pool = question_pool()
    queues = {}
    for kind in kinds:
        options = [c for c in pool if c.kind == kind]
        rng.shuffle(options)
        queues[kind] = options
    chosen: list[Question] = []
    used_layers: set[tuple[str, str]] = set()
    used_sources: list[str] = []
    for i in range(count * len(kinds)):
        if len(chosen) >= count:
            break
        queue = queues[kinds[i % len(kinds)]]
        # prefer a layer not asked yet, from a network not among the last two asked
        pick = next((c for c in queue if (c.source, c.layer) not in used_layers and c.source not in used_sources[-2:]),
                    next((c for c in queue if (c.source, c.layer) not in used_layers), None))  # fmt: skip
        if pick is None:
            continue
        queue.remove(pick)
        chosen.append(pick)
        used_layers.add((pick.source, pick.layer))
        used_sources.append(pick.source)
    return QuizState(seed, kinds, tuple(dataclasses.replace(q, number=n) for n, q in enumerate(chosen, start=1)))


__all__ = ["KINDS", "LECTURE_EXERCISES", "ZOO_SOURCES", "Question", "Attempt", "QuizState", "make_quiz",
           "question_pool", "AnswerError"]  # fmt: skip
