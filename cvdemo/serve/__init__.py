"""Inference beyond one machine: the app's networks served by Ray Serve (``python -m cvdemo.serve``).

* :mod:`cvdemo.serve.networks` names each network the app runs (``yolov8n/detect``,
  ``efficientnet_lite0/features``, ``conse/image``, ``clip/text``, ...), how to load it with cvdemo's own
  loaders and its batch function: a list of plain inputs -> a list of plain outputs.
* :mod:`cvdemo.serve.deployment` wraps those in Ray Serve deployments (``@serve.batch``, replicas);
  ``python -m cvdemo.serve`` starts them.
* :mod:`cvdemo.serve.client`: with ``CVDEMO_INFERENCE_URL`` set, :func:`remote_batch_fn` sends a batch
  there; the detector, the feature extractor and the CLIP/ConSE towers use it instead of their local forward.

Ray is an optional dependency (``requirements-serve.txt``): only the server imports it.
"""

from cvdemo.serve.client import INFERENCE_URL_ENV, InferenceServerError, InferenceServerUnavailable, remote_batch_fn

__all__ = ["INFERENCE_URL_ENV", "InferenceServerError", "InferenceServerUnavailable", "remote_batch_fn"]
