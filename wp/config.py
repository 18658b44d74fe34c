"""Workflow configuration: schema validation with defaults filled in, plus checks of names."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from wp import WPError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


def _fill_defaults(schema: dict, instance):
    """Recursively insert schema defaults for missing keys (objects only)."""
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return instance
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(sub, instance[key])
    return instance


def _coerce(schema: dict, value):
    """Turn strings into the numbers/booleans the schema asks for: Snakemake's ``--config`` hands
    ``pool_sizes=[16,32]`` over as a list of strings."""
    kind = schema.get("type")
    if isinstance(value, str):
        try:
            if kind == "integer":
                return int(value)
            if kind == "number":
                return float(value)
        except ValueError:
            return value
        if kind == "boolean" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return value
    if kind == "array" and isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_coerce(schema["items"], v) for v in value]
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = _coerce(sub, value[key])
    return value


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


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
        e = errors[0]
        raise WPError(f"config: {_where(e)}: {e.message} (fix it in config.yaml or on the --config line)")
    check_names(config)
    check_pooled_layers(config)
    check_compare(config)
    check_listed(config, "export")
    return config


def check_names(config: dict) -> None:
    from wp import data, models, recipes

    models.load_files(config.get("network_modules"))  # networks of the user's own, before their names are checked
    data.register_own(config.get("datasets"))  # datasets of the user's own (an .npz file each)
    for dataset, networks in config["experiments"].items():
        data.get(dataset)
        for net in networks:
            models.check_name(net)
            for stage in recipes.STAGES:
                recipes.resolve(config, stage, net)
    for net in config.get("network_hparams", {}):
        models.check_name(net)
    retrain = config.get("sweeps", {}).get("table6", {}).get("retrain_bits")
    for net in retrain if isinstance(retrain, dict) else []:
        models.check_name(net)


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
