"""``python -m cvdemo.serve``: the app's networks on Ray Serve, for classes beyond one machine.

    python -m cvdemo.serve --replicas 2 --port 8000          # on the inference machine(s)
    CVDEMO_INFERENCE_URL=http://that-host:8000 streamlit run app.py   # on each app machine

Starts a local Ray instance (or joins the cluster at ``--address``/``RAY_ADDRESS``), deploys one Ray Serve
application per model at ``/<model>`` and keeps serving until Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from cvdemo.serve import networks


def load_deployment():
    """cvdemo.serve.deployment, which needs Ray Serve (requirements-serve.txt): a sentence, not a traceback."""
    try:
        return importlib.import_module("cvdemo.serve.deployment")
    except ImportError as exc:
        if not (exc.name or "").startswith("ray"):
            raise
        raise SystemExit(
            "Ray Serve is not installed here: pip install -r requirements-serve.txt (the app itself runs without it)."
        ) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cvdemo.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", metavar="MODEL",
                        help="models to serve (each serves all its towers, e.g. conse = conse/image + conse/text); "
                             f"default: those of {', '.join(networks.DEFAULT_MODELS)} whose weights are here. "
                             f"Known: {', '.join(networks.MODELS)}")
    parser.add_argument("--replicas", type=int, default=1, help="replicas (processes) per model (default 1)")
    parser.add_argument("--cpus-per-replica", type=float, default=None,
                        help="Ray CPUs each replica reserves; its torch/OpenMP threads follow it "
                             "(default: the cluster's CPUs shared evenly by all replicas)")
    parser.add_argument("--max-batch-size", type=int, default=networks.MAX_BATCH_SIZE)
    parser.add_argument("--batch-wait-ms", type=float, default=networks.BATCH_WAIT_TIMEOUT_S * 1000,
                        help="how long a batch waits for more inputs after its first (default %(default)s ms)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP address (0.0.0.0 to serve other machines)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                        help="an existing Ray cluster to join (default: start a local Ray instance)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    return parser.parse_args(argv)


def chosen_models(requested: list[str] | None) -> list[str]:
    """The requested models (a network key like ``conse/text`` names its model), or the available defaults."""
    if requested:
        models = list(dict.fromkeys(name.split("/")[0] for name in requested))
        unknown = [m for m in models if m not in networks.MODELS]
        if unknown:
            sys.exit(f"Unknown model(s): {', '.join(unknown)}. Known: {', '.join(networks.MODELS)}")
        missing = [m for m in models if not networks.MODELS[m].available()]
        if missing:
            sys.exit(f"No weights on this machine for: {', '.join(missing)} (see `python -m cvdemo.weights`).")
        return models
    models = [m for m in networks.DEFAULT_MODELS if networks.MODELS[m].available()]
    if not models:
        sys.exit("None of the default models has its weights on this machine (see `python -m cvdemo.weights`).")
    return models


def start_ray(deployment, address: str | None, num_cpus: int | None, host: str, port: int) -> None:
    import ray
    from ray import serve

    deployment.patient_proxy()
    # Replicas import cvdemo from this checkout, wherever Ray starts them.
    if address:
        ray.init(address=address, runtime_env=deployment.runtime_env())
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=deployment.runtime_env())
    serve.start(http_options={"host": host, "port": port})


def even_share(replicas: int) -> float:
    """The cluster's CPUs split evenly over ``replicas`` (so every replica can be scheduled), rounded down."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    return max(0.01, int(total / max(1, replicas) * 100) / 100)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    models = chosen_models(args.networks)
    deployment = load_deployment()
    start_ray(deployment, args.address, args.num_cpus, args.host, args.port)
    started = time.perf_counter()
    cpus = args.cpus_per_replica or even_share(len(models) * args.replicas)
    deployment.deploy(models, args.replicas, cpus, args.max_batch_size, args.batch_wait_ms / 1000)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    keys = [k for m in models for k in networks.MODELS[m].network_keys]
    print(f"Serving {', '.join(keys)} ({args.replicas} replica(s) each, ready in {time.perf_counter() - started:.0f} s).")
    print(f"Point the app at it:  CVDEMO_INFERENCE_URL={url} streamlit run app.py")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve

        serve.shutdown()


if __name__ == "__main__":
    main()
