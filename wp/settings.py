"""Every setting's one declared default: the workflow's config schema, read by config key.

``default("sweeps.act_range")`` is the schema's default of that key (``"mse"``); ``describe(key)`` its
description. A command-line option that mirrors a config setting is declared with :func:`setting`,
which names the key: its default, type, choices and help text come from the schema, so the CLI, the
rules (which pass the validated config's value) and the library (whose stage ``run`` functions take
the value as a required argument) cannot disagree. An option that mirrors no setting is required, or
declared with :func:`cli_only`, which asks for the help text that says what it is for. ``tests/test_cli.py``
walks every command's parser and checks both.

This module imports nothing of ``wp`` but the error type, so that every command may read it without
its code inputs (``wp.codedeps``) growing; :mod:`wp.config` validates whole configs against the same
schema (:func:`schema_path`).
"""

from __future__ import annotations

import argparse
import copy
import json
from functools import lru_cache
from pathlib import Path

import yaml

from wp import WPError


def schema_path() -> Path:
    """Where the config schema lives (the one place that says so)."""
    return Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"  # package data (pyproject.toml)


@lru_cache(maxsize=None)
def _schema() -> dict:
    return yaml.safe_load(schema_path().read_text())


def schema() -> dict:
    """The config schema (a fresh copy)."""
    return copy.deepcopy(_schema())


def spec(key: str) -> dict:
    """The schema of one setting, by its dotted config key (``"kmeans.max_iter"``); KeyError if none."""
    node = _schema()
    for part in key.split("."):
        props = node.get("properties", {})
        if part not in props:
            raise KeyError(f"no setting {key!r} in {schema_path().name}")
        node = props[part]
    return node


def fill(node: dict, instance):
    """Insert ``node``'s defaults for missing keys of ``instance``, recursively (objects only)."""
    if not isinstance(instance, dict) or node.get("type") != "object":
        return instance
    for key, sub in node.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            fill(sub, instance[key])
    return instance


def default(key: str):
    """The schema's default of a setting (an object setting: with its members' defaults filled in)."""
    node = spec(key)
    if "default" not in node:
        raise KeyError(f"setting {key!r} declares no default in {schema_path().name}")
    return fill(node, copy.deepcopy(node["default"]))


def describe(key: str) -> str:
    """The schema's description of a setting ('' if it has none), on one line."""
    return " ".join(str(spec(key).get("description", "")).split())


def with_defaults(key: str, given: dict | None) -> dict:
    """``given`` (e.g. a ``--options`` object) with the missing members of object setting ``key`` filled in."""
    return fill(spec(key), copy.deepcopy(given or {}))


_TYPES = {"integer": int, "number": float, "string": str}


def setting(parser: argparse.ArgumentParser, flag: str, key: str, *, negate: bool = False, **kw) -> argparse.Action:
    """Add option ``flag`` that mirrors config setting ``key``: default, type and choices from the schema
    (``kw`` may narrow them, e.g. ``nargs``), help from its description. A boolean setting becomes a
    flag: ``--x`` sets it true (its default must be false), or with ``negate`` ``--no-x`` sets it false
    (its default must be true)."""
    node = spec(key)
    value = default(key)
    help_text = (kw.pop("help", None) or describe(key)).replace("%", "%%")
    help_text = f"{help_text} (config key {key}; default: %(default)s)" if help_text else f"config key {key} (default: %(default)s)"
    if node.get("type") == "boolean":
        if value is not negate:
            raise KeyError(f"{flag}: setting {key} defaults to {value}: a {'--no-' if negate else '--'}flag cannot mirror it")
        action = parser.add_argument(flag, action="store_false" if negate else "store_true", dest=kw.pop("dest", None)
                                     or flag.lstrip("-").removeprefix("no-" if negate else "").replace("-", "_"),
                                     help=help_text.replace("%(default)s", str(value).lower()), **kw)
    else:
        kinds = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
        items = node.get("items", {}) if "array" in kinds else None
        kind = next((_TYPES[k] for k in ((items or {}).get("type"),) + tuple(kinds) if k in _TYPES), None)
        if "choices" not in kw and "enum" in node:
            kw["choices"] = node["enum"]
        if items is not None:
            kw.setdefault("nargs", "+")
        kw.setdefault("type", kind)
        action = parser.add_argument(flag, default=value, help=help_text, **kw)
    action.config_key = key
    action.config_negate = negate
    return action


def cli_only(parser: argparse.ArgumentParser, *flags: str, help: str, **kw) -> argparse.Action:  # noqa: A002
    """Add an optional option that mirrors no config setting; ``help`` says what it is for (and its
    default's meaning, e.g. "default: all")."""
    if not help:
        raise ValueError(f"{flags}: a command-line-only option needs its help text")
    action = parser.add_argument(*flags, help=help, **kw)
    action.cli_only = True
    return action


def json_object(text: str, option: str) -> dict:
    """The JSON object an option passes (one line naming the option otherwise)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WPError(f"{option} is not valid JSON ({exc}): pass a JSON object") from exc
    if not isinstance(value, dict):
        raise WPError(f"{option} must be a JSON object, got {text!r}: pass e.g. '{{\"exclude\": [\"*downsample*\"]}}'")
    return value


def job_options(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """The settings every computing job takes: ``--seed``, ``--threads`` (torch's CPU threads: results
    depend on them) and, unless ``device`` is false, ``--device``."""
    setting(parser, "--seed", "seed")
    setting(parser, "--threads", "threads")
    if device:
        setting(parser, "--device", "device")


def hparams_option(parser: argparse.ArgumentParser, help: str = "JSON training settings (see wp.train)") -> None:  # noqa: A002
    cli_only(parser, "--hparams", type=str, default="{}",
             help=f"{help}; the workflow passes the recipe's merged with hparams and network_hparams "
                  "(default {}: wp.train's defaults)")


def md_option(parser: argparse.ArgumentParser) -> None:
    cli_only(parser, "--md", default=None, help="also write the table as markdown to this file (default: none)")


def mcu_options(parser: argparse.ArgumentParser) -> None:
    """The settings every emulated Cortex-M3 measurement takes: ``--build`` (where its headers and images
    go), the cycle estimate's ``--cpi`` and ``--wait-states``, and ``--seed`` (its random weights)."""
    parser.add_argument("--build", required=True, help="directory for the generated headers and images")
    setting(parser, "--cpi", "mcu.cpi")
    setting(parser, "--wait-states", "mcu.wait_states")
    setting(parser, "--seed", "seed")


def stop_option(parser: argparse.ArgumentParser) -> None:
    """Tests only: SIGKILL the job after that training epoch."""
    cli_only(parser, "--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)
