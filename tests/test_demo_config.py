"""The demo (config.yaml, issue 16) is sized for a 2-core CPU without changing what it shows, and what it
changes does not reach a paper run (config/paper.yaml goes on top of config.yaml)."""

import re
import shutil

import pytest

from conftest import REPO, copy_workflow, planned, snakemake

pytestmark = pytest.mark.slow

NETWORKS = ["mobilenet_v2", "resnet_10", "resnet_14", "resnet_mlperf", "tinyconv"]


@pytest.fixture
def work(tmp_path):
    work = copy_workflow(tmp_path)
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    shutil.copytree(REPO / "config", work / "config")
    return work


def commands(work, *args):
    r = snakemake(work, "-n", "-p", *args)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return [line for line in r.stdout.splitlines() if " -m wp " in line]


def test_the_demo_keeps_every_network_and_every_sweep_column(work):
    jobs = planned(work, None)
    assert sorted({re.search(r"network=(\w+)", w).group(1) for w in jobs["wp_train"]}) == NETWORKS
    assert len(jobs["wp_train"]) == 15 and len(jobs["cluster"]) == 15
    points = {(re.search(r"network=(\w+)", w).group(1), re.search(r"model=(\w+)", w).group(1),
               re.search(r"abits=(\d+)", w).group(1), re.search(r"lbits=(\w+)", w).group(1)) for w in jobs["quant_eval"]}
    for net in NETWORKS:
        assert {lb for n, m, a, lb in points if n == net and m == "wp64" and a == "8"} == {"none", "16", "8", "4"}
        assert {a for n, m, a, lb in points if n == net and m == "wp64" and lb == "8"} == {"8", "7", "6", "5", "4", "3"}
        assert any(n == net and m.startswith("wp64_a") for n, m, a, lb in points)  # retrained points
    for table in ("table3", "table4", "table5", "table6", "compare_table", "plots", "sweep_plots"):
        assert table in jobs
    evals = [c for c in commands(work) if " quant_eval " in c]
    assert evals and all("--test-images 250" in c for c in evals)


def test_a_paper_run_on_top_of_the_demo_config_keeps_the_paper_settings(work):
    cmds = commands(work, "tables/table4.csv", "tables/table5.csv", "tables/table6.csv", "--configfile", "config/paper.yaml")
    for stage in ("pretrain", "cluster", "wp_train", "quant_eval", "act_train"):
        assert any(f" -m wp {stage} " in c for c in cmds), stage
    # the paper pins 4 torch threads; a job gets exactly that many, whatever --cores is (issue 14)
    assert all("--threads 4" in c for c in cmds if " --threads " in c)
    assert not any("--test-images" in c or '"amp": "bf16"' in c for c in cmds)
    assert all("--max-iter 300" in c for c in cmds if " -m wp cluster " in c)
    assert all("--calibration-images 512" in c for c in cmds if " quant_eval " in c)
    assert all('"epochs": 500' in c for c in cmds if " pretrain " in c and "resnet_10" in c)
