"""CIFAR-10 and QuickDraw-100 from small fixtures in the exact upstream file formats (no network).

CIFAR-10: Python-2 pickles (str keys, which Python 3 reads as b"data"... with encoding="bytes") in
``cifar-10-batches-py/``; QuickDraw: numpy_bitmap ``.npy`` files, (N, 784) uint8 per class. Downloads
are exercised through ``file://`` URLs and a loopback HTTP server."""

import hashlib
import http.server
import io
import pickle
import socket
import struct
import tarfile
import threading

import h5py
import numpy as np
import pytest

from wp import WPError, data
from wp.data import cifar10, quickdraw
from wp.io import sha256

# ------------------------------------------------------------------------------------------ CIFAR-10


def _py2(obj) -> bytes:
    """Pickle opcodes for ``obj`` as Python 2's cPickle wrote the CIFAR batches: bytes are py2 ``str``."""
    if isinstance(obj, bytes):
        return (b"U" + bytes([len(obj)]) + obj) if len(obj) < 256 else (b"T" + struct.pack("<i", len(obj)) + obj)
    if isinstance(obj, bool) or not isinstance(obj, (int, list, dict, np.ndarray)):
        raise TypeError(type(obj))
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, list):
        return b"](" + b"".join(_py2(x) for x in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2(k) + _py2(v) for k, v in obj.items()) + b"u"
    return pickle.dumps(obj, protocol=2)[2:-1]  # the array's own opcodes, without PROTO and STOP


def py2_pickle(obj) -> bytes:
    return b"\x80\x02" + _py2(obj) + b"."


