"""Never stale, never silently different (issue 14): the same config gives bit-identical results
whatever --cores is; a copied checkout, or device auto meaning the same device, reruns nothing; the
thread count that shapes the numbers reruns what it changes; a bad training value stops the workflow
before any job and costs no result."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import copy_workflow, snakemake

pytestmark = pytest.mark.slow

PRETRAINED = "results/digits/tinyconv/pretrained.pt"
CONFIG = {
    "recipe": "smoke",
    "device": "cpu",
    "threads": 2,
    "experiments": {"digits": ["tinyconv"]},
    "pool_sizes": [8],
    "hparams": {"pretrain": {"epochs": 1, "batch_size": 32, "train_subset": 600, "test_subset": 200}},
}


def run(work, *args, cores, config=CONFIG):
    r = snakemake(work, "--cores", str(cores), *args, config=config, cores=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def at_one_and_two_cores(tmp_path_factory):
    """The pretrain stage run with threads: 2 under --cores 1 and under --cores 2, each from scratch."""
    works = {}
    for cores in (1, 2):
        work = copy_workflow(tmp_path_factory.mktemp(f"cores{cores}"))
        run(work, PRETRAINED, cores=cores)
        works[cores] = work
    return works


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_results_are_bit_identical_whatever_cores_is(at_one_and_two_cores):
    one, two = (weights(at_one_and_two_cores[c] / PRETRAINED) for c in (1, 2))
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    m1, m2 = (json.loads((at_one_and_two_cores[c] / PRETRAINED).with_suffix(".json").read_text()) for c in (1, 2))
    timing = ("seconds", "images_per_s")
    assert m1["test_top1"] == m2["test_top1"]
    assert [{k: v for k, v in row.items() if k not in timing} for row in m1["history"]] == \
        [{k: v for k, v in row.items() if k not in timing} for row in m2["history"]]
    assert m1["provenance"]["threads"] == m2["provenance"]["threads"] == 2
    assert m1["provenance"]["config_hash"] == m2["provenance"]["config_hash"]


def test_the_thread_count_matters_so_it_is_a_setting(at_one_and_two_cores, tmp_path):
    """The check above can fail: the same stage with one torch thread gives other weights (and says so)."""
    work = at_one_and_two_cores[1]
    from wp import recipes

    hp = json.dumps(recipes.resolve(CONFIG, "pretrain", "tinyconv"))
    out = tmp_path / "p.pt"
    r = subprocess.run([sys.executable, "-m", "wp", "pretrain", "--data", "results/digits/data.h5", "--network", "tinyconv",
                        "--hparams", hp, "--seed", "0", "--device", "cpu", "--threads", "1", "--out", str(out),
                        "--metrics", str(out.with_suffix(".json"))], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    one, two = weights(out), weights(work / PRETRAINED)
    assert not all(torch.equal(one[k], two[k]) for k in one)
    m1 = json.loads(out.with_suffix(".json").read_text())["provenance"]
    m2 = json.loads((work / PRETRAINED).with_suffix(".json").read_text())["provenance"]
    assert m1["threads"] == 1 and m1["config_hash"] != m2["config_hash"]
    # ... and changing it in the config reruns the jobs it shapes
    r = snakemake(work, "-n", PRETRAINED, config={**CONFIG, "threads": 1})
    assert "rule pretrain:" in r.stdout and "params have changed" in r.stdout.lower()
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "1", PRETRAINED, config=CONFIG, cores=False).stdout


def test_a_copied_checkout_plans_nothing(at_one_and_two_cores, tmp_path):
    copy = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(at_one_and_two_cores[2], copy, symlinks=True)  # like cp -a: contents, times, .snakemake
    r = snakemake(copy, "-n", PRETRAINED, config=CONFIG)
    assert r.returncode == 0 and "Nothing to be done" in r.stdout, r.stdout[-3000:]
    # the copy's records are its own: editing its code reruns its jobs
    cli = copy / "wp" / "cli.py"
    cli.write_text(cli.read_text() + "\n# an edit\n")
    assert "rule pretrain:" in snakemake(copy, "-n", PRETRAINED, config=CONFIG).stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto resolves to the GPU here, not to the cpu the results used")
def test_device_auto_meaning_the_same_device_reruns_nothing(at_one_and_two_cores):
    r = snakemake(at_one_and_two_cores[2], "-n", PRETRAINED, config={**CONFIG, "device": "auto"})
    assert r.returncode == 0 and "Nothing to be done" in r.stdout, r.stdout[-3000:]


@pytest.mark.parametrize("bad", [{"epochs": -2}, {"epochs": 0}, {"epochs": "three"}, {"lr": -1}, {"batch_size": 0},
                                 {"train_subset": 0}])
def test_a_bad_training_value_stops_before_any_job_and_keeps_the_results(at_one_and_two_cores, bad):
    work = at_one_and_two_cores[2]
    before = (work / PRETRAINED).read_bytes()
    hp = {"pretrain": {**CONFIG["hparams"]["pretrain"], **bad}}
    r = snakemake(work, PRETRAINED, config={**CONFIG, "hparams": hp})
    assert r.returncode != 0
    (key, value), = bad.items()
    errors = [line for line in r.stderr.splitlines() if line.startswith("wp: error:")]
    assert len(errors) == 1 and f"hparams.pretrain.{key}: {value!r}" in errors[0] and "allowed: " in errors[0]
    assert "rule pretrain" not in r.stdout + r.stderr
    assert (work / PRETRAINED).read_bytes() == before


def test_after_a_killed_snakemake_unlock_then_rerun_resumes_training(tmp_path):
    """README "A killed Snakemake": kill -9 the whole process group mid-training; the next run is refused
    (locked), `snakemake --unlock` then the same command resumes from the last finished epoch."""
    import os
    import signal
    import time

    work = copy_workflow(tmp_path)
    cfg = {**CONFIG, "threads": 1, "hparams": {"pretrain": {**CONFIG["hparams"]["pretrain"], "epochs": 4, "train_subset": 600}}}
    snakemake(work, "-n", PRETRAINED, config=cfg)  # writes config.yaml
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(work / "workflow" / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "config.yaml"), "--cores", "1", PRETRAINED]
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    resume = work / (PRETRAINED + ".resume")
    deadline = time.monotonic() + 600
    while not resume.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert resume.exists() and proc.poll() is None, "training never reached its first epoch's resume file"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    r = snakemake(work, PRETRAINED, config=cfg)
    assert r.returncode != 0 and "Directory cannot be locked" in r.stdout + r.stderr
    assert snakemake(work, "--unlock", config=cfg).returncode == 0
    r = snakemake(work, PRETRAINED, config=cfg)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = (work / "results" / "logs" / "pretrain" / "digits" / "tinyconv.log").read_text()
    assert "resuming from" in log and (work / PRETRAINED).exists() and not resume.exists()
