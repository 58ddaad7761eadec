"""Typed networks: the one-layer-a-line notation students use on paper, built into an ``nn.Sequential``.

``build_spec(text)`` checks every line (naming the line and what was expected, or which layer
does not fit its input and why) and returns the model with what each line became. It needs only
``torch.nn``: the profiler and the zoo both use it, and it uses neither.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from cvdemo.errors import CvdemoError


class SpecError(CvdemoError, ValueError):
    """A typed network has a bad line; ``line`` is its 1-based number (None: the whole spec)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


SPEC_HELP = """\
input HxWxC          first line, e.g. input 32x32x3
conv N KxK [stride S] [padding same|valid|P]
       [groups G] [dilation D] [nobias]
dwconv KxK [stride S] [padding ...] [nobias]
maxpool KxK [stride S] [padding P]  (stride = K)
avgpool KxK [stride S] [padding P]
globalavgpool        HxWxC -> C
flatten              HxWxC -> H*W*C
dense N [nobias]     also: fc, linear
bn  relu  tanh  sigmoid  softmax  dropout [p]
# comments and blank lines are ignored"""

SPEC_EXAMPLE = """\
input 32x32x3
conv 8 3x3 stride 1 padding same
conv 16 5x5 stride 2 padding same
maxpool 2x2 stride 2
dwconv 3x3 stride 1 padding same
conv 64 1x1 groups 4
flatten
dense 512
dense 4
"""

_KEYWORDS = ("input", "conv", "dwconv", "maxpool", "avgpool", "globalavgpool", "flatten", "dense",
             "bn", "relu", "tanh", "sigmoid", "softmax", "dropout")  # fmt: skip
_ALIASES = {"conv2d": "conv", "depthwise": "dwconv", "dwconv2d": "dwconv", "fc": "dense", "linear": "dense",
            "gap": "globalavgpool", "globalavgpool2d": "globalavgpool", "batchnorm": "bn", "pool": "maxpool",
            "maxpool2d": "maxpool", "avgpool2d": "avgpool"}  # fmt: skip


