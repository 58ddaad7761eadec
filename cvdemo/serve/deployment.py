"""The Ray Serve side: one deployment per served model, its towers batched with ``@serve.batch``.

``POST /<model>/<tower>`` with a :mod:`cvdemo.serve.wire` body ``{"inputs": [...]}`` answers
``{"outputs": [...]}``. Every input of every request joins the replica's batch queue on its own, so
inputs that arrive within ``batch_wait_timeout_s`` of each other (from one app's scheduler, or from
several app replicas) run as one batch of up to ``max_batch_size``. ``GET /<model>/stats`` tells the
batch sizes run so far (what the tests and the bench read to see batching happen).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from cvdemo.serve import networks, wire
from cvdemo.serve.networks import BATCH_WAIT_TIMEOUT_S, MAX_BATCH_SIZE
from cvdemo.serve.client import INFERENCE_URL_ENV

REPO = Path(__file__).resolve().parents[2]  # the folder holding the cvdemo package


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status_code=status, media_type="application/json")


@serve.deployment
class ModelServer:
    """One model (e.g. ``conse``: its image and its text tower) in one replica process."""

    def __init__(self, model: str, max_batch_size: int = MAX_BATCH_SIZE,
                 batch_wait_timeout_s: float = BATCH_WAIT_TIMEOUT_S) -> None:
        # The replica computes locally: it must never forward to an inference server (itself).
        os.environ.pop(INFERENCE_URL_ENV, None)
        self.model = networks.MODELS[model]
        started = time.perf_counter()
        self.loaded = self.model.load()
        self.load_seconds = time.perf_counter() - started
        self.run_batch.set_max_batch_size(int(max_batch_size))
        self.run_batch.set_batch_wait_timeout_s(float(batch_wait_timeout_s))
        self.batch_sizes: list[int] = []
        self._compute = threading.Lock()  # one batch at a time uses the replica's cores

    def _run(self, items: list[tuple[str, Any]]) -> list[Any]:
        """A mixed batch (e.g. image and text inputs) as one batch per tower, outputs in input order."""
        by_tower: dict[str, list[int]] = defaultdict(list)
        for i, (tower, _) in enumerate(items):
            by_tower[tower].append(i)
        outputs: list[Any] = [None] * len(items)
        with self._compute:
            self.batch_sizes.append(len(items))
            for tower, positions in by_tower.items():
                results = networks.run_batch(self.loaded, f"{self.model.name}/{tower}", [items[i][1] for i in positions])
                for i, result in zip(positions, results):
                    outputs[i] = result
        return outputs

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S)
    async def run_batch(self, items: list[tuple[str, Any]]) -> list[Any]:
        # In a worker thread: the replica's event loop keeps taking requests, so the next batch fills meanwhile.
        return await asyncio.to_thread(self._run, items)

    async def __call__(self, request: Request) -> Response:
        tower = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method == "GET" and tower == "stats":
            return _json({"model": self.model.name, "batch_sizes": list(self.batch_sizes),
                          "load_seconds": self.load_seconds})
        if tower not in self.model.towers:
            return _json({"error": f"{self.model.name} has no network '{tower}' "
                                   f"(it serves {', '.join(self.model.network_keys)})."}, 404)
        try:
            inputs = wire.decode(await request.body())["inputs"]
        except Exception as exc:  # not our format: say so, do not crash the replica
            return _json({"error": f"The request body is not a cvdemo batch: {exc}"}, 400)
        try:
            outputs = await asyncio.gather(*[self.run_batch((tower, item)) for item in inputs])
        except Exception as exc:
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 500)
        return Response(wire.encode({"outputs": list(outputs)}), media_type=wire.CONTENT_TYPE)


def model_app(model: str, num_replicas: int = 1, num_cpus: float = 1.0,
              max_batch_size: int = MAX_BATCH_SIZE, batch_wait_timeout_s: float = BATCH_WAIT_TIMEOUT_S):
    """The Ray Serve application of one model, ready for ``serve.run(app, route_prefix=f"/{model}")``."""
    networks.MODELS[model]  # KeyError for an unknown model, before Ray starts anything
    return ModelServer.options(
        name=model,
        num_replicas=int(num_replicas),
        # Enough requests per replica in flight for full batches (Serve's default of 5 would cap them).
        max_ongoing_requests=max(4 * int(max_batch_size), 16),
        ray_actor_options={"num_cpus": float(num_cpus)},
    ).bind(model, max_batch_size, batch_wait_timeout_s)


def deploy(models: list[str], num_replicas: int = 1, num_cpus: float = 1.0,
           max_batch_size: int = MAX_BATCH_SIZE, batch_wait_timeout_s: float = BATCH_WAIT_TIMEOUT_S) -> None:
    """Run every model's application on the Serve instance already started (``serve.start``).

    All models load at once (``serve.run_many``); this returns when every replica answers.
    """
    serve.run_many([
        serve.RunTarget(model_app(m, num_replicas, num_cpus, max_batch_size, batch_wait_timeout_s),
                        name=m, route_prefix=f"/{m}")
        for m in models
    ])


def patient_proxy() -> None:
    """Give Serve's HTTP proxy a minute to start (default 5 s): on a busy 2-core machine importing it takes
    longer, and the controller then kills it, failing ``serve.start``. Read by Ray's processes at start."""
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")


def runtime_env() -> dict:
    """Ray's runtime environment for the replicas: they import cvdemo from this checkout."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_server(models: list[str], ray_cpus: int | None = None, port: int | None = None,
                 **deploy_options: Any) -> Iterator[str]:
    """A private Ray instance on loopback serving ``models``; yields its URL, shuts Ray down after.

    For tests and benches: Ray's files go to a fresh temp folder (a short path: its sockets live there).
    """
    import ray

    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    port = port or free_port()
    patient_proxy()
    ray.init(num_cpus=ray_cpus, include_dashboard=False, _temp_dir=temp, log_to_driver=False,
             runtime_env=runtime_env())
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        deploy(models, **deploy_options)
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
