"""One ultralytics predict call that also keeps the network's raw output (what the NMS lesson and parity checks read)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cvdemo.yolo_runtime import import_ultralytics

if TYPE_CHECKING:
    from ultralytics.engine.results import Results


@lru_cache(maxsize=1)
def _raw_keeping_predictor() -> type:
    """ultralytics' DetectionPredictor that also keeps the raw network output of its last batch.

    One class object per process: ``YOLO.predict`` rebuilds its predictor when a different class is passed.
    """
    import_ultralytics()
    from ultralytics.models.yolo.detect import DetectionPredictor

    class RawKeepingPredictor(DetectionPredictor):
        last_raw: Any = None
        last_input_shape: tuple[int, int] = (0, 0)

        def postprocess(self, preds, img, orig_imgs, **kwargs):
            # A reference, not a copy: NMS below reads it and never writes into it.
            self.last_raw = preds[0] if isinstance(preds, (list, tuple)) else preds
            self.last_input_shape = (int(img.shape[2]), int(img.shape[3]))
            return super().postprocess(preds, img, orig_imgs, **kwargs)

    return RawKeepingPredictor


def _run(model: Any, image: Image.Image, copy_raw: bool = False, **kwargs: Any) -> tuple["Results", Any]:
    """One ``model.predict`` on one image: ultralytics' result and the network's raw output (a numpy copy if asked)."""
    result = model.predict(image, predictor=_raw_keeping_predictor(), verbose=False, **kwargs)[0]
    raw = model.predictor.last_raw
    if copy_raw:
        raw = np.array(raw.detach().cpu().numpy() if hasattr(raw, "detach") else raw, dtype=np.float32, copy=True)
    return result, raw
