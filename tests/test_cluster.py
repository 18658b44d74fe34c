"""The cluster path without a cluster: Snakemake's cluster-generic executor submits every job
through a submit script that runs it in the background, polls a status script and collects the
outputs. Also checks the SLURM profile names resources for every rule."""

import os

import pandas as pd
import pytest
import yaml

from conftest import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.slow


def test_workflow_through_cluster_generic_executor(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_cluster_generic")
    work = copy_workflow(tmp_path / "wf")
    config = {
        "device": "cpu", "threads": 1, "experiments": {"digits": ["tinyconv"]}, "pool_sizes": [8],
        "hparams": {"pretrain": {"epochs": 1, "train_subset": 300, "test_subset": 100},
                    "wp_train": {"epochs": 1, "train_subset": 300, "test_subset": 100}},
    }
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    env = {**os.environ, "WP_FAKE_CLUSTER": str(jobs_dir)}
    r = snakemake(work, "--executor", "cluster-generic", "--jobs", "2", "--latency-wait", "5",
                  "--cluster-generic-submit-cmd", f"bash {REPO / 'tests' / 'cluster' / 'submit.sh'}",
                  "--cluster-generic-status-cmd", f"bash {REPO / 'tests' / 'cluster' / 'status.sh'}",
                  "--max-status-checks-per-second", "5", "tables/table4.csv",
                  config=config, env=env, cores=False, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    submitted = sorted(p.name for p in jobs_dir.glob("*.exit"))
    # pretrain, cluster, wp_train and table4 went through submit.sh; prepare is a local rule
    # (it may need the network, which cluster nodes often lack)
    assert len(submitted) == 4
    assert (work / "results" / "digits" / "data.h5").exists()
    assert all((jobs_dir / name).read_text().strip() == "0" for name in submitted)
    df = pd.read_csv(work / "tables" / "table4.csv")
    assert list(df.network) == ["tinyconv"] and df.loc[0, "wp8"] > 10


def test_slurm_profile_sets_resources_for_every_rule():
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    rules = set(profile["set-resources"])
    assert {"prepare", "pretrain", "cluster", "wp_train", "table4"} <= rules
    for rule in ("pretrain", "wp_train", "cluster"):
        res = profile["set-resources"][rule]
        assert res["gpu"] == 1 and res["cpus_per_gpu"] > 0 and res["mem_mb"] > 0 and res["runtime"] > 0
