"""Reading user zip files safely: no path tricks, no zip bombs."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from cvdemo.errors import CvdemoError

MAX_MEMBERS = 5_000
MAX_TOTAL_BYTES = 500 * 1024 * 1024  # uncompressed
MAX_RATIO = 200  # uncompressed / compressed per member: more is a zip bomb


class ArchiveError(CvdemoError, ValueError):
    """A zip file that cannot be used; the message says why."""


@dataclass
class ZipContents:
    """Members that passed the checks (posix relative path -> bytes) and the ones skipped, with why."""

    files: dict[str, bytes] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _safe_name(name: str) -> str | None:
    """The member's relative posix path, or None when it tries to leave the extraction folder."""
    if "\\" in name:
        name = name.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return None
    parts = [p for p in path.parts if p not in ("", ".")]
    return "/".join(parts) if parts else None


def read_zip(src: bytes | IO[bytes] | str | Path, max_total_bytes: int = MAX_TOTAL_BYTES) -> ZipContents:
    """Read every regular file of a zip into memory after checking names and sizes.

    Raises :class:`ArchiveError` for a non-zip, an empty zip, too many members or a zip bomb;
    members with ``..``/absolute paths, symlinks or macOS metadata are skipped and listed.
    """
    data = src if isinstance(src, (bytes, bytearray)) else None
    try:
        if data is not None:
            archive = zipfile.ZipFile(io.BytesIO(data))
        else:
            if hasattr(src, "seek"):
                src.seek(0)
            archive = zipfile.ZipFile(src)  # type: ignore[arg-type]
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ArchiveError("That file is not a valid zip archive.") from None
    out = ZipContents()
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if not infos:
            raise ArchiveError("The zip archive is empty.")
        if len(infos) > MAX_MEMBERS:
            raise ArchiveError(f"The zip has {len(infos)} files; the limit is {MAX_MEMBERS}.")
        declared = sum(i.file_size for i in infos)
        if declared > max_total_bytes:
            raise ArchiveError(
                f"The zip would unpack to {declared / 2**20:.0f} MB; the limit is {max_total_bytes / 2**20:.0f} MB."
            )
        total = 0
        for info in infos:
            name = _safe_name(info.filename)
            is_symlink = (info.external_attr >> 16) & 0o170000 == 0o120000
            if name is None or is_symlink:
                out.skipped.append(f"{info.filename}: unsafe path (outside the archive), skipped.")
                continue
            if name.startswith("__MACOSX/") or PurePosixPath(name).name.startswith("._"):
                continue
            if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 1 << 20:
                raise ArchiveError(f"{info.filename} expands {info.file_size // info.compress_size}x: refusing a zip bomb.")
            try:
                with archive.open(info) as fh:
                    blob = fh.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                out.skipped.append(f"{info.filename}: cannot be read ({exc}).")
                continue
            if len(blob) > info.file_size:  # header lied about the size
                raise ArchiveError(f"{info.filename} is larger than its header says: refusing a zip bomb.")
            total += len(blob)
            if total > max_total_bytes:
                raise ArchiveError(f"The zip unpacks to more than {max_total_bytes / 2**20:.0f} MB.")
            out.files[name] = blob
    if not out.files:
        raise ArchiveError("The zip holds no usable files. " + " ".join(out.skipped[:3]))
    return out


def class_folders(contents: ZipContents) -> dict[str, dict[str, bytes]]:
    """Group files by their parent folder name (``<class>/<file>``), ignoring a common top folder."""
    groups: dict[str, dict[str, bytes]] = {}
    for name, blob in contents.files.items():
        parts = PurePosixPath(name).parts
        if len(parts) < 2:
            contents.skipped.append(f"{name}: not inside a class folder, skipped.")
            continue
        groups.setdefault(parts[-2], {})[name] = blob
    return groups
