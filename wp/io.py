"""Atomic file output and small I/O helpers shared by every stage."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from wp import WPError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    An interrupted or failing writer never leaves a half-written ``path``, and an existing
    ``path`` stays untouched until the new file is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; results should be readable like any file
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"  # torch.save's format


def describe(path: str | os.PathLike) -> tuple[str, bool]:
    """What the file at ``path`` is, judged by its content: (words for an error message, damaged?).

    For errors about a file that is not what a stage expects: a valid file passed in the wrong place
    is named for what it is (never called corrupt); only a damaged file of a known kind says so."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(8)
    if head == HDF5_SIGNATURE:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                fmt = f.attrs.get("format")
        except OSError:
            return "a damaged HDF5 file", True
        return (f"a {fmt} file" if fmt else "an HDF5 file not written by wp"), False
    if head[:4] == ZIP_SIGNATURE:
        try:
            with zipfile.ZipFile(path) as z:
                damaged = z.testzip() is not None
        except zipfile.BadZipFile:
            damaged = True
        if damaged:
            return "a damaged zip (torch) file", True
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a foreign pickle (not loadable with weights_only)
            return "a torch file not written by wp", False
        fmt = obj.get("format") if isinstance(obj, dict) else None
        if isinstance(fmt, str) and fmt.startswith("wp-checkpoint"):
            return f"a {fmt} file ({obj.get('kind')} {obj.get('network')} on {obj.get('dataset')})", False
        return "a torch file not written by wp", False
    if head[:1] in (b"{", b"["):
        return "a JSON (text) file", False
    return "a file of an unknown kind (neither HDF5 nor a torch zip)", False


def read_h5(path: str | os.PathLike, fmt: str, what: str, stage: str) -> tuple[dict, dict]:
    """Read a wp HDF5 file of format ``fmt`` whole: (attributes, {dataset path: array}).

    ``what`` names the file kind and ``stage`` the stage that writes it, for the error messages."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise WPError(f"{what} {path} is missing: run the {stage} stage (snakemake {path})")
    arrays: dict = {}
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != fmt:
                raise WPError(wrong_file(path, fmt, what, f"the {what} that the {stage} stage writes"))
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    except OSError as exc:
        raise WPError(wrong_file(path, fmt, what, f"the {what} that the {stage} stage writes",
                                 f"rerun the {stage} stage")) from exc
    return attrs, arrays


def wrong_file(path: str | os.PathLike, fmt: str, what: str, fix: str, rerun: str = "rerun the stage that writes it") -> str:
    """The error for a file that could not be read as a ``what`` of format ``fmt``: what it is instead
    and ``fix`` (pass ...); deleting it is advised only when it is damaged (its own kind, yet unreadable)."""
    kind, damaged = describe(path)
    if damaged or kind.startswith(f"a {fmt} "):
        kind = kind if damaged else f"a damaged {what}"
        return f"{path} is {kind}: delete it and {rerun}"
    return f"{path} is {kind}, not a {what} ({fmt}): pass {fix}"
