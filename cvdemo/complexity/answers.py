"""Reading a student's typed answer forgivingly, and judging it with a stated tolerance.

Counts: "34,944", "34944", "34 944", "34.9K", "105M", "105 M", "1.05e8", "1.05 × 10^8", "0.105G",
"105 million". Shapes: "55x55x96", "55 × 55 × 96", "(96, 55, 55)", "55*55*96". Receptive fields:
"195", "195 px", "195x195".

The tolerance (:data:`TOLERANCE`): a whole number written out in full must be exact (the classic
slip, forgetting the biases, is a fraction of a percent); a rounded answer (with K/M/G or an
exponent) is right when the exact value rounds to it at the digits typed and it is within 1%.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cvdemo.complexity.results import human
from cvdemo.errors import CvdemoError

TOLERANCE = (
    "Whole numbers written out in full must be exact. Rounded answers (105M, 1.05e8, 34.9K) count when the exact "
    "value rounds to them and they are within 1%. Shapes and receptive fields must be exact."
)
RELATIVE = 0.01

_SUFFIXES = {
    "k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "mio": 1e6, "million": 1e6, "millions": 1e6,
    "g": 1e9, "b": 1e9, "bn": 1e9, "billion": 1e9, "billions": 1e9, "t": 1e12, "trillion": 1e12,
}  # fmt: skip
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_UNITS = re.compile(r"(macs?|flops?|mult-?adds?|multiply-?adds?|params?|parameters?|weights?|pixels?|px)\b")


class AnswerError(CvdemoError, ValueError):
    """The answer could not be read; the message says what was expected."""


@dataclass(frozen=True)
class Number:
    """A number as typed: its value, and how precisely it was given."""

    value: float
    exact: bool  # written out in full (no suffix, exponent or decimal point)
    half_unit: float  # half the place value of the last digit typed (0 when exact)


def parse_count(text: str) -> Number:
    """A count such as "34,944", "105M", "1.05e8" or "1.05 × 10^8"."""
    raw = text
    s = re.sub(r"10([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)", lambda m: "10**" + m.group(1), text.strip().lower()).translate(_SUPERSCRIPTS)
    s = _UNITS.sub("", s).replace("\u202f", " ").replace("\u00a0", " ").replace("_", "").replace("'", "")
    s = s.replace("×", "x").replace("·", "*").replace("−", "-").replace("^", "**").strip()
    if not s:
        raise AnswerError("Type a number, e.g. 34944, 34,944 or 105M.")
    # 1.05 x 10**8, 1.05*10**8, 10**8
    m = re.fullmatch(r"([-+]?[\d.,]+)?\s*(?:[x*]\s*)?10\s*\*\*\s*([-+]?\d+)", s)
    if m and (m.group(1) or s.startswith("10")):
        mantissa = m.group(1) or "1"
        digits, value = _decimal(mantissa, raw)
        return _rounded(digits, value * 10 ** int(m.group(2)), 10 ** int(m.group(2)))
    m = re.fullmatch(r"([-+]?[\d.,\s]+?)\s*e\s*([-+]?\d+)", s)
    if m:
        digits, value = _decimal(m.group(1).replace(" ", ""), raw)
        return _rounded(digits, value * 10 ** int(m.group(2)), 10 ** int(m.group(2)))
    m = re.fullmatch(r"([-+]?[\d.,\s]+?)\s*([a-z]+)", s)
    if m:
        suffix = m.group(2)
        if suffix not in _SUFFIXES:
            raise AnswerError(f"'{raw.strip()}': unknown unit '{suffix}'; use K, M or G, e.g. 105M.")
        digits, value = _decimal(m.group(1).replace(" ", ""), raw)
        return _rounded(digits, value * _SUFFIXES[suffix], _SUFFIXES[suffix])
    compact = s.replace(" ", "")
    if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+", compact) or re.fullmatch(r"[-+]?\d+", compact):
        return Number(float(int(compact.replace(",", ""))), True, 0.0)
    if re.fullmatch(r"[-+]?\d{1,3}( \d{3})+", s):  # 34 944
        return Number(float(int(s.replace(" ", ""))), True, 0.0)
    digits, value = _decimal(compact, raw)
    return Number(value, value.is_integer() and "." not in digits, 0.0)


def _decimal(token: str, raw: str) -> tuple[str, float]:
    """"1.05" -> ("1.05", 1.05); a lone comma with fewer than 3 digits after it is a decimal comma ("1,05")."""
    token = token.strip()
    if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", token):
        token = token.replace(",", "")
    elif re.fullmatch(r"[-+]?\d+,\d{1,2}", token) or re.fullmatch(r"[-+]?\d+,\d{4,}", token):
        token = token.replace(",", ".")
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)", token):
        raise AnswerError(f"'{raw.strip()}' is not a number I can read; type e.g. 34944, 34,944, 105M or 1.05e8.")
    return token, float(token)


def _rounded(digits: str, value: float, scale: float) -> Number:
    decimals = len(digits.split(".", 1)[1]) if "." in digits else 0
    return Number(value, False, 0.5 * scale * 10 ** (-decimals))


def parse_shape(text: str) -> tuple[int, ...]:
    """"55x55x96", "55 × 55 × 96", "(96, 55, 55)", "55*55*96" or "4096" -> a tuple of whole numbers."""
    s = text.strip().lower().replace("×", "x").replace("*", "x")
    s = re.sub(r"^[\[(]|[\])]$", "", s.strip())
    parts = [p for p in re.split(r"\s*(?:x|,|;|\s+by\s+|\s+)\s*", s.strip()) if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise AnswerError(f"'{text.strip()}' is not a shape I can read; type e.g. 55x55x96 (height × width × channels).")
    return tuple(int(p) for p in parts)


def parse_field(text: str) -> tuple[int, ...]:
    """"195", "195 px" or "195x195" -> (195,) or (195, 195)."""
    s = _UNITS.sub("", text.strip().lower()).strip()
    try:
        shape = parse_shape(s)
    except AnswerError:
        raise AnswerError(f"'{text.strip()}' is not a size I can read; type the field in pixels, e.g. 195.") from None
    if len(shape) > 2:
        raise AnswerError(f"'{text.strip()}': a receptive field is one size (or height × width), e.g. 195.")
    return shape


@dataclass(frozen=True)
class Verdict:
    correct: bool
    read_as: str  # how the answer was understood, e.g. "105,000,000 (rounded to ±500,000)"
    hint: str = ""  # why it is wrong, when that can be said


def judge_count(answer: str, exact: int) -> Verdict:
    number = parse_count(answer)
    if number.exact:
        read = f"{number.value:,.0f}"
        if number.value == exact:
            return Verdict(True, read)
        off = number.value - exact
        hint = f"{abs(off):,.0f} {'too many' if off > 0 else 'short'}."
        if abs(off) <= RELATIVE * abs(exact) and read.endswith(",000"):  # rounded, but written in full
            hint += " Written out in full, a number must be exact; for a rounded answer write e.g. " \
                    f"{human(exact)}."  # fmt: skip
        return Verdict(False, read, hint)
    read = f"{_plain(number.value)} (±{_plain(number.half_unit)} from the digits typed)"
    close = abs(number.value - exact) <= min(number.half_unit, RELATIVE * abs(exact)) + 1e-9 * abs(exact)
    if close:
        return Verdict(True, read)
    if abs(number.value - exact) <= number.half_unit:
        return Verdict(False, read, "Too rounded to tell: give at least three significant digits.")
    return Verdict(False, read, f"{abs(number.value - exact) / max(1, abs(exact)):.1%} off.")


def _plain(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1 and float(x).is_integer() else f"{x:,.6g}"


def judge_shape(answer: str, hwc: tuple[int, ...]) -> Verdict:
    """``hwc``: the lecture's H×W×C (or (N,) for a vector); C×H×W, PyTorch's order, is accepted too."""
    shape = parse_shape(answer)
    chw = (hwc[-1], *hwc[:-1]) if len(hwc) == 3 else hwc
    read = "×".join(map(str, shape))
    if shape == tuple(hwc):
        return Verdict(True, f"{read} (H×W×C)" if len(hwc) == 3 else read)
    if shape == chw:
        return Verdict(True, f"{read} (C×H×W, PyTorch's order)")
    if len(hwc) == 1 and shape in ((hwc[0], 1), (1, hwc[0]), (1, 1, hwc[0])):
        return Verdict(True, read)
    if len(shape) != len(hwc):
        return Verdict(False, read, f"The output has {len(hwc)} dimension{'s' if len(hwc) > 1 else ''}.")
    return Verdict(False, read)


def judge_field(answer: str, size: int, width: int | None = None) -> Verdict:
    shape = parse_field(answer)
    want = (size, width if width is not None else size)
    got = shape * 2 if len(shape) == 1 else shape
    read = f"{shape[0]} px" if len(shape) == 1 else f"{shape[0]}×{shape[1]} px"
    if tuple(got) == want:
        return Verdict(True, read)
    return Verdict(False, read, "Remember: r = r_in + (k − 1)·d·j_in, with the jump j_in of the layer's input.")
