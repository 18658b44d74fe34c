"""A valid file passed in the wrong place is named for what it is, with what was expected; only a
damaged file is called damaged, and only then is deleting it advised (issue 14)."""

import subprocess
import sys

import pytest
import torch

from conftest import REPO, stage_kw
from wp import WPError, checkpoint, data, models
from wp.io import write_json
from wp import poolfile
from wp.stages import cluster


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_h5):
    d = tmp_path_factory.mktemp("files")
    torch.manual_seed(0)
    args = {"in_channels": 1, "num_classes": 10, "image_size": 8}
    checkpoint.save(d / "pretrained.pt", models.create("tinyconv", **args), network="tinyconv", dataset="digits",
                    model_args=args)
    cluster.run(d / "pretrained.pt", "tinyconv", 8, d / "pool8.h5", **stage_kw("cluster", seed=0, device="cpu"))
    write_json(d / "pretrained.json", {"stage": "pretrain"})
    torch.save({"weights": torch.zeros(3)}, d / "foreign.pt")
    return {"pt": d / "pretrained.pt", "pool": d / "pool8.h5", "json": d / "pretrained.json", "data": digits_h5,
            "foreign": d / "foreign.pt"}


def refused(fn, path) -> str:
    with pytest.raises(WPError) as err:
        fn(path)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("passed,reader,is_,expected", [
    ("pt", poolfile.read, "a wp-checkpoint/1 file (float tinyconv on digits)", "not a pool file (wp-pool/1): pass the pool file that the cluster stage writes"),
    ("data", poolfile.read, "a wp-dataset/1 file", "not a pool file (wp-pool/1)"),
    ("json", poolfile.read, "a JSON (text) file", "not a pool file (wp-pool/1)"),
    ("pool", checkpoint.load, "a wp-pool/1 file", "not a wp checkpoint (wp-checkpoint/1): pass a checkpoint that a training stage writes"),
    ("data", checkpoint.load, "a wp-dataset/1 file", "not a wp checkpoint"),
    ("json", checkpoint.load, "a JSON (text) file", "not a wp checkpoint"),
    ("foreign", checkpoint.load, "a torch file not written by wp", "not a wp checkpoint"),
    ("pt", data.read, "a wp-checkpoint/1 file (float tinyconv on digits)", "not a dataset file (wp-dataset/1): pass the dataset file that the prepare stage writes"),
])
def test_a_valid_file_in_the_wrong_place_is_named_never_called_corrupt(files, passed, reader, is_, expected):
    msg = refused(reader, files[passed])
    assert f"{files[passed]} is {is_}, {expected}" in msg
    assert "delete" not in msg and "corrupt" not in msg and "damaged" not in msg


@pytest.mark.parametrize("kind,reader,stage", [("pt", checkpoint.load, "the stage that writes it"),
                                               ("pool", poolfile.read, "the cluster stage")])
def test_only_a_damaged_file_is_called_damaged(files, tmp_path, kind, reader, stage):
    whole = files[kind].read_bytes()
    for cut in (len(whole) // 2, len(whole) - 64):
        broken = tmp_path / files[kind].name
        broken.write_bytes(whole[:cut])
        msg = refused(reader, broken)
        assert f"{broken} is a damaged" in msg and f"delete it and rerun {stage}" in msg


def test_the_cli_names_a_checkpoint_passed_as_the_pool(files, digits_h5, tmp_path):
    """`wp_train --pool pretrained.pt` (the issue's example): exit 2, one line, the file untouched."""
    before = files["pt"].read_bytes()
    r = subprocess.run([sys.executable, "-m", "wp", "wp_train", "--data", str(digits_h5), "--checkpoint", str(files["pt"]),
                        "--pool", str(files["pt"]), "--network", "tinyconv", "--device", "cpu",
                        "--out", str(tmp_path / "wp8.pt"), "--metrics", str(tmp_path / "wp8.json")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "is a wp-checkpoint/1 file (float tinyconv on digits), not a pool file" in r.stderr and "delete" not in r.stderr
    assert files["pt"].read_bytes() == before and not (tmp_path / "wp8.pt").exists()
