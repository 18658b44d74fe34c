"""What produced a result: versions, git commit, device. Stored in every metrics JSON."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

import wp


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(wp.__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def settings_hash(settings: dict) -> str:
    """sha256 (first 16 hex digits) of the settings that determine a result (hparams, seed, inputs)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def collect(device: torch.device, seed: int, settings: dict | None = None) -> dict:
    versions = {}
    for pkg in ("torch", "numpy", "h5py", "snakemake"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    # torch's CPU results depend on its thread count: it is part of the settings that made a result
    threads = torch.get_num_threads()
    return {"config_hash": settings_hash({"seed": seed, "threads": threads, **(settings or {})}), "wp": wp.__version__,
            "git_commit": git_commit(), "python": platform.python_version(), "versions": versions,
            "device": device_name(device), "seed": seed, "threads": threads}
