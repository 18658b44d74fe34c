"""CIFAR-10 (3x32x32 colour, 10 classes, 50,000 train / 10,000 test images, all of them kept).

Where the files come from: torchvision's layout ``<data_dir>/cifar-10-batches-py/`` with
``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``. If those are missing, the
archive ``<data_dir>/cifar-10-python.tar.gz`` is extracted when present, otherwise downloaded (option
``download``, default true) from the URL below with torchvision's downloader, which checks the
archive's md5. Offline and missing, ``load`` fails with one line naming the missing files, where to
put them and the URL.

Why torchvision reads the batches: the CIFAR "python version" batches are Python pickles, and
unpickling a file can run arbitrary code. We therefore never unpickle a file we have not verified:
every batch (and ``batches.meta``) is first checked against the md5 sums that torchvision's
``CIFAR10`` class publishes (``torchvision.datasets.utils.check_integrity``), and only then read by
torchvision's own ``CIFAR10`` loader, the upstream reader of this format. The option
``verify: false`` skips the md5 checks; it exists for test fixtures in the same format and must only be
used with files you made or otherwise trust.

Options (``wp.data.prepare(..., options=...)``):
- ``download`` (bool, default true): fetch the archive when the files are missing;
- ``verify`` (bool, default true): md5-check the archive and the batches before reading them;
- ``url`` (str): the archive URL (default the official one); a ``file://`` URL is copied (mirrors, tests).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np

from wp import WPError
from wp.data.registry import DatasetSpec, Split, register_dataset
from wp.io import sha256

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
FILES = TRAIN_FILES + TEST_FILES + (META_FILE,)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
OPTION_KEYS = {"download", "verify", "url"}
DOWNLOAD_TIMEOUT_S = 60


def _md5_table() -> dict[str, str]:
    """File name -> md5, as published by torchvision's CIFAR10 class."""
    from torchvision.datasets import CIFAR10

    table = {name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list}
    table[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    table[CIFAR10.filename] = CIFAR10.tgz_md5
    return table


def _options(options: dict) -> dict:
    unknown = sorted(set(options) - OPTION_KEYS)
    if unknown:
        raise WPError(f"unknown cifar10 option(s) {', '.join(unknown)}: use only {', '.join(sorted(OPTION_KEYS))}")
    return {"download": bool(options.get("download", True)), "verify": bool(options.get("verify", True)),
            "url": str(options.get("url", URL))}


def _missing(folder: Path) -> list[str]:
    return [name for name in FILES if not (folder / name).is_file()]


def _missing_error(data_dir: Path, missing: list[str], url: str, why: str) -> WPError:
    folder = data_dir / FOLDER
    return WPError(
        f"CIFAR-10 files missing from {folder} ({', '.join(missing)}){why}: download {url} and either put it at "
        f"{data_dir / ARCHIVE} or extract it into {data_dir} (it unpacks to {FOLDER}/), then rerun"
    )


def _fetch(data_dir: Path, opts: dict, md5s: dict[str, str]) -> None:
    """Extract the archive into ``data_dir``, downloading it first if needed and allowed."""
    from torchvision.datasets.utils import check_integrity, download_url, extract_archive

    archive = data_dir / ARCHIVE
    archive_md5 = md5s[ARCHIVE] if opts["verify"] else None
    missing = _missing(data_dir / FOLDER)
    if not archive.is_file():
        if not opts["download"]:
            raise _missing_error(data_dir, missing, opts["url"], " and downloading is off (option download: false)")
        part = archive.with_name(ARCHIVE + ".part")
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torchvision's downloader passes no timeout
        try:
            part.unlink(missing_ok=True)
            if opts["url"].startswith("file:"):  # a local mirror (torchvision's downloader wants http)
                shutil.copyfile(url2pathname(urlparse(opts["url"]).path), part)
                if not check_integrity(str(part), archive_md5):
                    raise RuntimeError("md5 mismatch")
            else:
                download_url(opts["url"], str(data_dir), filename=part.name, md5=archive_md5)
        except Exception as exc:  # URLError, HTTPError, timeouts, torchvision's RuntimeError on a bad md5
            part.unlink(missing_ok=True)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _missing_error(data_dir, missing, opts["url"], f" and the download failed ({reason})") from exc
        finally:
            socket.setdefaulttimeout(previous)
        os.replace(part, archive)
    elif not check_integrity(str(archive), archive_md5):
        raise WPError(f"CIFAR-10 archive {archive} is corrupt (md5 mismatch): delete it and rerun to download it again")
    try:
        extract_archive(str(archive), str(data_dir))
    except Exception as exc:
        raise WPError(f"CIFAR-10 archive {archive} could not be extracted ({exc}): delete it and rerun to download it again") from exc


def _reader():
    """torchvision's CIFAR10 reader with its own md5 checks switched off: ``load`` calls it only after
    checking the md5 sums itself (or when the caller chose ``verify: false``), so each file is hashed
    once rather than three times."""
    from torchvision.datasets import CIFAR10

    class VerifiedCIFAR10(CIFAR10):
        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return VerifiedCIFAR10


def _read(data_dir: Path, train: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    reader = _reader()
    part = "train" if train else "test"
    try:
        ds = reader(root=str(data_dir), train=train, download=False)
    except Exception as exc:  # unpickling errors, a batch without b"data", wrong sizes
        raise WPError(f"CIFAR-10 {part} batches in {data_dir / FOLDER} could not be read ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}): delete the folder and rerun to download it again") from exc
    images = np.ascontiguousarray(np.asarray(ds.data, dtype=np.uint8).transpose(0, 3, 1, 2))  # NHWC -> NCHW
    labels = np.asarray(ds.targets, dtype=np.int64)
    if images.shape[1:] != (3, 32, 32) or len(images) != len(labels):
        raise WPError(f"CIFAR-10 {part} batches in {data_dir / FOLDER} have shapes {images.shape} / {labels.shape}, "
                      f"expected (n, 3, 32, 32) / (n,): replace them")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise WPError(f"CIFAR-10 {part} labels out of range 0..9 in {data_dir / FOLDER}: replace the batches")
    return images, labels, [str(c) for c in ds.classes]


def load(data_dir: str | Path, seed: int, options: dict) -> tuple[Split, Split, dict]:
    data_dir = Path(data_dir)
    opts = _options(options)
    folder = data_dir / FOLDER
    md5s = _md5_table()
    if _missing(folder):
        data_dir.mkdir(parents=True, exist_ok=True)
        _fetch(data_dir, opts, md5s)
        still = _missing(folder)
        if still:
            raise _missing_error(data_dir, still, opts["url"], " even after extracting the archive")
    if opts["verify"]:
        from torchvision.datasets.utils import check_integrity

        bad = [name for name in FILES if not check_integrity(str(folder / name), md5s[name])]
        if bad:
            raise WPError(f"CIFAR-10 files in {folder} fail their md5 check ({', '.join(bad)}): delete {folder} "
                          f"and rerun to download {URL} again (or set option verify: false for trusted non-original files)")
    train_x, train_y, classes = _read(data_dir, train=True)
    test_x, test_y, _ = _read(data_dir, train=False)
    if tuple(classes) != CLASSES:
        raise WPError(f"CIFAR-10 {folder / META_FILE} names the classes {classes}, expected {list(CLASSES)}: replace it")
    provenance = {
        "source": str(folder), "url": opts["url"], "md5_verified": opts["verify"],
        "sha256": {name: sha256(folder / name) for name in FILES},
    }
    return Split(train_x, train_y), Split(test_x, test_y), provenance


register_dataset(DatasetSpec(
    name="cifar10", load=load, classes=CLASSES, channels=3, image_size=32,
    augment={"crop_padding": 4, "flip": True}, paper_name="cifar10",
    description="CIFAR-10 via torchvision's downloader and md5 sums (or a pre-staged cifar-10-batches-py/)",
))
