"""The app's side of the inference server: send one batch of a network's inputs, get its outputs back.

``remote_batch_fn("yolov8n/detect")`` is None unless ``CVDEMO_INFERENCE_URL`` is set; then it is a
function ``inputs -> outputs`` with the same plain values as the network's local batch function
(:mod:`cvdemo.serve.networks`). One HTTP POST per batch, to ``<url>/<network key>``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Callable

from cvdemo.errors import CvdemoError
from cvdemo.serve import wire

if TYPE_CHECKING:
    from cvdemo.runtime import RuntimeInfo

INFERENCE_URL_ENV = "CVDEMO_INFERENCE_URL"
TIMEOUT_ENV = "CVDEMO_INFERENCE_TIMEOUT"  # seconds one batch may take, first model load included
DEFAULT_TIMEOUT = 120.0

BatchFn = Callable[[list[Any]], list[Any]]


class InferenceServerError(CvdemoError, RuntimeError):
    """The inference server answered, but not with results (it does not serve that network, or failed)."""


class InferenceServerUnavailable(InferenceServerError):
    """Nothing answers at ``CVDEMO_INFERENCE_URL``. The message says how to start the server or turn it off."""

    def __init__(self, url: str, reason: str = ""):
        self.url = url
        super().__init__(
            f"The inference server at {url} does not answer"
            + (f" ({reason})" if reason else "")
            + f": start it with `python -m cvdemo.serve` or unset {INFERENCE_URL_ENV}."
        )


def inference_url() -> str | None:
    """The server's base address from ``CVDEMO_INFERENCE_URL`` (trailing slash removed), or None."""
    url = os.environ.get(INFERENCE_URL_ENV, "").strip().rstrip("/")
    return url or None


def remote_batch_fn(network_key: str) -> BatchFn | None:
    """A function sending a batch of ``network_key``'s inputs to the inference server, or None (run locally)."""
    url = inference_url()
    if url is None:
        return None
    timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)

    def run(inputs: list[Any]) -> list[Any]:
        from cvdemo.scheduler import compute_gate

        with compute_gate().stepped_aside():  # this machine's cores are free while the server works
            return send_batch(url, network_key, list(inputs), timeout)

    return run


def served_runtime(info: "RuntimeInfo", network_key: str | None) -> "RuntimeInfo":
    """``info`` for the latency badge, saying "on the inference server" when ``network_key`` runs there."""
    if not network_key or inference_url() is None:
        return info
    where = "on the inference server"
    return dataclasses.replace(info, detail=f"{info.detail}, {where}" if info.detail else where)


def send_batch(url: str, network_key: str, inputs: list[Any], timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
    """POST one batch to ``<url>/<network_key>`` and return its outputs (one per input, in order)."""
    if not inputs:
        return []
    request = urllib.request.Request(
        f"{url}/{network_key}",
        data=wire.encode({"inputs": inputs}),
        headers={"Content-Type": wire.CONTENT_TYPE},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            outputs = wire.decode(response.read())["outputs"]
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc)
        if exc.code == 404 and detail is not None:  # the model is served, the tower is not
            raise InferenceServerError(f"The inference server at {url} cannot run {network_key}: {detail}") from None
        if exc.code == 404:  # Ray Serve's own 404: no application at /<model>
            raise InferenceServerError(
                f"The inference server at {url} does not serve {network_key}: start it with "
                f"`python -m cvdemo.serve --networks {network_key.split('/')[0]}` (or unset {INFERENCE_URL_ENV})."
            ) from None
        if exc.code in (502, 503, 504):  # a proxy in front of a stopped or starting server
            raise InferenceServerUnavailable(url, f"HTTP {exc.code}") from None
        detail = detail or f"HTTP {exc.code} {exc.reason}"
        raise InferenceServerError(f"The inference server at {url} failed on {network_key}: {detail}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InferenceServerUnavailable(url, str(reason)) from None
    if len(outputs) != len(inputs):
        raise InferenceServerError(
            f"The inference server at {url} returned {len(outputs)} results for {len(inputs)} inputs of {network_key}."
        )
    return outputs


def _error_detail(exc: urllib.error.HTTPError) -> str | None:
    """The error sentence cvdemo's deployment sent (JSON ``{"error": ...}``), or None (another server's page)."""
    try:
        return str(json.loads(exc.read().decode("utf-8"))["error"])
    except Exception:
        return None
