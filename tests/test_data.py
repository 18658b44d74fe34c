import gzip
import struct

import numpy as np
import pytest

from wp import WPError, data
from wp.data import fashion_mnist
from wp.data.idx import read_idx
from conftest import REPO


def write_idx(path, array, compress=True):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    raw = header + array.tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def fake_fashion_mnist(root, n_train=40, n_test=20, compress=True):
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), compress)
        write_idx(raw / f"{part}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), compress)
    return raw


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_from_torchvision_layout(tmp_path, compress, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "absent")
    fake_fashion_mnist(tmp_path / "data", compress=compress)
    out = tmp_path / "fm.h5"
    data.prepare("fashion_mnist", tmp_path / "data", out)
    ds = data.read(out)
    assert ds.train.images.shape == (40, 1, 28, 28) and ds.train.images.dtype == np.uint8
    assert ds.test.labels.tolist() == [i % 10 for i in range(20)]
    assert ds.num_classes == 10 and ds.channels == 1 and ds.image_size == 28
    assert "sha256" in ds.attrs["provenance"]


def test_missing_fashion_mnist_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(WPError, match="Fashion-MNIST not found.*apt-get install dataset-fashion-mnist"):
        data.prepare("fashion_mnist", tmp_path / "nothing", tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_truncated_idx_file_is_reported(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    write_idx(p, np.zeros((4, 28, 28), np.uint8), compress=False)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(WPError, match="truncated"):
        read_idx(p)
    p.write_bytes(b"garbage!")
    with pytest.raises(WPError, match="not an IDX file"):
        read_idx(p)


def test_digits_split_is_stratified_and_seeded(digits_h5, tmp_path):
    ds = data.read(digits_h5)
    assert len(ds.train.labels) + len(ds.test.labels) == 1797
    assert ds.train.images.shape[1:] == (1, 8, 8) and ds.train.images.max() == 255
    counts = np.bincount(ds.test.labels)
    assert counts.min() >= 34 and counts.max() <= 38
    again = tmp_path / "again.h5"
    data.prepare("digits", tmp_path, again, seed=0)
    assert np.array_equal(data.read(again).test.images, ds.test.images)


def test_unknown_dataset(tmp_path):
    with pytest.raises(WPError, match="unknown dataset 'mnist3d'"):
        data.prepare("mnist3d", tmp_path, tmp_path / "x.h5")


def test_failed_prepare_keeps_existing_output(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "absent")
    out = tmp_path / "fm.h5"
    out.write_bytes(b"previous result")
    with pytest.raises(WPError):
        data.prepare("fashion_mnist", tmp_path / "nothing", out)
    assert out.read_bytes() == b"previous result"
    assert list(tmp_path.glob(".*tmp")) == []


def test_corrupt_dataset_file(tmp_path):
    p = tmp_path / "bad.h5"
    p.write_bytes(b"not hdf5")
    with pytest.raises(WPError, match="corrupt"):
        data.read(p)
    with pytest.raises(WPError, match="missing"):
        data.read(tmp_path / "none.h5")


@pytest.mark.skipif(not fashion_mnist.DEBIAN_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian(tmp_path):
    out = tmp_path / "fm.h5"
    data.prepare("fashion_mnist", tmp_path / "empty", out)
    ds = data.read(out)
    assert len(ds.train.labels) == 60_000 and len(ds.test.labels) == 10_000
    assert np.bincount(ds.test.labels).tolist() == [1_000] * 10


# --- data selection (wp.selection): one home, recorded in checkpoints, digests of the images scored ---

def test_selection_subsets_holdout_and_seeds(digits_h5):
    from wp import selection
    from wp.train import hparams

    ds = data.read(digits_h5)
    sel = selection.select(ds, hparams({"train_subset": 400, "test_subset": 100, "selection": "best_val", "val_fraction": 0.25}),
                           3, "pretrain")
    assert len(sel.train) == 300 and len(sel.val) == 100 and len(sel.test) == 100
    assert not set(sel.train) & set(sel.val) and np.array_equal(sel.training_pool(), np.union1d(sel.train, sel.val))
    assert np.bincount(ds.train.labels[sel.training_pool()]).tolist() == [40] * 10  # class-balanced subset
    assert np.bincount(ds.test.labels[sel.test]).tolist() == [10] * 10
    again = selection.select(ds, hparams({"train_subset": 400, "test_subset": 100, "selection": "best_val", "val_fraction": 0.25}),
                             3, "pretrain")
    other = selection.select(ds, hparams({"train_subset": 400, "test_subset": 100}), 4, "pretrain")
    assert np.array_equal(sel.train, again.train) and np.array_equal(sel.test, again.test)
    assert not np.array_equal(sel.test, other.test) and other.val is None and len(other.train) == 400


def test_selection_settings_are_their_own_group(digits_h5):
    import re

    import yaml

    from wp import recipes, selection, settings, train

    keys = set(selection.KEYS)
    assert keys == {"train_subset", "test_subset", "selection", "val_fraction"} and keys <= set(train.HPARAM_DEFAULTS)
    schema = yaml.safe_load(settings.schema_path().read_text())
    training = schema["definitions"]["training"]["properties"]
    assert all(training[k]["description"].startswith("data selection:") for k in keys)
    hp = recipes.resolve({"recipe": "smoke", "hparams": {"wp_train": {"test_subset": 50}}}, "wp_train", "tinyconv")
    assert selection.settings(hp) == {"train_subset": 2000, "test_subset": 50, "selection": "final", "val_fraction": 0.1}
    with pytest.raises(WPError, match="lack the selection settings test_subset"):
        selection.settings({"train_subset": 3, "selection": "final", "val_fraction": 0.1})
    # no module but wp.selection reads them (wp.recipes only sets their values)
    for path in sorted((REPO / "wp").rglob("*.py")):
        if path.name != "selection.py":
            assert not re.search(r"""\[["'](train_subset|test_subset|val_fraction)["']\](?!\s*=[^=])""", path.read_text()), path


def test_selection_is_recorded_in_the_checkpoint_and_old_ones_name_the_rerun(digits_h5, tmp_path):
    import torch

    from wp import checkpoint, models, selection
    from wp.train import hparams

    ds = data.read(digits_h5)
    sel = selection.select(ds, hparams({"train_subset": 200, "selection": "best_val"}), 0, "wp_train")
    args = data.model_args(ds)
    checkpoint.save(tmp_path / "a.pt", models.create("tinyconv", **args), network="tinyconv", dataset=ds.name,
                    model_args=args, kind="pooled", selection=selection.record(sel))
    ckpt = checkpoint.load(tmp_path / "a.pt")  # weights_only
    assert ckpt["selection"]["test"].dtype == torch.int64
    back = selection.recorded(ckpt, tmp_path / "a.pt")
    assert (back.stage, back.seed, back.settings) == ("wp_train", 0, sel.settings)
    assert all(np.array_equal(getattr(back, f), getattr(sel, f)) for f in ("train", "val", "test"))
    for extra, stage in (({"kind": "float"}, "pretrain"), ({"kind": "pooled"}, "wp_train"),
                         ({"kind": "pooled", "act_bits": 4}, "act_train"), ({"kind": "compressed"}, "compare")):
        with pytest.raises(WPError, match=rf"old.pt records no data selection .*: rerun {stage} \(snakemake --forcerun {stage}\)$"):
            selection.recorded({**{k: v for k, v in ckpt.items() if k != "selection"}, **extra}, "old.pt")


def test_digest_names_the_images_and_labels_scored(digits_h5):
    import hashlib
    import json

    import torch

    from wp import selection
    from wp.train import Tensors

    ds = data.read(digits_h5)
    idx = np.arange(5, 60, 3)
    t = selection.images(ds.test, idx, torch.device("cpu"))
    # the documented formula, computed independently from the data file's arrays
    imgs, labels = ds.test.images[idx], ds.test.labels[idx]
    h = hashlib.sha256(json.dumps([list(imgs.shape), "torch.uint8"]).encode())
    h.update(np.ascontiguousarray(imgs).tobytes())
    h.update(labels.astype(np.int64).tobytes())
    assert selection.digest(t) == f"sha256:{h.hexdigest()}"
    same = selection.images(data.read(digits_h5).test, idx.copy(), torch.device("cpu"))  # the same images, loaded again
    assert selection.digest(same) == selection.digest(t)
    assert selection.digest(selection.images(ds.test, idx + 1, torch.device("cpu"))) != selection.digest(t)  # other images
    assert selection.digest(selection.images(ds.test, idx[:-1], torch.device("cpu"))) != selection.digest(t)  # one fewer
    assert selection.digest(Tensors(t.images, t.labels.roll(1))) != selection.digest(t)  # other labels
