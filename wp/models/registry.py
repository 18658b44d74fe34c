"""Model registry in the style of timm: ``@register`` a builder, ``create(name, ...)`` builds it.

Networks of your own live in a Python file outside the package: ``load_file(path)`` imports it once,
and every builder it decorates with ``@wp.models.register`` becomes a network name like the built-in
ones (config key ``network_modules``, CLI ``python -m wp --networks-from FILE ...``).
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Callable

import torch.nn as nn

from wp import WPError
from wp.names import NAME

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_ORIGIN: dict[str, str] = {}  # network name -> the file that registered it
_LOADED: dict[Path, list[str]] = {}  # network file -> the names it registered
BUILDER_ARGS = {"in_channels": 1, "num_classes": 10, "image_size": 28}


def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register an architecture builder under its function name. The builder takes the keyword
    arguments ``in_channels``, ``num_classes`` and ``image_size`` and returns an ``nn.Module``."""
    name = fn.__name__
    where = inspect.getsourcefile(fn) or "?"
    if not NAME.fullmatch(name):
        raise WPError(f"network name {name!r} (in {where}) may hold only lowercase letters, digits and _: rename the builder function")
    if name in _BUILDERS:
        raise WPError(f"network {name!r} is registered twice ({_ORIGIN[name]} and {where}): rename one builder function")
    try:
        inspect.signature(fn).bind(**BUILDER_ARGS)
    except TypeError:
        raise WPError(f"network builder {name!r} (in {where}) must accept the keyword arguments in_channels, "
                      f"num_classes and image_size: def {name}(*, in_channels, num_classes, image_size)") from None
    _BUILDERS[name] = fn
    _ORIGIN[name] = where
    return fn


def names() -> list[str]:
    """All registered network names, sorted."""
    return sorted(_BUILDERS)


def origin(name: str) -> Path | None:
    """The file loaded with ``load_file`` that registered network ``name``; None for a built-in one."""
    return next((path for path, registered in _LOADED.items() if name in registered), None)


def check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise WPError(
            f"unknown network {name!r}: choose one of {', '.join(names())} (fix the networks list in your config, "
            f"or load the file that registers it: network_modules in the config, --networks-from on the command line)"
        )


def create(name: str, *, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Build network ``name`` for inputs of ``in_channels`` x ``image_size`` x ``image_size`` and ``num_classes``."""
    check_name(name)
    model = _BUILDERS[name](in_channels=in_channels, num_classes=num_classes, image_size=image_size)
    if not isinstance(model, nn.Module):
        raise WPError(f"network builder {name!r} ({_ORIGIN[name]}) returned {type(model).__name__}, not a torch.nn.Module: "
                      f"return the network")
    return model


def load_file(path: str | Path) -> list[str]:
    """Import the Python file ``path`` (once per process) and return the network names it registered."""
    path = Path(path)
    if not path.is_file():
        raise WPError(f"network module {path} not found: fix the path under network_modules (relative to the "
                      f"directory snakemake runs in) or --networks-from")
    key = path.resolve()
    if key in _LOADED:
        return list(_LOADED[key])
    if path.suffix != ".py":
        raise WPError(f"network module {path} is not a .py file: list the Python file that defines the builders")
    before = set(_BUILDERS)
    module_name = f"wp_networks_{re.sub(r'[^0-9a-zA-Z_]', '_', key.stem)}_{len(_LOADED)}"
    spec = importlib.util.spec_from_file_location(module_name, key)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a module up by name
    try:
        spec.loader.exec_module(module)
    except WPError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error in a user's file becomes one line naming it
        sys.modules.pop(module_name, None)
        line = getattr(exc, "lineno", None) or _error_line(exc, key)
        raise WPError(f"network module {path} failed to import ({type(exc).__name__}: {exc}"
                      f"{f', line {line}' if line else ''}): fix that file") from None
    added = sorted(set(_BUILDERS) - before)
    if not added:
        raise WPError(f"network module {path} registers no network: decorate a builder with @wp.models.register")
    _LOADED[key] = added
    return list(added)


def _error_line(exc: BaseException, path: Path) -> int | None:
    """The line of ``path`` where ``exc`` was raised, if the traceback passes through it."""
    tb, line = exc.__traceback__, None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def load_files(paths) -> list[str]:
    """``load_file`` for each path; all the names they registered."""
    return [name for p in paths or [] for name in load_file(p)]
