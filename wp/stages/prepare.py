"""Stage ``prepare``: raw dataset files → one cached HDF5 file."""

from __future__ import annotations

import argparse
from pathlib import Path

from wp import WPError, data, settings
from wp.settings import cli_only, json_object, setting


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True)
    setting(p, "--data-dir", "data_dir")
    cli_only(p, "--options", default="{}", help="JSON dataset options (config key datasets.<name>; default {}: none)")
    cli_only(p, "--fetch-options", default="{}",
             help="JSON {dataset: options} of download settings, merged into --options for this dataset (default {}: none)")
    p.add_argument("--out", required=True)
    settings.job_options(p, device=False)


def main(args: argparse.Namespace) -> None:
    fetch = json_object(args.fetch_options, "--fetch-options").get(args.dataset, {})
    if not isinstance(fetch, dict):
        raise WPError(f"--fetch-options: the entry of {args.dataset} is not a JSON object: fix it")
    options = {**fetch, **json_object(args.options, "--options")}
    run(args.dataset, args.data_dir, args.out, seed=args.seed, options=options)


def run(dataset: str, data_dir: str | Path, out: str | Path, *, seed: int, options: dict | None = None) -> dict:
    summary = data.prepare(dataset, data_dir, out, seed=seed, options=options)
    print(f"prepared {dataset}: {summary['train']} train / {summary['test']} test images -> {out}", flush=True)
    return summary
