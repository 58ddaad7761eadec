"""An example set in a zip: export ``<class>/<image>`` folders + manifest + embeddings; import that
(restoring the features) or any zip of class folders, safely."""

from __future__ import annotations

import io
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from cvdemo import archives
from cvdemo.fewshot.embedding_cache import EmbeddingCache
from cvdemo.fewshot.examples import Example, ExampleSet, ExampleSetError
from cvdemo.images import is_image_name

EXPORT_FORMAT = "cvdemo-fewshot"
EXPORT_VERSION = 1
_SAFE_FILE = re.compile(r"[^A-Za-z0-9._ -]+")


def _export_name(example: Example, used: set[str]) -> str:
    stem = _SAFE_FILE.sub("_", PurePosixPath(example.name).stem)[:60] or "image"
    suffix = PurePosixPath(example.name).suffix.lower()
    if example.data[:8] == b"\x89PNG\r\n\x1a\n":
        suffix = ".png"
    elif not is_image_name(f"x{suffix}"):
        suffix = ".img"
    name = f"{stem}{suffix}"
    for n in itertools.count(2):
        if name not in used:
            break
        name = f"{stem}_{n}{suffix}"
    used.add(name)
    return name


def export_zip(examples: ExampleSet, cache: EmbeddingCache | None = None) -> bytes:
    """A zip a lecturer can import elsewhere: ``<class>/<image>`` folders (so any tool can read it),
    ``manifest.json`` (classes, files, digests) and ``embeddings.npz`` (every cached feature space)."""
    import zipfile

    manifest: dict[str, Any] = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "classes": {}, "embeddings": {}}
    arrays: dict[str, np.ndarray] = {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as archive:  # images are compressed already
        all_digests = []
        for class_name, items in examples.classes.items():
            used: set[str] = set()
            entries = []
            for example in items:
                path = f"{class_name}/{_export_name(example, used)}"
                archive.writestr(path, example.data)
                entries.append({"file": path, "name": example.name, "digest": example.digest})
                all_digests.append(example.digest)
            manifest["classes"][class_name] = entries
        if cache is not None:
            for i, (key, vectors) in enumerate(sorted(cache.keys_for(all_digests).items())):
                digests = sorted(vectors)
                arrays[f"vectors_{i}"] = np.stack([vectors[d] for d in digests]).astype(np.float32)
                arrays[f"digests_{i}"] = np.array(digests, dtype="U64")  # images.fingerprint: 32 hex digits
                dim = int(arrays[f"vectors_{i}"].shape[1])
                manifest["embeddings"][key] = {"array": i, "count": len(digests), "dim": dim}
            if arrays:
                npz = io.BytesIO()
                np.savez_compressed(npz, **arrays)
                archive.writestr("embeddings.npz", npz.getvalue())
        archive.writestr("manifest.json", json.dumps(manifest, indent=1))
    return buf.getvalue()


@dataclass
class ImportResult:
    examples: ExampleSet
    embeddings: dict[tuple[str, str], np.ndarray]  # (extractor key, digest) -> vector
    messages: list[str]


def import_zip(src: bytes | Any) -> ImportResult:
    """Read an exported example set or any zip of ``<class>/<image>`` folders.

    Unsafe members (``../``, absolute paths, symlinks) are skipped and reported; a zip bomb or a
    non-zip raises :class:`cvdemo.archives.ArchiveError`. Embeddings are accepted only for images
    in the zip whose pixels match their digest, with a consistent shape and finite values.
    """
    contents = archives.read_zip(src)
    messages = list(contents.skipped)
    files = dict(contents.files)
    manifest_path = next((p for p in files if PurePosixPath(p).name == "manifest.json"), None)
    prefix = ""
    manifest: dict[str, Any] | None = None
    if manifest_path is not None:
        try:
            manifest = json.loads(files.pop(manifest_path).decode("utf-8"))
            if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            messages.append("manifest.json is not a cvdemo few-shot manifest; reading the class folders instead.")
            manifest = None
        prefix = str(PurePosixPath(manifest_path).parent)
        prefix = "" if prefix == "." else prefix + "/"
    npz_blob = files.pop(prefix + "embeddings.npz", None)
    result = ExampleSet()
    if manifest is not None:
        _import_manifest(manifest, files, prefix, result, messages)
    else:
        groups = archives.class_folders(archives.ZipContents(files, messages))
        for class_name, members in groups.items():
            members = {p: b for p, b in members.items() if not PurePosixPath(p).name.startswith(".")}  # .DS_Store & co
            if not members:
                continue
            try:
                target = result.ensure_class(class_name)
            except ExampleSetError as exc:
                messages.append(str(exc))
                continue
            _, notes = result.add_images(target, [(PurePosixPath(p).name, blob) for p, blob in sorted(members.items())])
            messages.extend(notes)
    embeddings = _import_embeddings(manifest, npz_blob, result, messages) if manifest is not None else {}
    if not len(result):
        messages.append("The zip holds no usable images in class folders (expected <class>/<image> inside the zip).")
    return ImportResult(result, embeddings, messages)


def _import_manifest(
    manifest: dict, files: dict[str, bytes], prefix: str, out: ExampleSet, messages: list[str]
) -> None:
    classes = manifest.get("classes")
    if not isinstance(classes, dict):
        messages.append("manifest.json lists no classes.")
        return
    for class_name, entries in classes.items():
        try:
            target = out.ensure_class(str(class_name))
        except ExampleSetError as exc:
            messages.append(str(exc))
            continue
        for entry in entries if isinstance(entries, list) else []:
            path = str(entry.get("file", "")) if isinstance(entry, dict) else ""
            blob = files.get(prefix + path)
            if blob is None:
                messages.append(
                    f"{path or 'an entry'} is listed in manifest.json but is not in the zip (or was unsafe)."
                )
                continue
            name = str(entry.get("name") or PurePosixPath(path).name)
            _, notes = out.add_images(target, [(name, blob)])
            messages.extend(notes)


def _import_embeddings(
    manifest: dict, npz_blob: bytes | None, examples: ExampleSet, messages: list[str]
) -> dict[tuple[str, str], np.ndarray]:
    spaces = manifest.get("embeddings") or {}
    if not spaces or npz_blob is None:
        return {}
    try:
        npz = np.load(io.BytesIO(npz_blob), allow_pickle=False)  # never unpickle objects from a user file
    except Exception:
        messages.append("embeddings.npz cannot be read; the features will be recomputed.")
        return {}
    present = {e.digest for items in examples.classes.values() for e in items}
    out: dict[tuple[str, str], np.ndarray] = {}
    with npz:
        for key, info in spaces.items():
            try:
                i = int(info["array"])
                vectors = np.asarray(npz[f"vectors_{i}"])
                digests = np.asarray(npz[f"digests_{i}"])
                well_formed = vectors.dtype.kind == "f" and vectors.ndim == 2
                if not well_formed or digests.dtype.kind != "U" or len(digests) != len(vectors):
                    raise ValueError("shapes")
                if not np.isfinite(vectors).all():
                    raise ValueError("non-finite")
            except Exception:
                messages.append(f"Embeddings for {key} are malformed and were ignored (they will be recomputed).")
                continue
            for digest, vector in zip(digests.tolist(), vectors.astype(np.float32)):
                if digest in present:
                    out[(str(key), digest)] = vector
    return out
