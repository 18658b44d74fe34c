"""Weight pools side by side with related methods: one comparison job per (method, setting, network),
each starting from the same pretrained float network (``python -m wp compare --method M``).

``METHODS`` is the registry, method -> the module that runs its jobs; each such module has
``job(setting, options, **inputs)``, which turns the setting string (as in file names and the table)
and the method's options (the config's ``compare.<method>`` block) into its ``run``. The table is a
literal: :mod:`wp.codedeps` reads it to give each method's jobs only that method's code as inputs.
What every method shares is :mod:`wp.compare.common`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from wp import WPError

METHODS = (
    ("prune", "wp.compare.prune"),  # iterative magnitude pruning with retraining (Han et al.)
    ("ternary", "wp.compare.ternary"),  # ternary weights (TWN), optionally ternary activations
    ("valueset", "wp.compare.valueset"),  # SLB-style value-set search
    ("sharing", "wp.compare.sharing"),  # retraining-free per-layer weight sharing (Dupuis et al.)
)


def names() -> tuple[str, ...]:
    return tuple(name for name, _ in METHODS)


def module(method: str) -> ModuleType:
    """The module that runs ``method``'s jobs."""
    for name, path in METHODS:
        if name == method:
            return importlib.import_module(path)
    raise WPError(f"unknown comparison method {method!r}: use one of {', '.join(names())}")

