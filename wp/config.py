"""Workflow configuration: schema validation with defaults filled in, plus checks of names."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import yaml

from wp import WPError, settings
from wp.settings import default, describe  # noqa: F401 - a setting's one default and description, by config key

SCHEMA_PATH = settings.schema_path()
_fill_defaults = settings.fill


def _coerce(schema: dict, value, root: dict | None = None):
    """Turn strings into the numbers/booleans the schema asks for: Snakemake's ``--config`` hands
    ``pool_sizes=[16,32]`` over as a list of strings (and ``hparams={pretrain: {epochs: 3}}`` with a string 3)."""
    root = root or schema
    ref = schema.get("$ref", "")
    if ref.startswith("#/definitions/"):
        schema = root["definitions"][ref.rpartition("/")[2]]
    kind = schema.get("type")
    if isinstance(value, str):
        for k in kind if isinstance(kind, list) else [kind]:
            try:
                if k == "integer":
                    return int(value)
                if k == "number":
                    return float(value)
            except ValueError:
                pass
            if k == "boolean" and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if k == "null" and value.lower() in ("null", "none", "~"):
                return None
        return value
    if kind == "array" and isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_coerce(schema["items"], v, root) for v in value]
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = _coerce(sub, value[key], root)
    return value


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def allowed(schema: dict) -> str | None:
    """The values a leaf of the schema allows, in words ("an integer >= 1, or null"); None if it is no leaf."""
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    words = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string"}
    main = [words[k] for k in kinds if k in words]
    if len(main) != 1:
        return None
    bounds = [f"{op} {schema[key]}" for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                   ("maximum", "<="), ("exclusiveMaximum", "<")) if key in schema]
    text = " ".join([main[0], " and ".join(bounds)]).strip()
    return text + (", or null" if "null" in kinds else "")


def _message(error: jsonschema.ValidationError) -> str:
    """One line: the key, what is wrong, the allowed values where the schema states them, the fix."""
    rng = allowed(error.schema) if error.validator in ("type", "minimum", "maximum", "exclusiveMinimum",
                                                        "exclusiveMaximum") else None
    return (f"config: {_where(error)}: {error.message}{f' (allowed: {rng})' if rng else ''}"
            f" (fix it in config.yaml or on the --config line)")


# networks chosen among the experiments' ([] = all of them): config.yaml's choice names config.yaml's experiments
EXPERIMENT_CHOICES = (("compare", "networks"), ("export", "networks"))


def apply_selections(config: dict, given: dict | None) -> dict:
    """Snakemake deep-merges the user's --configfile and --config values (``given``) into config.yaml.
    ``experiments`` is a selection: the user's replaces config.yaml's (``experiments: {cifar10: [...]}``
    means only those), and config.yaml's choices among its experiments no longer apply unless the user
    makes them too."""
    if not given or "experiments" not in given:
        return config
    config["experiments"] = copy.deepcopy(given["experiments"])
    for block, key in EXPERIMENT_CHOICES:
        if key not in (given.get(block) or {}) and key in (config.get(block) or {}):
            config[block][key] = []
    return config


def validate(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Validate ``config`` (in place) against the schema, fill defaults, check dataset, network and
    training-setting names. Raises WPError with one line naming the key and the fix."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    if config is None:
        config = {}
    _fill_defaults(schema, config)
    _coerce(schema, config)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise WPError(_message(errors[0]))
    check_names(config, schema)
    check_pooled_layers(config)
    check_compare(config)
    check_listed(config, "export")
    return config


def check_names(config: dict, schema: dict | None = None) -> None:
    from wp import data, models, recipes

    models.load_files(config.get("network_modules"))  # networks of the user's own, before their names are checked
    data.register_own(config.get("datasets"))  # datasets of the user's own (an .npz file each)
    for dataset, networks in config["experiments"].items():
        data.get(dataset)
        for net in networks:
            models.check_name(net)
            for stage in recipes.STAGES:
                check_training(recipes.resolve(config, stage, net), stage, net, schema)
    for net in config.get("network_hparams", {}):
        models.check_name(net)
    retrain = config.get("sweeps", {}).get("table6", {}).get("retrain_bits")
    for net in retrain if isinstance(retrain, dict) else []:
        models.check_name(net)


def check_training(hp: dict, stage: str, network: str, schema: dict | None = None) -> None:
    """The training settings a job of ``stage`` on ``network`` gets (recipe, hparams, network_hparams
    merged) are allowed values (definitions.training of the schema) that work together."""
    schema = schema or yaml.safe_load(SCHEMA_PATH.read_text())
    where = f"the {stage} settings of {network} (recipe, then hparams.{stage}, then network_hparams.{network}.{stage})"
    rule = schema["definitions"]["training"]
    for e in jsonschema.Draft7Validator(rule).iter_errors(hp):
        rng = allowed(e.schema) if e.validator != "enum" else None
        raise WPError(f"config: {where}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                      f"{f' (allowed: {rng})' if rng else ''}: fix it in hparams or network_hparams")
    if hp["optimizer"] == "sgd" and hp["nesterov"] and hp["momentum"] == 0:
        raise WPError(f"config: {where}: nesterov: true needs momentum > 0 (it is 0): set momentum or nesterov: false")


def model_shape(dataset: str | None) -> dict:
    """The model arguments a network gets on ``dataset`` (a dataset of the user's own, whose shape is known
    only after prepare, or none: the registry's example shape; layer names do not depend on it)."""
    from wp import data
    from wp.models.registry import BUILDER_ARGS

    spec = data.get(dataset) if dataset is not None else None
    if spec is None or not spec.channels:
        return dict(BUILDER_ARGS)
    return {"in_channels": spec.channels, "num_classes": len(spec.classes), "image_size": spec.image_size}


def layer_selection(config: dict, network: str) -> dict:
    """The pooled-layer selection of ``network``: its ``pooled_layers`` entry, ``pool_fc`` filled in
    from the top-level key (what ``cluster --layer-selection`` takes)."""
    return {"pool_fc": config["pool_fc"], **(config.get("pooled_layers") or {}).get(network, {})}


def check_pooled_layers(config: dict) -> None:
    """Every ``pooled_layers`` entry names a network, and each of its patterns and kinds matches one of
    the network's poolable layers (built for each dataset the experiments run it on)."""
    from wp import models, pool

    for net in config.get("pooled_layers") or {}:
        models.check_name(net)
        datasets = [d for d, nets in config["experiments"].items() if net in nets] or [None]
        for dataset in datasets:
            model = models.create(net, **model_shape(dataset))
            try:
                layers = pool.pooled_layers(model, selection=layer_selection(config, net), network=net)
            except WPError as exc:
                raise WPError(f"config: {exc}") from None
            if not layers:
                raise WPError(f"config: pooled_layers.{net}: the selection leaves no layer to pool: widen it")


# --- comparison with related methods (issue 7) ---
def check_listed(config: dict, block: str) -> None:
    """``config[block]["networks"]`` names networks of the experiments."""
    listed = {n for nets in config["experiments"].values() for n in nets}
    for net in config[block]["networks"]:
        if net not in listed:
            raise WPError(f"config: {block}.networks: {net!r} is in no experiment: add it to experiments or remove it here")


def check_compare(config: dict) -> None:
    """The compare block names networks of the experiments and known value sets."""
    from wp.methods import valueset

    cmp = config["compare"]
    check_listed(config, "compare")
    for name in cmp["valueset"]["sets"]:
        if name not in valueset.VALUE_SETS:
            raise WPError(f"config: compare.valueset.sets: unknown value set {name!r}: use one of {', '.join(valueset.VALUE_SETS)}")
# --- end comparison ---


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise WPError(f"config file {path} not found: pass an existing file with --configfile")
    try:
        return validate(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError as exc:
        raise WPError(f"config file {path} is not valid YAML ({str(exc).splitlines()[0]}): fix its syntax") from exc
