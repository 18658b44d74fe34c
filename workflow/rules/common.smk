# Config validation, job lists, path helpers and the code files each stage depends on.
import json
import os
import shlex
import sys
from pathlib import Path

REPO = Path(workflow.basedir).parent
sys.path.insert(0, str(REPO))

from wp import WPError
from wp import codedeps
from wp import config as wpconfig
from wp import models as wpmodels
from wp import names as wpnames
from wp import recipes

# a --configfile's or --config's experiments replace config.yaml's instead of adding to them
wpconfig.apply_selections(config, getattr(getattr(workflow, "config_settings", None), "overwrite_config", None))
try:
    wpconfig.validate(config)
except WPError as exc:
    sys.exit(f"wp: error: {exc}")

RESULTS = config["results_dir"]
TABLES = config["tables_dir"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"


def result(template, suffix="", **fields):
    """A result file or pattern: ``template`` of wp.names (the one home of result paths) under RESULTS,
    ``fields`` filled in (those not given stay wildcards)."""
    return f"{RESULTS}/{wpnames.path(template, **fields)}{suffix}"


def relative(path):
    """``path`` relative to the directory snakemake runs in: a moved or copied checkout keeps its
    records (an absolute path would make every job's inputs look new)."""
    return os.path.relpath(path)


# networks of the user's own: every command loads their files (paths as given, relative to the workdir)
NETWORK_MODULES = [relative(p) for p in config["network_modules"]]
PY = f"{sys.executable} -m wp" + "".join(f" --networks-from {shlex.quote(p)}" for p in NETWORK_MODULES)


def _resolved_device():
    """What config's device means on this machine: auto counts as the device it resolves to, so
    switching between auto and that device reruns nothing."""
    if config["device"] != "auto":
        return config["device"]
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# Jobs get config's device (each resolves auto where it runs); the rerun trigger (params.device) is the
# device it resolves to here.
DEVICE = config["device"]
RESOLVED_DEVICE = _resolved_device()
# GPU jobs declare resources gpu=1 so that `--resources gpu=N` runs one job per GPU.
GPU = 0
if RESOLVED_DEVICE.startswith("cuda"):
    import torch

    GPU = 1 if torch.cuda.is_available() else 0
# torch's CPU thread count of every job: config's threads, never capped by --cores (torch's results
# depend on it). A job's `threads:` is what it claims from --cores; Snakemake caps that claim, not this.
TORCH_THREADS = config["threads"]
# wp_train's pool assignment (README "Networks without BatchNorm"): the paper's hard one is wp_train's
# default; the temperatures go with soft alone, so that changing them reruns nothing hard-assigned.
POOL_ASSIGN_ARGS = (
    ""
    if config["pool_assign"] == "hard"
    else f"--pool-assign {config['pool_assign']} --pool-assign-tau "
    + " ".join(str(t) for t in config["pool_assign_tau"])
)


def code(command, method=None):
    """Source files of wp that ``python -m wp command`` runs (its import closure, wp.codedeps): editing
    one reruns the job and what follows. A command that imports wp.models also loads the user's network
    files: editing one reruns that network's jobs (all of them, where a job has no network)."""
    files = [relative(REPO / f) for f in codedeps.closure(command, method)]
    if not NETWORK_MODULES or "wp/models/__init__.py" not in codedeps.closure(command, method):
        return files

    def with_own_networks(wc):
        network = wc.get("network")
        if network is None:
            return files + NETWORK_MODULES
        own = wpmodels.origin(network)
        return files + ([relative(own)] if own is not None else [])

    return with_own_networks


def hparams_json(stage, network):
    return json.dumps(recipes.resolve(config, stage, network), sort_keys=True)


# options that change what `prepare` writes; download settings (where and how to fetch) do not
FETCH_ONLY_OPTIONS = {"download", "verify", "url", "url_template", "source_dir", "attempts", "backoff_s", "timeout_s"}


def dataset_options(dataset):
    """The options that change what `prepare` writes (a params value: changing one reruns it)."""
    opts = config["datasets"].get(dataset, {})
    return json.dumps({k: v for k, v in opts.items() if k not in FETCH_ONLY_OPTIONS}, sort_keys=True)


def own_dataset_file(dataset):
    """The .npz file of a dataset of the user's own (an input: replacing it reruns prepare), else none."""
    opts = config["datasets"].get(dataset, {})
    return [opts["npz"]] if "npz" in opts else []


# where and how to fetch raw files, for every dataset: on the command line, not a rerun trigger
FETCH_OPTIONS = json.dumps(
    {d: {k: v for k, v in o.items() if k in FETCH_ONLY_OPTIONS} for d, o in config["datasets"].items()}, sort_keys=True
)


def jobs():
    return [(d, n) for d, nets in config["experiments"].items() for n in nets]


def table4_metrics():
    out = []
    for d, n in jobs():
        out.append(result(wpnames.PRETRAINED, ".json", dataset=d, network=n))
        out += [result(wpnames.POOLED, ".json", dataset=d, network=n, k=k) for k in config["pool_sizes"]]
    return out


def table4_outputs():
    return [f"{TABLES}/table4.csv", f"{TABLES}/table4.md"]


def plot_outputs():
    return [f"{TABLES}/plots/accuracy_vs_pool_size.png", f"{TABLES}/plots/training_curves.png"]


# ---- the deployed network: precision sweeps (tables 3, 5, 6) ----
from wp import sweeps as wpsweeps

SWEEPS = config["sweeps"]
SWEEP_K = SWEEPS["pool_size"]


def sweep_eval(d, n, model, act_bits, lut_bits):
    return result(wpnames.EVAL, dataset=d, network=n, model=model, abits=act_bits, lbits=wpsweeps.lut_label(lut_bits))


def table5_evals():
    t5 = SWEEPS["table5"]
    return [
        sweep_eval(d, n, wpnames.model(SWEEP_K), t5["act_bits"], lb)
        for d, n in jobs()
        for lb in [None, *t5["lut_bits"]]
    ]


def table5_wp_metrics():
    return [result(wpnames.POOLED, ".json", dataset=d, network=n, k=SWEEP_K) for d, n in jobs()]


def table6_evals():
    t6 = SWEEPS["table6"]
    out = []
    for d, n in jobs():
        out += [sweep_eval(d, n, wpnames.model(SWEEP_K), b, t6["lut_bits"]) for b in t6["act_bits"]]
        out += [
            sweep_eval(d, n, wpnames.model(SWEEP_K, b), b, t6["lut_bits"]) for b in wpsweeps.retrain_bits(config, n)
        ]
    return out


def table3_checkpoints():
    return [result(wpnames.POOLED, ".pt", dataset=d, network=n, k=SWEEP_K) for d, n in jobs()]


def eval_checkpoint(wc):
    """quant_eval's input: wp{K}.pt, or retrain/wp{K}_a{B}.pt for a model named wp{K}_a{B}."""
    return f"{RESULTS}/{wpnames.model_checkpoint(wc.dataset, wc.network, wc.model)}"


def sweep_outputs():
    return [f"{TABLES}/{t}.{ext}" for t in ("table3", "table5", "table6", "table8") for ext in ("csv", "md")] + [
        f"{TABLES}/plots/accuracy_vs_lut_bits.png",
        f"{TABLES}/plots/accuracy_vs_act_bits.png",
    ]


def export_outputs():
    """The artifacts of `all_exports`: per (dataset, network) of export.networks, the pool of sweeps.pool_size
    at export.act_bits / lut_bits (the act_train checkpoint with export.retrained)."""
    ex = config["export"]
    model = wpnames.model(SWEEP_K, ex["act_bits"] if ex["retrained"] else None)
    return [
        result(wpnames.EXPORT, f".{ext}", dataset=d, network=n, model=model, abits=ex["act_bits"], lbits=ex["lut_bits"])
        for d, n in jobs()
        if not ex["networks"] or n in ex["networks"]
        for ext in ("npz", "json", "h")
    ]


# --- comparison with related methods (issue 7) ---
COMPARE_METHODS = ("prune", "ternary", "valueset", "sharing")
TERNARY_SETTING = {False: "weights", True: "weights_acts"}
# the list of each method's settings makes its jobs; the rest of its block is every job's options
COMPARE_SETTING_LISTS = {"prune": "sparsities", "ternary": "activations", "valueset": "sets", "sharing": "budgets"}


def compare_jobs():
    """(dataset, network) pairs compared: the experiments, restricted to compare.networks when given."""
    nets = config["compare"]["networks"]
    return [(d, n) for d, n in jobs() if not nets or n in nets]


def compare_settings(method):
    """The settings of ``method`` as they appear in file names and in the table."""
    if method not in config["compare"]["methods"]:
        return []
    values = config["compare"][method][COMPARE_SETTING_LISTS[method]]
    if method == "ternary":
        return [TERNARY_SETTING[v] for v in values]
    if method in ("prune", "sharing"):
        return [f"{float(v):g}" for v in values]
    return list(values)


def compare_options(method):
    """The method's options other than its settings list (a params value: changing one reruns its jobs)."""
    block = config["compare"][method]
    return json.dumps({k: v for k, v in block.items() if k != COMPARE_SETTING_LISTS[method]}, sort_keys=True)


def needed(files, wc):
    """``files`` as an input of a rule (a list), or a function of the wildcards (see ``code``)."""
    return files(wc) if callable(files) else files


def compare_metrics():
    out = []
    for d, n in compare_jobs():
        out.append(result(wpnames.PRETRAINED, ".json", dataset=d, network=n))
        if "wp" in config["compare"]["methods"]:
            out += [result(wpnames.POOLED, ".json", dataset=d, network=n, k=k) for k in config["pool_sizes"]]
        for method in COMPARE_METHODS:
            out += [
                result(wpnames.COMPARE, ".json", dataset=d, network=n, method=method, setting=s)
                for s in compare_settings(method)
            ]
    return out


def compare_checkpoints():
    """The float and pooled checkpoints whose networks the table's footprints are computed from."""
    out = []
    for d, n in compare_jobs():
        out.append(result(wpnames.PRETRAINED, ".pt", dataset=d, network=n))
        if "wp" in config["compare"]["methods"]:
            out += [result(wpnames.POOLED, ".pt", dataset=d, network=n, k=k) for k in config["pool_sizes"]]
    return out


def compare_outputs():
    return [f"{TABLES}/compare.csv", f"{TABLES}/compare.md", f"{TABLES}/plots/compare_pareto.png"]

# --- end comparison ---
