import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
torch.set_num_threads(min(2, os.cpu_count() or 1))


def stage_kw(stage: str, **given) -> dict:
    """The keyword settings a stage's ``run`` requires, as the workflow passes them by default (each the
    schema's default, wp.settings), updated with ``given``."""
    from wp.settings import default

    deployed = {"lut_mode": default("sweeps.lut_mode"), "signed_mode": default("sweeps.signed_mode"),
                "calibration_images": default("sweeps.calibration_images"), "act_range": default("sweeps.act_range")}
    own = {
        "quant_eval": {**deployed, "test_images": default("sweeps.test_images")},
        "export": deployed,
        "act_train": {"ste": default("sweeps.table6.ste"), "start": default("sweeps.table6.start"),
                      "calibration_images": default("sweeps.calibration_images"), "act_range": default("sweeps.act_range")},
        "wp_train": {"assign": default("pool_assign"), "tau": tuple(default("pool_assign_tau"))},
        "cluster": {"backend": default("kmeans.backend"), "init": default("kmeans.init"), "max_iter": default("kmeans.max_iter"),
                    "tol": default("kmeans.tol"), "pool_fc": default("pool_fc"), "scale": default("pool_scale")},
    }.get(stage, {})
    return {**own, "seed": default("seed"), "device": default("device"), **given}


def copy_workflow(work: Path) -> Path:
    """A runnable copy of the workflow (``wp/`` and ``workflow/``) in ``work``, so that a test's
    results never land in the repository."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "wp", work / "wp", ignore=ignore)
    shutil.copytree(REPO / "workflow", work / "workflow", ignore=ignore)
    return work


def snakemake(work: Path, *args: str, config: dict | None = None, env: dict | None = None,
              cores: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``snakemake`` on the copy in ``work`` (``config``, when given, is written to its config.yaml first)."""
    cfg = work / "config.yaml"
    if config is not None:
        cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(work / "workflow" / "Snakefile"), "--directory", str(work)]
    if cfg.exists():
        cmd += ["--configfile", str(cfg)]
    if cores:
        cmd += ["--cores", "2"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=work, env=env, timeout=timeout)


def planned(work: Path, config: dict, *targets: str) -> dict[str, list[str]]:
    """{rule: [wildcards line, ...]} of a dry run (the ``all`` rule left out)."""
    r = snakemake(work, "-n", *targets, config=config)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs: dict[str, list[str]] = {}
    rule = None
    for line in r.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1) if m.group(1) != "all" else None
            if rule:
                jobs.setdefault(rule, [])
        elif rule and line.strip().startswith("wildcards:"):
            jobs[rule].append(line.strip())
    return jobs


@pytest.fixture(scope="session")
def digits_h5(tmp_path_factory) -> Path:
    """The digits dataset prepared once for the whole session."""
    from wp import data

    out = tmp_path_factory.mktemp("data") / "digits.h5"
    data.prepare("digits", tmp_path_factory.mktemp("raw"), out, seed=0)
    return out


@pytest.fixture(scope="session")
def trained_tinyconv(digits_h5, tmp_path_factory) -> Path:
    """A tinyconv really trained on digits (a few hundred steps' worth of seconds): its checkpoint."""
    from wp.stages import pretrain
    from wp.train import hparams

    d = tmp_path_factory.mktemp("tiny")
    hp = hparams({"epochs": 3, "batch_size": 32, "lr": 0.05, "schedule": "onecycle", "warmup_epochs": 0.5, "nesterov": True})
    pretrain.run(digits_h5, "tinyconv", hp, d / "pretrained.pt", d / "pretrained.json", seed=0, device="cpu")
    return d / "pretrained.pt"


@pytest.fixture(scope="session")
def pool8(trained_tinyconv, tmp_path_factory) -> Path:
    """trained_tinyconv's pool of 8 (cluster with the default settings, seed 0): its pool file."""
    from wp.stages import cluster

    out = tmp_path_factory.mktemp("pool") / "pool8.h5"
    cluster.run(trained_tinyconv, "tinyconv", 8, out, **stage_kw("cluster", seed=0, device="cpu"))
    return out


def sgd_losses(forward, params, lr: float, in_features: int = 2048, steps: int = 40) -> list[float]:
    """The losses of ``steps`` plain SGD steps at ``lr`` on ``params`` fitting ``forward`` to random
    targets (256 random inputs of ``in_features``, one output, mean squared error), drawn from torch's
    global generator after the caller's model: how a pooled layer's training stays stable or diverges."""
    opt = torch.optim.SGD(params, lr=lr)
    x, target = torch.randn(256, in_features), torch.randn(256, 1)
    losses = []
    for _ in range(steps):
        loss = (forward(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# pooled_tinyconv's retraining: one epoch
POOLED_HP = {"epochs": 1, "batch_size": 32, "lr": 0.01, "schedule": "cosine"}


@pytest.fixture(scope="session")
def pooled_tinyconv(digits_h5, trained_tinyconv, tmp_path_factory):
    """``pooled_tinyconv(k)``: the directory holding ``pool{k}.h5``, ``wp{k}.pt`` and ``wp{k}.json`` of
    trained_tinyconv pooled with K = k and retrained one epoch (made once per k in a session)."""
    from wp.stages import cluster, wp_train
    from wp.train import hparams

    made = {}

    def make(k: int) -> Path:
        if k not in made:
            d = tmp_path_factory.mktemp(f"wp{k}")
            cluster.run(trained_tinyconv, "tinyconv", k, d / f"pool{k}.h5", **stage_kw("cluster", seed=0, device="cpu"))
            wp_train.run(digits_h5, trained_tinyconv, d / f"pool{k}.h5", "tinyconv", hparams(POOLED_HP), d / f"wp{k}.pt",
                         d / f"wp{k}.json", **stage_kw("wp_train", seed=0, device="cpu"))
            made[k] = d
        return made[k]

    return make


def pooled_model(name, seed=0, k=16, dtype=torch.float64, image_size=12, in_channels=1):
    """A random network of the registry whose pooled layers hold pool vectors, with its indices."""
    from wp import models, pool

    torch.manual_seed(seed)
    m = models.create(name, in_channels=in_channels, num_classes=10, image_size=image_size).to(dtype).eval()
    layers = pool.pooled_layers(m)
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, 8, generator=g, dtype=dtype) * 0.2
    indices = {}
    for name_ in layers:
        mod = m.get_submodule(name_)
        w, idx = pool.project(mod.weight.data, centers)
        mod.weight.data.copy_(w)
        indices[name_] = idx
    for mod in m.modules():  # tame random BNs so activations stay in a sane range
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_var.fill_(4.0)
            mod.running_mean.fill_(0.2)  # BN outputs go negative where no ReLU follows
    return m, centers, indices