class GlobalAvgPool(nn.Module):
    """HxWxC feature map -> C vector (Keras' GlobalAveragePooling2D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@dataclass(frozen=True)
class SpecLayer:
    line: int
    text: str
    kind: str
    name: str  # module name in the built nn.Sequential
    output: tuple[int, ...]  # (C, H, W) or (F,)


def _pair(token: str, what: str, line: int, text: str) -> tuple[int, int]:
    parts = token.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise SpecError(f"Line {line} ('{text}'): expected {what} like 3x3 or 3, got '{token}'.", line)
    values = [int(p) for p in parts]
    return (values[0], values[-1])


def _int(token: str | None, what: str, line: int, text: str, minimum: int = 1) -> int:
    if token is None or not token.isdigit() or int(token) < minimum:
        raise SpecError(f"Line {line} ('{text}'): expected {what} (a whole number ≥ {minimum}), got '{token or ''}'.", line)
    return int(token)


def _options(tokens: list[str], allowed: set[str], line: int, text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        key = tokens[i]
        if key in ("nobias", "bias") and "bias" in allowed:
            options["bias"] = "no" if key == "nobias" else "yes"
            i += 1
            continue
        if key not in allowed:
            expected = ", ".join(sorted(a for a in allowed if a != "bias"))
            raise SpecError(f"Line {line} ('{text}'): unexpected '{key}'; expected one of: {expected}.", line)
        if i + 1 >= len(tokens):
            raise SpecError(f"Line {line} ('{text}'): '{key}' needs a value.", line)
        options[key] = tokens[i + 1]
        i += 2
    return options


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True)
class SpecNetwork:
    model: nn.Sequential
    layers: tuple[SpecLayer, ...]  # what each layer line became
    input_size: tuple[int, int, int]  # (C, H, W)


def build_spec(text: str, input_size: Sequence[int] | None = None) -> SpecNetwork:
    """An ``nn.Sequential`` from a typed network (see :data:`SPEC_HELP`), and what each line became.

    ``input_size`` (C, H, W) replaces the spec's ``input`` line. Raises :class:`SpecError` naming
    the line and what was expected, or which layer does not fit its input and why.
    """
    lines = [(n, raw.split("#", 1)[0].strip()) for n, raw in enumerate(text.splitlines(), start=1)]
    lines = [(n, t) for n, t in lines if t]
    if not lines:
        raise SpecError("The network is empty: write one layer a line, starting with 'input HxWxC'.")
    shape: tuple[int, ...] | None = None
    if input_size is not None:
        c, h, w = (int(s) for s in input_size)
        shape = (c, h, w)
    first_shape = shape
    modules: dict[str, nn.Module] = {}
    layers: list[SpecLayer] = []
    counts: dict[str, int] = {}

    for index, (line, text_line) in enumerate(lines):
        tokens = text_line.lower().replace(",", " ").split()
        kind = _ALIASES.get(tokens[0], tokens[0])
        args = tokens[1:]
        if kind not in _KEYWORDS:
            raise SpecError(f"Line {line} ('{text_line}'): unknown layer '{tokens[0]}'. Expected one of: {', '.join(_KEYWORDS)}.", line)
        if kind == "input":
            if index != 0:
                raise SpecError(f"Line {line} ('{text_line}'): 'input' must be the first line.", line)
            if len(args) != 1 or not re.fullmatch(r"\d+x\d+x\d+", args[0]):
                raise SpecError(f"Line {line} ('{text_line}'): expected 'input HxWxC', e.g. 'input 32x32x3'.", line)
            h, w, c = (int(v) for v in args[0].split("x"))
            if min(h, w, c) <= 0:
                raise SpecError(f"Line {line} ('{text_line}'): height, width and channels must be positive.", line)
            if input_size is None:
                shape = first_shape = (c, h, w)
            continue
        if shape is None:
            raise SpecError(f"Line {line} ('{text_line}'): start the network with 'input HxWxC', e.g. 'input 32x32x3'.", line)
        where = f"Line {line} ('{text_line}')"
        is_map = len(shape) == 3
        module: nn.Module

        if kind in ("conv", "dwconv"):
            if not is_map:
                raise SpecError(f"{where}: {kind} needs an HxWxC feature map, but its input is a vector of {shape[0]} values.", line)
            c_in, h, w = shape
            if kind == "conv":
                if len(args) < 2:
                    raise SpecError(f"{where}: expected 'conv N KxK', e.g. 'conv 16 3x3'.", line)
                c_out = _int(args[0], "the number of filters N", line, text_line)
                kernel = _pair(args[1], "a kernel size", line, text_line)
                opts = _options(args[2:], {"stride", "padding", "groups", "dilation", "bias"}, line, text_line)
                groups = _int(opts.get("groups", "1"), "groups", line, text_line)
            else:
                if len(args) < 1:
                    raise SpecError(f"{where}: expected 'dwconv KxK', e.g. 'dwconv 3x3'.", line)
                kernel = _pair(args[0], "a kernel size", line, text_line)
                opts = _options(args[1:], {"stride", "padding", "dilation", "bias"}, line, text_line)
                c_out, groups = c_in, c_in
            stride = _pair(opts.get("stride", "1"), "a stride", line, text_line)
            dilation = _int(opts.get("dilation", "1"), "dilation", line, text_line)
            if c_in % groups or c_out % groups:
                raise SpecError(f"{where}: groups={groups} must divide both the {c_in} input channels and the {c_out} filters.", line)
            padding_word = opts.get("padding", "valid")
            padding: Any
            if padding_word == "same":
                if all((k - 1) * dilation % 2 == 0 for k in kernel):
                    padding = tuple((k - 1) * dilation // 2 for k in kernel)
                elif stride == (1, 1):
                    padding = "same"  # even kernel: PyTorch pads one more on the far side
                else:
                    raise SpecError(f"{where}: 'padding same' with an even kernel and stride > 1 needs uneven padding; write 'padding P' instead.", line)
            elif padding_word == "valid":
                padding = (0, 0)
            else:
                p = _int(padding_word, "padding (same, valid or a number)", line, text_line, minimum=0)
                padding = (p, p)
            pads = padding if isinstance(padding, tuple) else tuple(((k - 1) * dilation) // 2 for k in kernel)
            h_out = h if padding == "same" else _conv_out(h, kernel[0], stride[0], pads[0], dilation)
            w_out = w if padding == "same" else _conv_out(w, kernel[1], stride[1], pads[1], dilation)
            if h_out < 1 or w_out < 1:
                raise SpecError(
                    f"{where}: the {kernel[0]}x{kernel[1]} kernel"
                    + (f" (dilation {dilation})" if dilation > 1 else "")
                    + f" does not fit its {h}x{w}x{c_in} input with padding {pads[0]}: "
                    f"the output would be {h_out}x{w_out}.",
                    line,
                )
            module = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias=opts.get("bias") != "no")
            shape = (c_out, h_out, w_out)
        elif kind in ("maxpool", "avgpool"):
            if not is_map:
                raise SpecError(f"{where}: {kind} needs an HxWxC feature map, but its input is a vector of {shape[0]} values.", line)
            if not args:
                raise SpecError(f"{where}: expected '{kind} KxK', e.g. '{kind} 2x2'.", line)
            c_in, h, w = shape
            kernel = _pair(args[0], "a pooling window", line, text_line)
            opts = _options(args[1:], {"stride", "padding"}, line, text_line)
            stride = _pair(opts["stride"], "a stride", line, text_line) if "stride" in opts else kernel
            p = _int(opts.get("padding", "0"), "padding", line, text_line, minimum=0)
            if p * 2 > min(kernel):
                raise SpecError(f"{where}: padding {p} is more than half the {kernel[0]}x{kernel[1]} window.", line)
            h_out, w_out = _conv_out(h, kernel[0], stride[0], p, 1), _conv_out(w, kernel[1], stride[1], p, 1)
            if h_out < 1 or w_out < 1:
                raise SpecError(f"{where}: the {kernel[0]}x{kernel[1]} window is larger than its {h}x{w}x{c_in} input.", line)
            cls = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
            module = cls(kernel, stride, p)
            shape = (c_in, h_out, w_out)
        elif kind == "globalavgpool":
            if not is_map:
                raise SpecError(f"{where}: globalavgpool needs an HxWxC feature map, but its input is a vector.", line)
            _options(args, set(), line, text_line)
            module, shape = GlobalAvgPool(), (shape[0],)
        elif kind == "flatten":
            _options(args, set(), line, text_line)
            module, shape = nn.Flatten(), (math.prod(shape),)
        elif kind == "dense":
            if not args:
                raise SpecError(f"{where}: expected 'dense N', e.g. 'dense 10'.", line)
            units = _int(args[0], "the number of units N", line, text_line)
            opts = _options(args[1:], {"bias"}, line, text_line)
            if is_map:
                c_in, h, w = shape
                raise SpecError(f"{where}: the input is a {h}x{w}x{c_in} feature map; add 'flatten' (or 'globalavgpool') before 'dense'.", line)
            module, shape = nn.Linear(shape[0], units, bias=opts.get("bias") != "no"), (units,)
        elif kind == "bn":
            _options(args, set(), line, text_line)
            module = nn.BatchNorm2d(shape[0]) if is_map else nn.BatchNorm1d(shape[0])
        elif kind == "dropout":
            p = float(args[0]) if args and re.fullmatch(r"0?\.\d+|0|1", args[0]) else 0.5
            if len(args) > 1 or (args and not re.fullmatch(r"0?\.\d+|0|1", args[0])):
                raise SpecError(f"{where}: expected 'dropout' or 'dropout P' with 0 ≤ P ≤ 1.", line)
            module = nn.Dropout(p)
        else:  # activations
            _options(args, set(), line, text_line)
            module = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}.get(kind, lambda: nn.Softmax(dim=1))()
        counts[kind] = counts.get(kind, 0) + 1
        name = f"{kind}{counts[kind]}"
        modules[name] = module
        layers.append(SpecLayer(line, text_line, kind, name, tuple(shape)))
        if math.prod(shape) > 2**40:
            raise SpecError(f"{where}: the output would have {math.prod(shape):,} values; that is beyond any real network.", line)

    if shape is None:
        raise SpecError("Start the network with 'input HxWxC', e.g. 'input 32x32x3'.", 1)
    if not modules:
        line, text_line = lines[-1]
        raise SpecError(f"Line {line} ('{text_line}'): the network has an input but no layers; add one a line below it.", line)
    from collections import OrderedDict

    assert first_shape is not None
    return SpecNetwork(nn.Sequential(OrderedDict(modules)), tuple(layers), first_shape)  # type: ignore[arg-type]
