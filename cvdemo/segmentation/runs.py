"""Finished training runs, kept in the run store: a run with exactly the same settings is shown at once.

The key of a run (:func:`run_key`) covers every setting (model and recipe, held-out count), the data's
content (every image and mask), the encoder's ImageNet weights file and the library versions, and
:data:`RECIPE_VERSION`. The stored value is the run's history (the curves), its held-out confusion
matrix and its trained weights (safetensors, through :mod:`cvdemo.run_store`).

* :func:`start` trains in the background and stores the run when its last epoch is done; two
  sessions starting the same run share one trainer (the second one watches the first's).
* :func:`load` replays a stored run as a finished :class:`Trainer` (``stored_at`` says when it trained).
* :func:`get_or_train` is either of them, in the caller's thread (the server's model, the warm start).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from functools import lru_cache
from importlib.metadata import version

from cvdemo import run_store
from cvdemo.segmentation.dataset import SAMPLE_DATASET, SegDataset, load_sample, split
from cvdemo.segmentation.metrics import SegMetrics
from cvdemo.segmentation.model import ModelConfig, SegModel, build_network
from cvdemo.segmentation.training import EpochRecord, TrainConfig, Trainer

WHAT = "segmentation-training"
RECIPE_VERSION = "1"  # bump when the training code changes what a run with the same settings produces
WEIGHTS_PREFIX = "weights/"

# The Segmentation page's first view: what a lecturer trains in class when nothing was changed
# (app_pages/segmentation.py takes its slider defaults from here; the warm start precomputes it).
PAGE_IMG_SIZE = 96
PAGE_TRAIN = TrainConfig()


def effective(model_config: ModelConfig, train_config: TrainConfig) -> TrainConfig:
    """The recipe a :class:`Trainer` really runs (a random encoder: nothing frozen, one learning rate)."""
    return train_config.effective(model_config.pretrained_encoder)


@lru_cache(maxsize=1)
def _library_versions() -> str:
    # From the installed packages' metadata: a page asking for a key does not import torch.
    return " · ".join(f"{name} {version(name)}" for name in ("torch", "segmentation-models-pytorch", "timm"))


def _model_identity(config: ModelConfig) -> str:
    from cvdemo import weights

    parts = [_library_versions()]
    if config.pretrained_encoder:
        parts.append(weights.sha256_of(weights.resolve(config.encoder, download=False)))
    return " · ".join(parts)


def run_key(dataset: SegDataset, n_val: int, model_config: ModelConfig, train_config: TrainConfig) -> str:
    """The run store key of training ``model_config`` with ``train_config`` on ``dataset`` (``n_val`` held out)."""
    settings = {
        "model": {k: v for k, v in asdict(model_config).items() if k not in ("metrics", "mean", "std")},
        "train": asdict(effective(model_config, train_config)),
        "n_val": int(n_val),
    }
    settings["model"]["class_names"] = list(dataset.class_names)
    return run_store.run_key(WHAT, settings, dataset.content_digest, _model_identity(model_config), RECIPE_VERSION)


def _save(trainer: Trainer, n_val: int) -> None:
    """Store a finished run (called in the trainer's thread after its last epoch)."""
    if trainer.run_key is None or trainer.metrics is None:
        return
    result = {
        "label": trainer.label,
        "seconds": trainer.seconds,
        "n_val": n_val,
        "model_config": trainer.model.config.to_json(),
        "train_config": asdict(trainer.config),
        "history": [asdict(r) for r in trainer.history],
        "held_out": [s.name for s in trainer.val_samples],
    }
    arrays = {WEIGHTS_PREFIX + k: v for k, v in trainer.model.network.state_dict().items()}
    arrays["confusion"] = trainer.metrics.matrix
    run_store.store().put(trainer.run_key, WHAT, result, arrays)


def _new_trainer(dataset: SegDataset, n_val: int, model_config: ModelConfig, train_config: TrainConfig,
                 key: str, label: str, polite: bool) -> Trainer:
    import torch

    model_config = replace(model_config, class_names=list(dataset.class_names), metrics={})
    train, val = split(dataset.samples, n_val, seed=train_config.seed)
    torch.manual_seed(train_config.seed)  # the same decoder initialisation for every run with this seed
    trainer = Trainer(SegModel(model_config), train, val, train_config)
    trainer.label = label or f"{dataset.source} ({len(train)} train / {len(val)} held out)"
    trainer.run_key = key
    trainer.on_finish = lambda t: _save(t, n_val)
    if polite:  # one batch at a time through the inference gate: the pages' requests go between batches
        from cvdemo import scheduler

        trainer.batch_gate = scheduler.compute_gate().hold
    return trainer


def start(dataset: SegDataset, n_val: int, model_config: ModelConfig, train_config: TrainConfig,
          label: str = "", polite: bool = False) -> tuple[Trainer, bool]:
    """Train in a background thread and store the run at its end: ``(trainer, started_here)``.

    ``polite``: train one batch at a time through the inference gate (:func:`cvdemo.scheduler.compute_gate`),
    so the pages' requests wait for at most one batch (the warm start's run).

    When the same run is already training (another session, the warm start), its trainer is returned
    with ``started_here`` False: the caller watches it instead of training it a second time.
    """
    key = run_key(dataset, n_val, model_config, train_config)
    return run_store.store().start_job(
        key, lambda: _new_trainer(dataset, n_val, model_config, train_config, key, label, polite)
    )


def running(dataset: SegDataset, n_val: int, model_config: ModelConfig, train_config: TrainConfig) -> Trainer | None:
    """The trainer training exactly this run right now, if any."""
    return run_store.store().running_job(run_key(dataset, n_val, model_config, train_config))


def load(dataset: SegDataset, n_val: int, model_config: ModelConfig, train_config: TrainConfig) -> Trainer | None:
    """The stored run with exactly these settings, replayed as a finished trainer; None if there is none.

    Every call builds its own model (callers may rename or fine-tune theirs).
    """
    import torch

    key = run_key(dataset, n_val, model_config, train_config)
    stored = run_store.store().get(key)
    if stored is None:
        return None
    result = stored.result
    config = ModelConfig.from_json(result["model_config"])  # the project's model-file checks
    network = build_network(config)
    state = {k[len(WEIGHTS_PREFIX):]: torch.from_numpy(v.copy())
             for k, v in stored.arrays.items() if k.startswith(WEIGHTS_PREFIX)}
    network.load_state_dict(state, strict=True)
    train, val = split(dataset.samples, n_val, seed=train_config.seed)
    trainer = Trainer(SegModel(config, network), train, val, TrainConfig(**result["train_config"]))
    trainer.history = [EpochRecord(**r) for r in result["history"]]
    trainer._epoch_done = len(trainer.history)
    trainer.metrics = SegMetrics(list(config.class_names), stored.arrays["confusion"].astype("int64"))
    trainer.label = str(result["label"])
    trainer.seconds = float(result["seconds"])
    trainer.status, trainer.progress = "done", 1.0
    trainer.run_key, trainer.stored_at = key, stored.created
    return trainer


def get_or_train(dataset: SegDataset, n_val: int, model_config: ModelConfig, train_config: TrainConfig,
                 label: str = "", polite: bool = False) -> Trainer:
    """The stored run, else trained now (joining the run another caller is training) and stored."""
    found = load(dataset, n_val, model_config, train_config)
    if found is not None:
        return found
    trainer, _ = start(dataset, n_val, model_config, train_config, label, polite)
    trainer.join()
    if trainer.status != "done":
        raise RuntimeError(trainer.error or f"the training run ended {trainer.status}")
    return trainer


def page_default(dataset: SegDataset | None = None) -> tuple[SegDataset, int, ModelConfig, TrainConfig]:
    """The Segmentation page's default run on the sample pets: ``(dataset, n_val, model, recipe)``."""
    from cvdemo import backbones
    from cvdemo.segmentation.training import SAMPLE_HELD_OUT

    dataset = dataset or load_sample(SAMPLE_DATASET)
    ready = backbones.available_backbones()
    encoder = ready[0] if ready else ModelConfig().encoder
    config = ModelConfig(architecture="Unet", encoder=encoder, class_names=list(dataset.class_names),
                         img_size=PAGE_IMG_SIZE, pretrained_encoder=True)
    return dataset, SAMPLE_HELD_OUT, config, PAGE_TRAIN
