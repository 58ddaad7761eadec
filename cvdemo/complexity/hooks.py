"""Watching every module call of one forward pass: the profiler's rows and the receptive-field trace."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from torch import nn

PreHook = Callable[[nn.Module, tuple, dict], Any]
PostHook = Callable[[nn.Module, tuple, dict, Any], Any]


@contextmanager
def call_hooks(modules: Iterable[nn.Module], pre_hook: PreHook, post_hook: PostHook) -> Iterator[None]:
    """``pre_hook(module, args, kwargs)`` before and ``post_hook(module, args, kwargs, output)`` after every
    call of each module (the latter even when the call raises, so a stack of open calls stays balanced);
    the hooks are removed when the block ends."""
    handles = []
    try:
        for module in modules:
            handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
            handles.append(module.register_forward_hook(post_hook, with_kwargs=True, always_call=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
