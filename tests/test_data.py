import gzip
import struct

import numpy as np
import pytest

from wp import WPError, data
from wp.data import fashion_mnist
from wp.data.idx import read_idx


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
