"""A real snakemake run of the whole DAG on the digits data, then dry runs that prove partial reruns."""


import pandas as pd
import pytest

from conftest import copy_workflow, planned, snakemake

pytestmark = pytest.mark.slow

CONFIG = {
    "recipe": "smoke",
    "device": "cpu",
    "threads": 1,
    "experiments": {"digits": ["tinyconv", "resnet_mlperf"]},
    "pool_sizes": [8, 16],
    "hparams": {
        "pretrain": {"epochs": 2, "batch_size": 32, "train_subset": 600, "test_subset": 200},
        "wp_train": {"epochs": 1, "batch_size": 32, "train_subset": 600, "test_subset": 200},
        "act_train": {"epochs": 1, "batch_size": 32, "train_subset": 600, "test_subset": 200},
    },
    "compare": {"methods": ["wp"]},  # the other methods run in tests/test_compare_workflow.py
    "sweeps": {"pool_size": 16, "table5": {"lut_bits": [16, 4]}, "table6": {"act_bits": [8, 4], "retrain_bits": [4]}},
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("wf"))
    r = snakemake(work, config=CONFIG)  # the default target: tables 3-6 and their plots
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work


def test_full_run_writes_table4(finished):
    df = pd.read_csv(finished / "tables" / "table4.csv")
    assert sorted(df.network) == ["resnet_mlperf", "tinyconv"]
    assert list(df.columns[:5]) == ["dataset", "network", "original", "wp8", "wp16"]
    assert (df[["original", "wp8", "wp16"]] > 10).all().all()  # above chance (10 classes)
    for rule in ("prepare", "pretrain", "cluster", "wp_train", "table4"):
        assert list((finished / "results" / "logs" / rule).rglob("*.log")) or (finished / "results" / "logs" / f"{rule}.log").exists()
    assert (finished / "tables" / "table4.md").exists()
    assert not snakemake(finished, "-n", "tables/table4.csv").stdout.count("rule pretrain")


def test_plots_and_html_report(finished):
    assert "Nothing to be done" in snakemake(finished, "-n", config=CONFIG).stdout
    pngs = [finished / "tables" / "plots" / n for n in ("accuracy_vs_pool_size.png", "training_curves.png",
                                                        "accuracy_vs_lut_bits.png", "accuracy_vs_act_bits.png")]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)
    r = snakemake(finished, "--report", "report.html", config=CONFIG)
    assert r.returncode == 0, r.stderr[-3000:]
    html = (finished / "report.html").read_text(errors="replace")
    for name in ("table4.csv", "table3.csv", "table5.csv", "table6.csv", "table8.csv", "accuracy_vs_pool_size.png",
                 "accuracy_vs_lut_bits.png", "accuracy_vs_act_bits.png"):
        assert name in html


def test_tables_3_5_6(finished):
    t5 = pd.read_csv(finished / "tables" / "table5.csv").set_index("network")
    assert list(t5.columns[:8]) == ["dataset", "k", "act_bits", "float", "paper_no_lut", "no_lut", "lut16", "lut4"]
    # a 16-bit table is lossless: the LUT network scores what float convs of the same codes score
    assert abs(t5.loc["tinyconv", "lut16"] - t5.loc["tinyconv", "no_lut"]) <= 0.1
    assert abs(t5.loc["resnet_mlperf", "lut16"] - t5.loc["resnet_mlperf", "no_lut"]) <= 1.0  # 2 of 200 images
    t6 = pd.read_csv(finished / "tables" / "table6.csv").set_index("network")
    assert {"a8", "a4", "a4_retrained", "min_bits"} <= set(t6.columns) and (t6["lut_bits"] == 8).all()
    assert (t6[["a8", "a4", "a4_retrained"]] > 10).all().all()
    t3 = pd.read_csv(finished / "tables" / "table3.csv").set_index("network")
    assert (t3["k"] == 16).all() and (t3["ratio_int8"] > 1).all() and (t3["ratio_fp32"] > t3["ratio_int8"]).all()
    assert (t3["pm_ratio"] > 1).all() and t3["notes"].str.contains("dataset digits").all()
    t8 = pd.read_csv(finished / "tables" / "table8.csv")
    assert set(t8["network"]) == {"tinyconv", "resnet_mlperf"} and (t8["avg_distinct"].between(1, 16)).all()
    for rule in ("quant_eval", "act_train"):
        assert list((finished / "results" / "logs" / rule).rglob("*.log"))
    ck = finished / "results" / "digits" / "tinyconv" / "retrain" / "wp16_a4.pt"
    assert ck.exists() and (finished / "results" / "digits" / "tinyconv" / "eval" / "wp16_a4" / "a4_lut8.json").exists()