def fake_cifar(root, n_train_batch=6, n_test=9, seed=0):
    """``root/cifar-10-batches-py`` with five training batches, a test batch and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else n_train_batch
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in (np.arange(n) + i) % 10]
        batches[name] = (x, y)
        (folder / name).write_bytes(py2_pickle({
            b"batch_label": f"batch {name}".encode(), b"labels": y, b"data": x,
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n)],
        }))
    (folder / "batches.meta").write_bytes(py2_pickle({
        b"num_cases_per_batch": n_train_batch, b"label_names": [c.encode() for c in cifar10.CLASSES], b"num_vis": 3072,
    }))
    return folder, batches


def make_tarball(src_root, dest):
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src_root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return dest


def test_fixture_is_the_upstream_pickle_format(tmp_path):
    folder, batches = fake_cifar(tmp_path)
    with open(folder / "data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")  # how the CIFAR page says to read it in Python 3
    assert set(d) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert d[b"data"].dtype == np.uint8 and d[b"data"].shape == (6, 3072) and d[b"labels"] == batches["data_batch_1"][1]
    with open(folder / "batches.meta", "rb") as f:
        assert pickle.load(f, encoding="latin1")["label_names"][0] == "airplane"


def test_cifar10_from_prestaged_folder(tmp_path):
    _, batches = fake_cifar(tmp_path / "data")
    out = tmp_path / "cifar.h5"
    summary = data.prepare("cifar10", tmp_path / "data", out, options={"verify": False, "download": False})
    ds = data.read(out)
    assert ds.train.images.shape == (30, 3, 32, 32) and ds.train.images.dtype == np.uint8
    assert ds.test.images.shape == (9, 3, 32, 32) and ds.test.labels.dtype == np.int64
    x, y = batches["test_batch"]  # every test image, in file order, channel-first
    assert np.array_equal(ds.test.images, x.reshape(-1, 3, 32, 32)) and ds.test.labels.tolist() == y
    x2, y2 = batches["data_batch_2"]
    assert np.array_equal(ds.train.images[6:12], x2.reshape(-1, 3, 32, 32)) and ds.train.labels[6:12].tolist() == y2
    assert ds.classes == list(cifar10.CLASSES) and ds.channels == 3 and ds.image_size == 32
    assert set(summary["sha256"]) == set(cifar10.FILES) and summary["md5_verified"] is False
    assert data.get("cifar10").augment == {"crop_padding": 4, "flip": True} and data.get("cifar10").paper_name == "cifar10"


def test_cifar10_md5_check_rejects_non_original_files(tmp_path):
    fake_cifar(tmp_path / "data")
    with pytest.raises(WPError, match=r"fail their md5 check \(data_batch_1, .*test_batch, batches.meta\).*verify: false"):
        data.prepare("cifar10", tmp_path / "data", tmp_path / "c.h5", options={"download": False})
    assert not (tmp_path / "c.h5").exists()


def test_cifar10_missing_offline_names_files_place_and_url(tmp_path):
    with pytest.raises(WPError) as err:
        data.prepare("cifar10", tmp_path / "data", tmp_path / "c.h5", options={"download": False})
    msg = str(err.value)
    assert "\n" not in msg and "data_batch_1" in msg and "test_batch" in msg and "batches.meta" in msg
    assert str(tmp_path / "data" / "cifar-10-batches-py") in msg and cifar10.URL in msg
    assert str(tmp_path / "data" / "cifar-10-python.tar.gz") in msg
    # a failing download (here: a file:// URL to nothing) says so, leaves no partial archive behind
    url = (tmp_path / "nowhere.tar.gz").as_uri()
    with pytest.raises(WPError, match=r"CIFAR-10 files missing .*download failed.*nowhere\.tar\.gz"):
        data.prepare("cifar10", tmp_path / "data", tmp_path / "c.h5", options={"url": url})
    assert not list((tmp_path / "data").glob("*.part")) and not (tmp_path / "c.h5").exists()


def test_cifar10_download_and_extract_through_file_url(tmp_path):
    _, batches = fake_cifar(tmp_path / "mirror")
    tarball = make_tarball(tmp_path / "mirror", tmp_path / "cifar-10-python.tar.gz")
    out = tmp_path / "c.h5"
    data.prepare("cifar10", tmp_path / "data", out, options={"verify": False, "url": tarball.as_uri()})
    assert (tmp_path / "data" / "cifar-10-python.tar.gz").is_file()
    assert not list((tmp_path / "data").glob("*.part"))
    assert np.array_equal(data.read(out).test.images, batches["test_batch"][0].reshape(-1, 3, 32, 32))
    # a pre-staged archive is extracted without any download
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "cifar-10-python.tar.gz").write_bytes(tarball.read_bytes())
    data.prepare("cifar10", staged, tmp_path / "c2.h5", options={"verify": False, "download": False})
    assert np.array_equal(data.read(tmp_path / "c2.h5").train.images, data.read(out).train.images)


def test_cifar10_reads_files_whose_md5_matches(tmp_path, monkeypatch):
    folder, batches = fake_cifar(tmp_path / "data")
    table = {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in cifar10.FILES}
    monkeypatch.setattr(cifar10, "_md5_table", lambda: {**table, cifar10.ARCHIVE: "0" * 32})
    summary = data.prepare("cifar10", tmp_path / "data", tmp_path / "c.h5", options={"download": False})
    assert summary["md5_verified"] is True and data.read(tmp_path / "c.h5").train.labels.tolist()[:6] == batches["data_batch_1"][1]
    (folder / "data_batch_4").write_bytes((folder / "data_batch_4").read_bytes()[:-1] + b"!")
    with pytest.raises(WPError, match=r"fail their md5 check \(data_batch_4\)"):
        data.prepare("cifar10", tmp_path / "data", tmp_path / "c.h5", options={"download": False})


def test_cifar10_unreadable_batch_and_bad_option(tmp_path):
    folder, _ = fake_cifar(tmp_path / "data")
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(WPError, match="CIFAR-10 train batches .* could not be read"):
        data.prepare("cifar10", tmp_path / "data", tmp_path / "c.h5", options={"verify": False})
    with pytest.raises(WPError, match="unknown cifar10 option.*classes"):
        data.prepare("cifar10", tmp_path / "data", tmp_path / "c.h5", options={"classes": ["a"]})


# ------------------------------------------------------------------------------------- QuickDraw-100

CLASSES = ["cat", "baseball_bat", "t-shirt"]
SMALL = {"classes": CLASSES, "per_class": 10, "train_per_class": 7, "download": False}


def bitmaps(class_id: int, n: int) -> np.ndarray:
    """(n, 784) uint8 rows that say where they came from: pixel 0 = class id + 1, pixels 1-2 = row number."""
    rng = np.random.default_rng(100 + class_id)
    x = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    x[:, 0] = class_id + 1
    x[:, 1], x[:, 2] = np.arange(n) % 256, np.arange(n) // 256
    return x


def stage(directory, classes=CLASSES, n=50, google_names=False):
    directory.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(classes):
        fname = name.replace("_", " ") if google_names else name
        np.save(directory / f"{fname}.npy", bitmaps(i, n))
    return directory


def origin(images):
    """(class id, row number) of each image made by ``bitmaps``."""
    flat = images.reshape(len(images), -1).astype(np.int64)
    return flat[:, 0] - 1, flat[:, 1] + 256 * flat[:, 2]


def h5_content(path):
    content = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: content.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        attrs = dict(f.attrs)
    return content, attrs


def qd(tmp_path, out_name="qd.h5", seed=0, **options):
    out = tmp_path / out_name
    summary = data.prepare("quickdraw100", tmp_path / "data", out, seed=seed, options={**SMALL, **options})
    return data.read(out), summary


def test_class_list_and_url_encoding():
    assert len(quickdraw.CLASSES) == 100 == len(set(quickdraw.CLASSES))
    assert quickdraw.CLASSES[:3] == ("drums", "sun", "laptop") and quickdraw.CLASSES[-1] == "bicycle"
    assert quickdraw.CLASSES.index("t-shirt") == 63 and data.get("quickdraw100").classes == quickdraw.CLASSES
    assert quickdraw.url_for(quickdraw.URL_TEMPLATE, "baseball_bat").endswith("/numpy_bitmap/baseball%20bat.npy")
    assert quickdraw.url_for(quickdraw.URL_TEMPLATE, "t-shirt").endswith("/numpy_bitmap/t-shirt.npy")
    spec = data.get("quickdraw100")
    assert spec.augment == {} and spec.channels == 1 and spec.image_size == 28 and spec.paper_name == "quickdraw100"


def test_quickdraw_labels_counts_and_provenance(tmp_path):
    src = stage(tmp_path / "src")
    ds, summary = qd(tmp_path, source_dir=str(src))
    assert ds.classes == CLASSES and ds.channels == 1 and ds.image_size == 28
    assert ds.train.images.shape == (21, 1, 28, 28) and ds.test.images.shape == (9, 1, 28, 28)
    assert np.bincount(ds.train.labels).tolist() == [7, 7, 7] and np.bincount(ds.test.labels).tolist() == [3, 3, 3]
    for split in (ds.train, ds.test):
        cls, _ = origin(split.images)
        assert np.array_equal(cls, split.labels)  # label = position of the class file in the class list
    cls = np.concatenate([origin(ds.train.images)[0], origin(ds.test.images)[0]])
    rows = np.concatenate([origin(ds.train.images)[1], origin(ds.test.images)[1]])
    for c in range(3):
        assert len(set(rows[cls == c])) == 10  # drawn without replacement
    prov = summary
    assert prov["classes"] == CLASSES and prov["seed"] == 0 and prov["split"] == "stratified"
    assert prov["sha256"]["baseball_bat.npy"] == sha256(src / "baseball_bat.npy")
    assert set(prov["sha256"]) == {"cat.npy", "baseball_bat.npy", "t-shirt.npy"} and prov["drawings"]["cat"] == 50
    # the class list's order defines the labels
    stage(tmp_path / "src2", classes=CLASSES[::-1])  # same content per name, listed in reverse
    ds2, _ = qd(tmp_path, "qd2.h5", source_dir=str(tmp_path / "src2"), classes=CLASSES[::-1])
    assert ds2.classes == CLASSES[::-1]
    assert np.array_equal(origin(ds2.train.images)[0], ds2.train.labels)


def test_quickdraw_is_deterministic_and_seed_dependent(tmp_path):
    src = stage(tmp_path / "src", google_names=True)  # Google's own file names ("baseball bat.npy") are found too
    qd(tmp_path, "a.h5", seed=3, source_dir=str(src))
    qd(tmp_path, "b.h5", seed=3, source_dir=str(src))
    qd(tmp_path, "c.h5", seed=4, source_dir=str(src))
    (a, attrs_a), (b, attrs_b), (c, _) = (h5_content(tmp_path / n) for n in ("a.h5", "b.h5", "c.h5"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a) and attrs_a == attrs_b
    assert not np.array_equal(a["train/images"], c["train/images"])
    assert np.array_equal(a["train/labels"], c["train/labels"])


def test_quickdraw_reference_split(tmp_path):
    src = stage(tmp_path / "src")
    ds, summary = qd(tmp_path, source_dir=str(src), split="reference")
    strat, _ = qd(tmp_path, "s.h5", source_dir=str(src))
    assert len(ds.train.labels) == 21 and len(ds.test.labels) == 9 and summary["split"] == "reference"
    assert np.array_equal(origin(ds.test.images)[0], ds.test.labels)
    # the same 30 sampled drawings as the stratified split, divided by one global permutation
    drawn = lambda *splits: sorted(pair for s in splits for pair in zip(*(v.tolist() for v in origin(s.images))))  # noqa: E731
    assert len(drawn(ds.train, ds.test)) == 30 and drawn(ds.train, ds.test) == drawn(strat.train, strat.test)
    assert np.bincount(np.concatenate([ds.train.labels, ds.test.labels])).tolist() == [10, 10, 10]
    again, _ = qd(tmp_path, "r2.h5", source_dir=str(src), split="reference")
    assert np.array_equal(again.test.images, ds.test.images)


def test_quickdraw_download_from_file_url(tmp_path):
    remote = stage(tmp_path / "remote", google_names=True)  # the server's names have spaces: %20 in the URL
    local = stage(tmp_path / "local")
    template = remote.as_uri() + "/{name}.npy"
    ds, summary = qd(tmp_path, "dl.h5", url_template=template, download=True)
    target = tmp_path / "data" / "quickdraw" / "numpy_bitmap"  # the default source_dir
    assert sorted(p.name for p in target.iterdir()) == ["baseball_bat.npy", "cat.npy", "t-shirt.npy"]
    ref, _ = qd(tmp_path, "local.h5", source_dir=str(local))
    assert np.array_equal(ds.train.images, ref.train.images) and np.array_equal(ds.test.labels, ref.test.labels)
    assert summary["url_template"] == template


class RangeHandler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    log: list = []
    fail_first: set = set()

    def do_GET(self):  # noqa: N802
        name = self.path.rsplit("/", 1)[-1]
        self.log.append((name, self.headers.get("Range")))
        if name in self.fail_first:
            self.fail_first.discard(name)
            self.send_error(503)
            return
        if name not in self.files:
            self.send_error(404)
            return
        body, start = self.files[name], 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    RangeHandler.files, RangeHandler.log, RangeHandler.fail_first = {}, [], set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", RangeHandler
    server.shutdown()
    server.server_close()


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_quickdraw_http_download_resumes_and_retries(tmp_path, http_server):
    base, handler = http_server
    for i, name in enumerate(CLASSES):
        handler.files[name.replace("_", "%20") + ".npy"] = npy_bytes(bitmaps(i, 50))
    target = tmp_path / "data" / "quickdraw" / "numpy_bitmap"
    target.mkdir(parents=True)
    cat = handler.files["cat.npy"]
    (target / "cat.npy.part").write_bytes(cat[:1000])  # an interrupted earlier download
    handler.fail_first = {"t-shirt.npy"}  # one transient server error
    ds, _ = qd(tmp_path, url_template=base + "/{name}.npy", download=True, backoff_s=0)
    assert ("cat.npy", "bytes=1000-") in handler.log
    assert [n for n, _ in handler.log].count("t-shirt.npy") == 2
    assert (target / "cat.npy").read_bytes() == cat and not list(target.glob("*.part"))
    assert np.bincount(ds.test.labels).tolist() == [3, 3, 3]
    # an unknown class is a 404: named, not retried
    with pytest.raises(WPError, match=r"1 of 4 class files missing .*\(nosuch\.npy\).*HTTP 404"):
        qd(tmp_path, "x.h5", url_template=base + "/{name}.npy", download=True, backoff_s=0, classes=CLASSES + ["nosuch"])
    assert [n for n, _ in handler.log].count("nosuch.npy") == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_quickdraw_offline_fails_fast_with_one_line(tmp_path):
    classes = [f"class_{i}" for i in range(7)]
    template = f"http://127.0.0.1:{closed_port()}/{{name}}.npy"
    with pytest.raises(WPError) as err:
        qd(tmp_path, classes=classes, url_template=template, download=True, backoff_s=0)
    msg = str(err.value)
    where = str(tmp_path / "data" / "quickdraw" / "numpy_bitmap")
    assert "\n" not in msg and "7 of 7 class files missing" in msg and "no network" in msg
    assert "class_0.npy, class_1.npy, class_2.npy, class_3.npy, class_4.npy and 2 more" in msg
    assert where in msg and template in msg and "class%200.npy" in msg
    with pytest.raises(WPError, match=r"3 of 3 class files missing .*downloading is off.*storage\.googleapis\.com"):
        qd(tmp_path)
    assert not (tmp_path / "qd.h5").exists()


def test_quickdraw_bad_files_are_named(tmp_path):
    src = stage(tmp_path / "src")
    (src / "cat.npy").write_bytes(b"garbage, not an npy file" * 10)
    with pytest.raises(WPError, match=r"QuickDraw file .*cat\.npy is corrupt or truncated.*delete it"):
        qd(tmp_path, source_dir=str(src))
    (src / "cat.npy").write_bytes(npy_bytes(bitmaps(0, 50))[:-500])
    with pytest.raises(WPError, match=r"cat\.npy is corrupt or truncated"):
        qd(tmp_path, source_dir=str(src))
    np.save(src / "cat.npy", bitmaps(0, 50).reshape(50, 28, 28))
    with pytest.raises(WPError, match=r"cat\.npy has shape \(50, 28, 28\) dtype uint8, expected \(N, 784\) uint8"):
        qd(tmp_path, source_dir=str(src))
    np.save(src / "cat.npy", bitmaps(0, 50).astype(np.float32))
    with pytest.raises(WPError, match=r"cat\.npy has shape \(50, 784\) dtype float32"):
        qd(tmp_path, source_dir=str(src))
    np.save(src / "cat.npy", bitmaps(0, 5))
    with pytest.raises(WPError, match=r"cat\.npy has only 5 drawings, fewer than per_class=10"):
        qd(tmp_path, source_dir=str(src))
    # a downloaded file in the wrong format is rejected before it is renamed into place
    remote = stage(tmp_path / "remote")
    np.save(remote / "cat.npy", np.zeros((50, 28, 28), np.uint8))
    with pytest.raises(WPError, match=r"download of file://.*cat\.npy gave a bad file .*has shape \(50, 28, 28\)"):
        qd(tmp_path, url_template=remote.as_uri() + "/{name}.npy", download=True)
    assert not list((tmp_path / "data" / "quickdraw" / "numpy_bitmap").glob("cat.npy*"))


def test_quickdraw_option_errors(tmp_path):
    src = str(stage(tmp_path / "src"))
    cases = [
        ({"classes": ["cat", "t-shirt", "cat"]}, r"lists cat more than once"),
        ({"classes": []}, r"classes must be a non-empty list"),
        ({"train_per_class": 10}, r"train_per_class=10 must be smaller than per_class=10"),
        ({"split": "random"}, r"split='random' must be one of stratified, reference"),
        ({"url_template": "https://x/y.npy"}, r"must contain \{name\}"),
        ({"url_template": "ftp://x/{name}.npy"}, r"http://, https:// or file://"),
        ({"colour": True}, r"unknown quickdraw option\(s\) colour"),
    ]
    for options, pattern in cases:
        with pytest.raises(WPError, match=pattern):
            qd(tmp_path, source_dir=src, **options)


def test_failed_prepare_leaves_no_output_and_keeps_the_old_one(tmp_path):
    src = stage(tmp_path / "src")
    (src / "t-shirt.npy").write_bytes(b"truncated")
    out = tmp_path / "qd.h5"
    with pytest.raises(WPError):
        qd(tmp_path, source_dir=str(src))
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
    out.write_bytes(b"previous result")
    with pytest.raises(WPError):
        qd(tmp_path, source_dir=str(src))
    with pytest.raises(WPError):
        data.prepare("cifar10", tmp_path / "data", out, options={"download": False})
    assert out.read_bytes() == b"previous result" and not list(tmp_path.glob(".*tmp"))


def test_cifar10_http_download_through_torchvision(tmp_path, http_server):
    base, handler = http_server
    _, batches = fake_cifar(tmp_path / "mirror")
    handler.files["cifar.tar.gz"] = make_tarball(tmp_path / "mirror", tmp_path / "m.tar.gz").read_bytes()
    out = tmp_path / "c.h5"
    data.prepare("cifar10", tmp_path / "data", out, options={"verify": False, "url": base + "/cifar.tar.gz"})
    assert np.array_equal(data.read(out).test.labels, batches["test_batch"][1])
    with pytest.raises(WPError, match=r"CIFAR-10 files missing .*download failed \(HTTP Error 404"):
        data.prepare("cifar10", tmp_path / "data2", out, options={"verify": False, "url": base + "/gone.tar.gz"})
