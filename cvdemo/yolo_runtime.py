"""Importing ultralytics safely: one place for every module that runs YOLO.

ultralytics reads its switches once, at first import, and changes process-wide state
(Pillow's Image.open, OpenMP and torch thread counts), so detection, segmentation and the
benches all go through :func:`import_ultralytics`.
"""

from __future__ import annotations

import os

_ULTRALYTICS_ENV = {
    "YOLO_OFFLINE": "1",  # weights come from cvdemo.weights; ultralytics itself must never download
    "YOLO_AUTOINSTALL": "false",  # never pip-install a "missing requirement" from inside a lecture
    "YOLO_VERBOSE": "false",
    "ULTRALYTICS_SAFE_LOAD": "1",  # .pt checkpoints load with weights_only=True and an allow-list
    # ultralytics sets OMP_NUM_THREADS=1 "for training" when unset; if torch first loads after that,
    # every model in the app runs on one core. Keep OpenMP's default: all cores.
    "OMP_NUM_THREADS": str(os.cpu_count() or 1),
}


_TORCH_THREADS: dict[str, int] = {}  # torch's thread count before ultralytics first touched it


def import_ultralytics():
    """Import ultralytics with downloads, auto-install and unsafe unpickling switched off.

    Every cvdemo module that uses ultralytics should import it through here: ultralytics reads
    these switches once, at its first import, and patches ``PIL.Image.open`` process-wide.
    """
    for key, value in _ULTRALYTICS_ENV.items():
        os.environ.setdefault(key, value)
    import ultralytics
    import ultralytics.nn.tasks
    import ultralytics.utils.checks
    import ultralytics.utils.patches

    # Another module may have imported ultralytics before these variables were set: the two
    # safety switches are module constants, so enforce them where they are read.
    import torch
    import ultralytics.utils.torch_utils

    # select_device() sets torch's process-wide thread count to cpu_count - 1 on every predict:
    # on a 2-core server that halves every other page's speed. Keep torch's own setting.
    ultralytics.utils.torch_utils.NUM_THREADS = _TORCH_THREADS.setdefault("n", torch.get_num_threads())
    ultralytics.utils.checks.AUTOINSTALL = False
    ultralytics.nn.tasks.SAFE_LOAD = True
    if not ultralytics.utils.patches._pil_plugins_registered:
        # ultralytics' patched Image.open answers any file Pillow cannot identify by trying to
        # pip-install pi-heif, then raising ModuleNotFoundError: every "not an image" upload in
        # the app would crash instead of getting its message. Register HEIF support if present,
        # and tell the patch it is done.
        try:
            from pi_heif import register_heif_opener

            register_heif_opener()
        except ImportError:
            pass
        ultralytics.utils.patches._pil_plugins_registered = True
    return ultralytics
