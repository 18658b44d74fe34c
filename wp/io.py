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
                raise WPError(f"{path} is not a {what}: delete it and rerun the {stage} stage")
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    except OSError as exc:
        raise WPError(f"{path} is corrupt ({exc}): delete it and rerun the {stage} stage") from exc
    return attrs, arrays
