"""A dataset of the user's own, one .npz file of arrays named under ``datasets``, is prepared and
trained on like the built-in ones; every problem with the file is one line."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import copy_workflow, planned, snakemake
from sklearn.datasets import load_digits

from wp import WPError, config, data
from wp.data import augment_for, registry


@pytest.fixture(autouse=True)
def registry_restored(monkeypatch):
    """Datasets registered by a test are forgotten after it (the registry is per process)."""
    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))


def digits_arrays(channels_last: bool = False) -> dict:
    bunch = load_digits()
    x = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    if channels_last:
        x = np.repeat(x[..., None], 3, axis=3)
    y = bunch.target
    return {"x_train": x[:1400], "y_train": y[:1400], "x_test": x[1400:], "y_test": y[1400:]}


def save(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_an_npz_file_is_prepared_into_the_cached_dataset(tmp_path):
    npz = save(tmp_path / "mine.npz", **digits_arrays(channels_last=True))
    names = [f"class_{i}" for i in range(10)]
    options = {"npz": str(npz), "classes": names, "augment": {"crop_padding": 1}}
    summary = data.prepare("mine", tmp_path, tmp_path / "mine.h5", options=options)
    assert (summary["train"], summary["test"]) == (1400, 397)
    ds = data.read(tmp_path / "mine.h5")
    assert (ds.channels, ds.image_size, ds.classes) == (3, 8, names)
    assert ds.train.images.shape == (1400, 3, 8, 8)
    assert np.array_equal(ds.train.images[5, 2], digits_arrays()["x_train"][5])  # channels-last read right
    assert np.array_equal(ds.test.labels, load_digits().target[1400:])
    prov = json.loads(ds.attrs["provenance"])
    assert prov["sha256"]["mine.npz"] and prov["augment"] == {"crop_padding": 1, "flip": False}
    assert augment_for(ds) == {"crop_padding": 1, "flip": False}  # known to a later stage's process too
    registry._DATASETS.pop("mine", None)
    assert augment_for(ds) == {"crop_padding": 1, "flip": False}


def good():
    return digits_arrays()


@pytest.mark.parametrize("arrays, message", [
    ({k: v for k, v in good().items() if k != "y_test"}, "lacks y_test: save it with np.savez"),
    ({**good(), "x_train": good()["x_train"].astype(np.float32) / 255}, "is float32, not uint8"),
    ({**good(), "x_train": good()["x_train"][:, :, :6]}, "images are 8x6: the networks take square images"),
    ({**good(), "y_train": good()["y_train"][:100]}, "y_train must be 1400 integer labels"),
    ({**good(), "y_test": -good()["y_test"] - 1}, "has negative labels"),
    ({**good(), "x_test": good()["x_test"][:, :4, :4]}, "store both splits at one size"),
])
def test_a_bad_npz_file_is_one_clear_line(tmp_path, arrays, message):
    npz = save(tmp_path / "mine.npz", **arrays)
    out = tmp_path / "mine.h5"
    out.write_bytes(b"an earlier result")
    with pytest.raises(WPError) as err:
        data.prepare("mine", tmp_path, out, options={"npz": str(npz)})
    assert message in str(err.value) and "\n" not in str(err.value)
    assert out.read_bytes() == b"an earlier result"  # never touched


def test_missing_damaged_and_misnamed_files_are_one_line(tmp_path):
    with pytest.raises(WPError, match="dataset file .*nowhere.npz not found: fix the npz path under datasets"):
        data.prepare("mine", tmp_path, tmp_path / "o.h5", options={"npz": str(tmp_path / "nowhere.npz")})
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(WPError, match="is not a readable .npz file"):
        data.prepare("mine", tmp_path, tmp_path / "o.h5", options={"npz": str(junk)})
    npz = save(tmp_path / "mine.npz", **good())
    with pytest.raises(WPError, match="labels go up to 9 but datasets.mine.classes names only 2 classes"):
        data.prepare("mine", tmp_path, tmp_path / "o.h5", options={"npz": str(npz), "classes": ["a", "b"]})
    with pytest.raises(WPError, match="'digits' is a built-in dataset: give yours another name"):
        config.validate({"datasets": {"digits": {"npz": str(npz)}}, "experiments": {"digits": ["tinyconv"]}})
    with pytest.raises(WPError, match="may hold only lowercase letters, digits and _"):
        config.validate({"datasets": {"Mine": {"npz": str(npz)}}, "experiments": {"Mine": ["tinyconv"]}})
    with pytest.raises(WPError, match=r"config: datasets.mine: 'npz' is a required property"):
        config.validate({"datasets": {"mine": {"path": str(npz)}}, "experiments": {"mine": ["tinyconv"]}})
    cfg = config.validate({"datasets": {"mine": {"npz": str(npz)}}, "experiments": {"mine": ["tinyconv"]}})
    assert cfg["experiments"] == {"mine": ["tinyconv"]}


@pytest.mark.slow
def test_the_workflow_trains_on_a_dataset_of_ones_own_and_reprepares_when_the_file_changes(tmp_path):
    work = copy_workflow(tmp_path)
    save(work / "mine.npz", **good())
    cfg = {
        "recipe": "smoke", "device": "cpu", "threads": 1, "pool_sizes": [8],
        "datasets": {"mine": {"npz": "mine.npz", "augment": {"crop_padding": 1}}},
        "experiments": {"mine": ["tinyconv"]}, "compare": {"networks": []},
        "hparams": {stage: {"epochs": 1, "batch_size": 32, "train_subset": 400, "test_subset": 100}
                    for stage in ("pretrain", "wp_train")},
    }
    r = snakemake(work, "tables/table4.csv", config=cfg)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    t4 = pd.read_csv(work / "tables" / "table4.csv")
    assert list(t4["dataset"]) == ["mine"] and 0 < t4["wp8"].iloc[0] <= 100
    assert "Nothing to be done" in snakemake(work, "-n", "tables/table4.csv", config=cfg).stdout
    arrays = good()
    save(work / "mine.npz", **{**arrays, "x_train": 255 - arrays["x_train"]})  # new pixels, same name
    assert {"prepare", "pretrain", "cluster", "wp_train", "table4"} <= set(planned(work, cfg, "tables/table4.csv"))
