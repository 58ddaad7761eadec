"""Exports made once into cvdemo's cache: a ``.pt`` through ultralytics' own ``YOLO.export`` (OpenVINO, else ONNX),
and an ONNX file as an ultralytics-style OpenVINO folder. Each is built in a temp folder and published with one rename."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

from cvdemo import runtime, weights
from cvdemo.files import publish
from cvdemo.yolo_runtime import import_ultralytics


def export_folder(pt: Path) -> Path:
    """The cache folder of one ``.pt``'s exports, keyed by its bytes: a changed file gets a new export."""
    return runtime.cache_folder() / "yolo" / f"{pt.stem}-{weights.sha256_of(pt)[:16]}"


def export_format() -> str:
    """OpenVINO when its package imports (fastest on Intel CPUs), else ONNX (onnxruntime is always installed)."""
    import importlib

    try:
        importlib.import_module("openvino")
    except Exception:  # not installed, or a broken install: ONNX still works
        return "onnx"
    return "openvino"


def export_pt(pt: Path, fmt: str | None = None) -> Path:
    """The ultralytics export of ``pt`` in cvdemo's cache (made once, then reused): an ONNX file or OpenVINO folder.

    ultralytics writes its export beside the ``.pt`` and weights folders may be read-only, so the
    ``.pt`` is copied into a private temp folder in the cache, exported there, and the export moved
    into place with one rename: a half-written export is never found by a later load.
    """
    fmt = fmt or export_format()
    folder = export_folder(pt)
    final = folder / (f"{pt.stem}_openvino_model" if fmt == "openvino" else f"{pt.stem}.onnx")
    if _export_complete(final):
        return final
    folder.mkdir(parents=True, exist_ok=True)

    def build(work: Path) -> Path:
        copy = work / pt.name
        shutil.copyfile(pt, copy)
        import_ultralytics()
        from ultralytics import YOLO

        # fp32 (quantize=32: ultralytics' replacement of half=False/int8=False), dynamic so any page image
        # size works; no onnxslim (not installed, and auto-install is off), CPU only.
        options: dict[str, Any] = {"format": fmt, "dynamic": True, "quantize": 32, "device": "cpu"}
        if fmt == "onnx":
            options["simplify"] = False  # the OpenVINO exporter refuses this argument
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace deprecation noise inside the exporter
            out = Path(YOLO(str(copy), task="detect").export(**options))
        if not _export_complete(out):
            raise RuntimeError(f"ultralytics reported {out.name} but wrote no complete export")
        return out

    return _publish_atomically(final, ".export-", build)


def openvino_folder(onnx_path: Path) -> Path:
    """An ONNX file as an ultralytics-style OpenVINO folder beside it (made once): IR files plus ``metadata.yaml``.

    ultralytics picks its OpenVINO backend from the folder name (``*_openvino_model``) and reads
    class names, stride and input size from the yaml: the same metadata the ONNX file carries.
    Weights stay FP32 (no FP16 compression of the IR). Written in a temp folder and renamed.
    """
    import onnx
    import openvino as ov
    import yaml

    final = onnx_path.parent / f"{onnx_path.stem}_openvino_model"
    if _export_complete(final):
        return final

    def build(work: Path) -> Path:
        metadata = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        ov.save_model(ov.convert_model(str(onnx_path)), str(work / f"{onnx_path.stem}.xml"), compress_to_fp16=False)
        (work / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
        return work

    return _publish_atomically(final, ".openvino-", build)


def _publish_atomically(final: Path, prefix: str, build: Callable[[Path], Path]) -> Path:
    """``build(work)`` in a private temp folder beside ``final``, then what it returns moved to ``final`` with one rename.

    A half-written export is never found by a later load; when another process published the same
    export first, that one is kept. The temp folder is removed in any case.
    """
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    try:
        publish(build(work), final, _export_complete)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _export_complete(path: Path) -> bool:
    if path.suffix == ".onnx":
        return path.is_file()
    return path.is_dir() and any(path.glob("*.xml")) and (path / "metadata.yaml").is_file()
