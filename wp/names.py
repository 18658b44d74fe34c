"""Names and result paths: the one home of what a network or dataset may be called and of where each
stage's result lives under ``results_dir``.

The path templates are both Snakemake patterns (the rules in ``workflow/rules/`` use them as they are:
``{dataset}``, ``{network}``, ``{k}``, ... are the wildcards) and Python format strings (the library and
``common.smk`` fill them with :func:`path`). A template without a suffix names a result of several
files (``.pt`` + ``.json``, or ``.npz`` + ``.json`` + ``.h``).
"""

from __future__ import annotations

import re

NAME = re.compile(r"[a-z0-9_]+")  # a network or dataset name: a workflow wildcard, a file and folder name
MODEL = re.compile(r"wp([0-9]+)(?:_a([0-9]+))?")  # a pooled model: wp{K}, or wp{K}_a{B} retrained at B-bit activations

DATA = "{dataset}/data.h5"
PRETRAINED = "{dataset}/{network}/pretrained"  # .pt, .json
POOL = "{dataset}/{network}/pool{k}.h5"
POOLED_MODEL = "wp{k}"
RETRAINED_MODEL = "wp{k}_a{abits}"
POOLED = "{dataset}/{network}/" + POOLED_MODEL  # .pt, .json
RETRAINED = "{dataset}/{network}/retrain/" + RETRAINED_MODEL  # .pt, .json
EVAL = "{dataset}/{network}/eval/{model}/a{abits}_lut{lbits}.json"
EXPORT = "{dataset}/{network}/export/{model}/a{abits}_lut{lbits}"  # .npz, .json, .h
COMPARE = "{dataset}/{network}/compare/{method}/{setting}"  # .pt, .json


def path(template: str, **fields) -> str:
    """``template`` with the given fields filled in (``path(POOL, dataset="digits", network="tinyconv", k=8)``
    is ``digits/tinyconv/pool8.h5``); fields not given stay wildcards (``path(COMPARE, method="sharing")``)."""
    for key, value in fields.items():
        if "{" + key + "}" not in template:
            raise KeyError(f"{template!r} has no field {key!r}")
        template = template.replace("{" + key + "}", str(value))
    return template


def model(k: int, act_bits: int | None = None) -> str:
    """The name of a pooled model: ``wp{K}``, or ``wp{K}_a{B}`` after retraining at B-bit activations."""
    return path(POOLED_MODEL, k=k) if act_bits is None else path(RETRAINED_MODEL, k=k, abits=act_bits)


def model_checkpoint(dataset: str, network: str, model_name: str) -> str:
    """The checkpoint (relative to ``results_dir``) of a model named by :func:`model`."""
    match = MODEL.fullmatch(model_name)
    if match is None:
        raise ValueError(f"{model_name!r} is not a pooled model name (wp{{K}} or wp{{K}}_a{{B}})")
    k, bits = match.groups()
    if bits is None:
        return path(POOLED, dataset=dataset, network=network, k=k) + ".pt"
    return path(RETRAINED, dataset=dataset, network=network, k=k, abits=bits) + ".pt"
