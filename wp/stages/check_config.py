"""Command ``check-config`` (no rule runs it): validate a config file, print it with defaults filled in."""

from __future__ import annotations

import argparse
import json

from wp import config, models


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("configfile")


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    print(json.dumps(config.load(args.configfile), indent=2))
