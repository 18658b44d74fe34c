"""The paper configuration: fixtures in the upstream formats stand in for the internet, `prepare`
runs through snakemake for CIFAR-10 and QuickDraw-100, and a dry run lists the paper's jobs."""

import re

import numpy as np
import pytest
import yaml

from conftest import REPO, copy_workflow, snakemake
from test_data_real import fake_cifar, make_tarball, stage

from wp import data

pytestmark = pytest.mark.slow


@pytest.fixture
def work(tmp_path):
    return copy_workflow(tmp_path)


def paper_config(**datasets):
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    cfg["datasets"] = datasets
    return cfg


def test_dry_run_lists_the_paper_jobs(work):
    r = snakemake(work, "-n", "tables/table4.csv", config=paper_config())
    assert r.returncode == 0, r.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout, flags=re.M))
    assert counts == {"prepare": "2", "pretrain": "5", "cluster": "15", "wp_train": "15", "table4": "1", "total": "38"}
    assert "network=resnet_14" in r.stdout and "dataset=quickdraw100, network=mobilenet_v2" in r.stdout


def test_dry_run_lists_the_paper_sweeps(work):
    r = snakemake(work, "-n", "tables/table3.csv", "tables/table5.csv", "tables/table6.csv", config=paper_config())
    assert r.returncode == 0, r.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout, flags=re.M))
    # table 5: 4 points x 5 networks; table 6: 6 bit widths x 5 + the paper's retrained points 2+2+1+3+3;
    # 8-bit activations from the 8-bit LUT is a point of both tables and runs once
    assert counts["quant_eval"] == str(20 + 30 + 11 - 5) and counts["act_train"] == "11"
    assert counts["wp_train"] == "5" and "k=64" in r.stdout and "k=32" not in r.stdout
    assert "results/quickdraw100/tinyconv/retrain/wp64_a5.pt" in r.stdout
    assert "results/cifar10/resnet_mlperf/retrain/wp64_a3.pt" in r.stdout and "resnet_mlperf/retrain/wp64_a4.pt" not in r.stdout


def test_default_target_plans_every_paper_job_and_table8(work):
    r = snakemake(work, "-n", config=paper_config())
    assert r.returncode == 0, r.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout, flags=re.M))
    assert counts == {"prepare": "2", "pretrain": "5", "cluster": "15", "wp_train": "15", "table4": "1", "plots": "1",
                      "quant_eval": "56", "act_train": "11", "table3": "1", "table5": "1", "table6": "1", "table8": "1",
                      "sweep_plots": "1", "compare_train": "40", "compare_sharing": "10", "compare_table": "1",
                      "all": "1", "total": "163"}
    # the reference's pooled sets reach the cluster jobs
    assert "--layer-selection '{\"exclude\": [\"*downsample*\"], \"pool_fc\": true}'" in \
        snakemake(work, "-n", "-p", "results/cifar10/resnet_mlperf/pool64.h5", config=paper_config()).stdout


def test_prepare_runs_for_both_paper_datasets_from_fixtures(work, tmp_path):
    raw = tmp_path / "raw"
    fake_cifar(raw)
    tarball = make_tarball(raw, tmp_path / "cifar-10-python.tar.gz")
    qd_dir = stage(tmp_path / "npy", n=30, google_names=True)  # as on the bucket: "baseball bat.npy"
    cfg = paper_config(
        cifar10={"url": tarball.as_uri(), "verify": False},
        quickdraw100={"classes": ["cat", "baseball_bat", "t-shirt"], "per_class": 10, "train_per_class": 7,
                      "url_template": (qd_dir.as_uri() + "/{name}.npy"), "source_dir": str(tmp_path / "dl")},
    )
    r = snakemake(work, "results/cifar10/data.h5", "results/quickdraw100/data.h5", config=cfg)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    cifar = data.read(work / "results" / "cifar10" / "data.h5")
    assert cifar.train.images.shape[1:] == (3, 32, 32) and len(cifar.test.labels) == 9
    qd = data.read(work / "results" / "quickdraw100" / "data.h5")
    assert qd.classes == ["cat", "baseball_bat", "t-shirt"]
    assert np.bincount(qd.train.labels).tolist() == [7, 7, 7] and np.bincount(qd.test.labels).tolist() == [3, 3, 3]
    # download settings are not rerun triggers; the class list is
    cfg["datasets"]["quickdraw100"]["download"] = False
    assert "Nothing to be done" in snakemake(work, "-n", "results/quickdraw100/data.h5", config=cfg).stdout
    cfg["datasets"]["quickdraw100"]["classes"] = ["cat", "t-shirt"]
    assert "rule prepare" in snakemake(work, "-n", "results/quickdraw100/data.h5", config=cfg).stdout


def test_no_data_and_no_network_says_what_to_do(work, tmp_path):
    cfg = paper_config(cifar10={"download": False}, quickdraw100={"download": False})
    r = snakemake(work, "results/cifar10/data.h5", config=cfg)
    assert r.returncode != 0
    log = (work / "results" / "logs" / "prepare" / "cifar10.log").read_text()
    assert "cifar-10-python.tar.gz" in log and "wp: error:" in log
    assert not (work / "results" / "cifar10" / "data.h5").exists()


def test_the_paper_config_on_top_of_the_default_one_runs_only_the_paper_experiments(work):
    """`snakemake tables/table4.csv --configfile config/paper.yaml` in the repository: Snakemake merges
    that file into config.yaml; experiments must be the paper's alone, not those plus Fashion-MNIST."""
    (work / "config").mkdir()
    (work / "config" / "paper.yaml").write_text((REPO / "config" / "paper.yaml").read_text())
    (work / "config.yaml").write_text((REPO / "config.yaml").read_text())
    r = snakemake(work, "-n", "tables/table4.csv", "--configfile", "config/paper.yaml")
    assert r.returncode == 0, r.stderr
    datasets = set(re.findall(r"wildcards: dataset=(\w+)", r.stdout))
    assert datasets == {"cifar10", "quickdraw100"}
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout, flags=re.M))
    assert counts["pretrain"] == "5" and counts["wp_train"] == "15"
    r = snakemake(work, "-n", "tables/table4.csv", "--config", "recipe=fast")  # --config without experiments
    datasets = set(re.findall(r"wildcards: dataset=(\w+)", r.stdout))
    assert r.returncode == 0 and datasets == {"fashion_mnist"}  # config.yaml's experiments stay


def test_a_config_with_experiments_of_its_own_does_not_inherit_the_default_choice_of_compared_networks(work):
    (work / "config.yaml").write_text((REPO / "config.yaml").read_text())  # compares tinyconv and resnet_10
    (work / "mine.yaml").write_text("experiments: {digits: [tinyconv, resnet_mlperf]}\n")
    r = snakemake(work, "-n", "tables/compare.csv", "--configfile", "mine.yaml")
    assert r.returncode == 0, r.stderr
    compared = set(re.findall(r"wildcards: dataset=digits, network=(\w+), method=", r.stdout))
    assert compared == {"tinyconv", "resnet_mlperf"}
    (work / "mine.yaml").write_text("experiments: {digits: [tinyconv, resnet_mlperf]}\ncompare: {networks: [resnet_10]}\n")
    r = snakemake(work, "-n", "tables/compare.csv", "--configfile", "mine.yaml")
    assert r.returncode != 0 and "compare.networks: 'resnet_10' is in no experiment" in r.stderr
