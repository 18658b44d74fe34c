"""A real snakemake run of the comparison on the digits data: every method in tables/compare.csv,
then dry runs that prove a changed setting reruns only its own job."""


import pandas as pd
import pytest

from conftest import copy_workflow, planned, snakemake

pytestmark = pytest.mark.slow

SMALL = {"epochs": 1, "batch_size": 32, "train_subset": 600, "test_subset": 200}
CONFIG = {
    "recipe": "smoke",
    "device": "cpu",
    "threads": 1,
    "experiments": {"digits": ["tinyconv"]},
    "pool_sizes": [8],
    "hparams": {"pretrain": {**SMALL, "epochs": 2}, "wp_train": SMALL, "prune": SMALL, "ternary": SMALL, "valueset": SMALL},
    "compare": {
        "prune": {"sparsities": [0.8], "rounds": 2},
        "ternary": {"activations": [True]},
        "valueset": {"sets": ["pm1"]},
        "sharing": {"budgets": [0.99], "clusters": [2, 4, 16], "val_images": 200},
    },
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("cmp"))
    r = snakemake(work, "tables/compare.csv", config=CONFIG)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work


def test_compare_table_has_every_method(finished):
    df = pd.read_csv(finished / "tables" / "compare.csv", keep_default_na=False)
    assert list(df.columns[:8]) == ["dataset", "network", "method", "setting", "top1", "float_top1", "ratio_fp32", "ratio_int8"]
    assert {"retrain_epochs", "seconds", "device"} <= set(df.columns)
    assert list(zip(df.method, df.setting)) == [("float", ""), ("wp", "K=8"), ("prune", "0.8"), ("ternary", "weights_acts"),
                                                ("valueset", "pm1"), ("sharing", "0.99")]
    assert (df.top1 > 10).all()  # above chance (10 classes)
    assert (df.float_top1 == df.top1[0]).all()
    comp = df[df.method != "float"]
    assert (comp.ratio_fp32 > 1).all() and (comp.ratio_int8 > 1).all() and (comp.ratio_fp32 > comp.ratio_int8).all()
    assert df.set_index("method").retrain_epochs.to_dict() == {"float": 0, "wp": 1, "prune": 2, "ternary": 1, "valueset": 1, "sharing": 0}
    png = finished / "tables" / "plots" / "compare_pareto.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "| sharing | 0.99 |" in (finished / "tables" / "compare.md").read_text()
    for method in ("prune", "ternary", "valueset", "sharing"):
        assert list((finished / "results" / "logs" / "compare" / "digits" / "tinyconv" / method).glob("*.log"))
        assert list((finished / "results" / "benchmarks" / "compare" / "digits" / "tinyconv" / method).glob("*.tsv"))


def test_a_new_setting_schedules_only_its_job(finished):
    cfg = {**CONFIG, "compare": {**CONFIG["compare"], "prune": {"sparsities": [0.8, 0.5], "rounds": 2}}}
    jobs = planned(finished, cfg, "tables/compare.csv")
    assert set(jobs) == {"compare_train", "compare_table"}
    assert jobs["compare_train"] == ["wildcards: dataset=digits, network=tinyconv, method=prune, setting=0.5"]


def test_changed_method_options_rerun_only_that_method(finished):
    cfg = {**CONFIG, "compare": {**CONFIG["compare"], "sharing": {**CONFIG["compare"]["sharing"], "val_images": 100}}}
    assert set(planned(finished, cfg, "tables/compare.csv")) == {"compare_sharing", "compare_table"}
    cfg = {**CONFIG, "hparams": {**CONFIG["hparams"], "valueset": {**SMALL, "lr": 0.02}}}
    jobs = planned(finished, cfg, "tables/compare.csv")
    assert set(jobs) == {"compare_train", "compare_table"} and all("method=valueset" in w for w in jobs["compare_train"])


def test_report_includes_the_comparison(finished):
    r = snakemake(finished, "--report", "report.html", "tables/compare.csv", config=CONFIG)
    assert r.returncode == 0, r.stderr[-3000:]
    html = (finished / "report.html").read_text(errors="replace")
    assert "compare.csv" in html and "compare_pareto.png" in html