def test_adding_a_lut_bit_width_schedules_only_its_column(finished):
    jobs = planned(finished, {**CONFIG, "sweeps": {**CONFIG["sweeps"], "table5": {"lut_bits": [16, 6, 4]}}})
    assert set(jobs) == {"quant_eval", "table5", "sweep_plots"}
    assert len(jobs["quant_eval"]) == 2 and all("lbits=6" in w and "abits=8" in w for w in jobs["quant_eval"])
    # 8-bit activations from the 8-bit table are already a point of table 6: nothing to evaluate
    assert "quant_eval" not in planned(finished, {**CONFIG, "sweeps": {**CONFIG["sweeps"], "table5": {"lut_bits": [16, 8, 4]}}})


def test_changing_table6_lut_bits_reevaluates_without_retraining(finished):
    jobs = planned(finished, {**CONFIG, "sweeps": {**CONFIG["sweeps"], "table6": {**CONFIG["sweeps"]["table6"], "lut_bits": None}}})
    # per network a4 and retrained a4 without a table; a8 without a table is table 5's no_lut point already
    assert set(jobs) == {"quant_eval", "table6", "sweep_plots"} and len(jobs["quant_eval"]) == 4
    assert all("lbits=none" in w for w in jobs["quant_eval"])


def test_adding_a_pool_size_schedules_only_that_pool(finished):
    jobs = planned(finished, {**CONFIG, "pool_sizes": [8, 16, 32]}, "tables/table4.csv")
    assert set(jobs) == {"cluster", "wp_train", "table4"}
    assert len(jobs["cluster"]) == len(jobs["wp_train"]) == 2
    assert all("k=32" in w for w in jobs["cluster"] + jobs["wp_train"])


def test_changing_retraining_epochs_of_one_network_reruns_only_its_wp_train(finished):
    cfg = {**CONFIG, "network_hparams": {"tinyconv": {"wp_train": {"epochs": 2}}}}
    jobs = planned(finished, cfg, "tables/table4.csv")
    assert set(jobs) == {"wp_train", "table4"}
    assert len(jobs["wp_train"]) == 2 and all("network=tinyconv" in w for w in jobs["wp_train"])


def test_editing_stage_code_reruns_that_stage_and_what_follows(finished):
    kmeans_py = finished / "wp" / "kmeans.py"
    original = kmeans_py.read_text()
    kmeans_py.write_text(original + "\n# an edit\n")  # Snakemake 9.18+ compares checksums, not only mtimes
    try:
        jobs = planned(finished, CONFIG, "tables/table4.csv")
    finally:
        kmeans_py.write_text(original)
    assert set(jobs) == {"cluster", "wp_train", "table4"} and len(jobs["cluster"]) == 4


def test_bad_config_is_one_clear_line(finished):
    r = snakemake(finished, "-n", config={**CONFIG, "pool_sizes": [1]})
    assert r.returncode != 0
    assert "pool_sizes.0: 1 is less than the minimum of 2" in r.stderr
    r = snakemake(finished, "-n", config={**CONFIG, "experiments": {"digits": ["resnet_99"]}})
    assert r.returncode != 0 and "unknown network 'resnet_99'" in r.stderr
    assert (finished / "tables" / "table4.csv").exists()
