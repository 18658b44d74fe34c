"""QuickDraw-100: the paper's 100 QuickDraw classes as 1x28x28 grayscale bitmaps.

Source: Google's "numpy_bitmap" files, one ``<class>.npy`` per class, each an (N, 784) uint8 array
(a 28x28 rendering per row, stroke high, background 0), N about 100k-300k per class. They are read
from ``source_dir`` (default ``<data_dir>/quickdraw/numpy_bitmap``) under either ``<class>.npy``
(the class name as listed, e.g. ``baseball_bat.npy``) or Google's own name (``baseball bat.npy``);
missing ones are downloaded from ``url_template`` (option ``download``, default true). Downloads go
to ``<class>.npy.part`` first, resume from a partial ``.part`` with an HTTP Range request, are
retried with backoff, are checked to be (N, 784) uint8 and only then renamed into place.

Sampling (our policy, README.md): from class number ``i`` of the class list (whose order defines
the label ids) draw ``per_class`` distinct drawings with ``numpy.random.default_rng([seed, 1, i])``;
the first ``train_per_class`` drawn go to the training set, the rest to the test set (stratified).
``split: reference`` instead pools all sampled drawings and puts a seeded random 1 - train/per_class
share of them into the test set, as the reference code did (without its missing seed). Files are
memory-mapped and only the sampled rows are kept, class by class, so the full 100-class download
(tens of GB) is prepared in well under 1 GB of memory (500,000 images of 784 bytes = 392 MB).

Options (``wp.data.prepare(..., options=...)``; defaults in ``DEFAULTS``):
``classes``, ``url_template`` (``{name}`` = class name with ``_`` as a URL-encoded space),
``source_dir``, ``per_class``, ``train_per_class``, ``split`` (``stratified`` | ``reference``),
``download``, ``attempts``, ``backoff_s``, ``timeout_s``.
"""

from __future__ import annotations

import errno
import http.client
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

from wp import WPError
from wp.data.registry import DatasetSpec, Split, register_dataset
from wp.io import sha256

# The paper's 100 classes in the reference's listed order (reference-behaviour.md 2.2); label id = position.
CLASSES = (
    "drums", "sun", "laptop", "anvil", "baseball_bat", "ladder", "eyeglasses", "grapes", "book", "dumbbell",
    "traffic_light", "wristwatch", "wheel", "shovel", "bread", "table", "tennis_racquet", "cloud", "chair",
    "headphones", "face", "eye", "airplane", "snake", "lollipop", "power_outlet", "pants", "mushroom", "star",
    "sword", "clock", "hot_dog", "syringe", "stop_sign", "mountain", "smiley_face", "apple", "bed", "shorts",
    "broom", "diving_board", "flower", "spider", "cell_phone", "car", "camera", "tree", "square", "moon", "radio",
    "hat", "pizza", "axe", "door", "tent", "umbrella", "line", "cup", "fan", "triangle", "basketball", "pillow",
    "scissors", "t-shirt", "tooth", "alarm_clock", "paper_clip", "spoon", "microphone", "candle", "pencil",
    "envelope", "saw", "frying_pan", "screwdriver", "helmet", "bridge", "light_bulb", "ceiling_fan", "key",
    "donut", "bird", "circle", "beard", "coffee_cup", "butterfly", "bench", "rifle", "cat", "sock", "ice_cream",
    "moustache", "suitcase", "hammer", "rainbow", "knife", "cookie", "baseball", "lightning", "bicycle",
)
URL_TEMPLATE = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/{name}.npy"
GSUTIL_SOURCE = "gs://quickdraw_dataset/full/numpy_bitmap/*.npy"
PIXELS = 28 * 28
DEFAULTS = {
    "classes": list(CLASSES),
    "url_template": URL_TEMPLATE,
    "source_dir": None,  # None: <data_dir>/quickdraw/numpy_bitmap
    "per_class": 5000,
    "train_per_class": 4000,
    "split": "stratified",
    "download": True,
    "attempts": 4,
    "backoff_s": 2.0,
    "timeout_s": 60.0,
}
SPLITS = ("stratified", "reference")
SHOW_MISSING = 5


class _PermanentError(Exception):
    """A download failure that retrying cannot fix (404, a missing file:// source, a bad URL)."""


class _OfflineError(Exception):
    """No route to the server at all: stop at once rather than retrying every class."""


# ----------------------------------------------------------------------------------------- options


def _int_option(opts: dict, key: str, minimum: int) -> int:
    value = opts[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WPError(f"quickdraw option {key}={value!r} must be an integer >= {minimum}: fix datasets.quickdraw100.{key}")
    return value


def resolve_options(options: dict, data_dir: str | Path) -> dict:
    """``options`` with defaults filled in and every value checked (WPError naming the key otherwise)."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise WPError(f"unknown quickdraw option(s) {', '.join(unknown)}: use only {', '.join(sorted(DEFAULTS))}")
    opts = {**DEFAULTS, **options}
    classes = opts["classes"]
    if isinstance(classes, str) or not isinstance(classes, (list, tuple)) or not classes:
        raise WPError("quickdraw option classes must be a non-empty list of class names: fix datasets.quickdraw100.classes")
    bad = [c for c in classes if not isinstance(c, str) or not c.strip() or "/" in c or c != c.strip()]
    if bad:
        raise WPError(f"quickdraw option classes has invalid names {bad!r}: use the numpy_bitmap file names without .npy")
    dups = sorted(name for name, count in Counter(classes).items() if count > 1)
    if dups:
        raise WPError(f"quickdraw option classes lists {', '.join(dups)} more than once: "
                      f"each class may appear once (its position is its label id)")
    opts["classes"] = [str(c) for c in classes]
    per_class = _int_option(opts, "per_class", 2)
    train = _int_option(opts, "train_per_class", 1)
    if train >= per_class:
        raise WPError(f"quickdraw option train_per_class={train} must be smaller than per_class={per_class} "
                      f"(the rest is the test set): fix datasets.quickdraw100")
    if opts["split"] not in SPLITS:
        raise WPError(f"quickdraw option split={opts['split']!r} must be one of {', '.join(SPLITS)}")
    template = opts["url_template"]
    if not isinstance(template, str) or "{name}" not in template:
        raise WPError(f"quickdraw option url_template={template!r} must contain {{name}}: e.g. {URL_TEMPLATE}")
    if urllib.parse.urlparse(template).scheme not in ("http", "https", "file"):
        raise WPError(f"quickdraw option url_template={template!r} must be an http://, https:// or file:// URL")
    _int_option(opts, "attempts", 1)
    for key in ("backoff_s", "timeout_s"):
        if isinstance(opts[key], bool) or not isinstance(opts[key], (int, float)) or opts[key] < 0:
            raise WPError(f"quickdraw option {key}={opts[key]!r} must be a number >= 0")
    opts["download"] = bool(opts["download"])
    source = opts["source_dir"]
    opts["source_dir"] = Path(source) if source else Path(data_dir) / "quickdraw" / "numpy_bitmap"
    return opts


def url_for(template: str, name: str) -> str:
    """The download URL of class ``name``: underscores are spaces upstream, URL-encoded as %20."""
    return template.format(name=urllib.parse.quote(name.replace("_", " ")))


def candidates(source_dir: Path, name: str) -> list[Path]:
    """File names a pre-staged class file may have: ours (``baseball_bat.npy``), Google's (``baseball bat.npy``)."""
    names = dict.fromkeys([f"{name}.npy", f"{name.replace('_', ' ')}.npy"])
    return [source_dir / n for n in names]


def find(source_dir: Path, name: str) -> Path | None:
    return next((p for p in candidates(source_dir, name) if p.is_file()), None)


# --------------------------------------------------------------------------------------- reading


def open_bitmaps(path: Path) -> np.ndarray:
    """Memory-map one numpy_bitmap file and check it is (N, 784) uint8; WPError naming the file otherwise."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise WPError(f"QuickDraw file {path} is corrupt or truncated ({str(exc).splitlines()[0]}): "
                      f"delete it and rerun to download it again") from exc
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != PIXELS or arr.dtype != np.uint8:
        what = f"shape {arr.shape} dtype {arr.dtype}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise WPError(f"QuickDraw file {path} has {what}, expected (N, {PIXELS}) uint8 (numpy_bitmap format): "
                      f"replace it with the numpy_bitmap file of that class")
    return arr


def class_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, 1, index])


def split_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, 2])


def sample_class(arr: np.ndarray, per_class: int, rng: np.random.Generator, path: Path) -> np.ndarray:
    """``per_class`` distinct rows of ``arr`` in the order drawn, as (per_class, 1, 28, 28) uint8.

    The rows are read in file order (sorted indices), so a memory-mapped file is touched only where sampled."""
    if len(arr) < per_class:
        raise WPError(f"QuickDraw file {path} has only {len(arr)} drawings, fewer than per_class={per_class}: "
                      f"lower per_class or replace the file")
    idx = rng.choice(len(arr), size=per_class, replace=False)
    order = np.argsort(idx, kind="stable")
    rows = np.empty((per_class, PIXELS), np.uint8)
    rows[order] = arr[idx[order]]
    return rows.reshape(per_class, 1, 28, 28)


# -------------------------------------------------------------------------------------- download


def _is_offline(exc: BaseException) -> bool:
    """No DNS, no route, refused, or no answer to the connection attempt: retrying will not help."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return True
    if isinstance(exc, urllib.error.URLError) and isinstance(reason, TimeoutError):
        return True  # the connection itself timed out (a firewalled node); read timeouts are retried
    return isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED)


def _fetch_once(url: str, part: Path, timeout_s: float) -> None:
    """Fetch ``url`` into ``part``, resuming from what ``part`` already holds (http/https)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        src = Path(urllib.request.url2pathname(parsed.path))
        if not src.is_file():
            raise _PermanentError(f"{src} does not exist")
        shutil.copyfile(src, part)
        return
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "wp-quickdraw/1"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return  # the .part is already complete; the shape check decides
        if exc.code in (400, 401, 403, 404, 410):
            raise _PermanentError(f"HTTP {exc.code} {exc.reason}") from exc
        raise
    with response:
        resumed = bool(offset) and response.status == 206
        if resumed and not (response.headers.get("Content-Range") or "").startswith(f"bytes {offset}-"):
            part.unlink()
            raise OSError("the server resumed at another offset than asked; starting over")
        length = response.headers.get("Content-Length")
        written = 0
        with open(part, "ab" if resumed else "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                written += len(chunk)
        if length is not None and written != int(length):
            raise http.client.IncompleteRead(b"", int(length) - written)


def download(url: str, dest: Path, attempts: int = 4, backoff_s: float = 2.0, timeout_s: float = 60.0) -> None:
    """Download ``url`` to ``dest`` atomically: fetch into ``dest.part`` (resuming a partial one), retry
    transient failures with exponential backoff, check the (N, 784) uint8 format, then rename."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        try:
            _fetch_once(url, part, timeout_s)
            break
        except _PermanentError:
            raise
        except ValueError as exc:  # a malformed URL
            raise _PermanentError(str(exc)) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if _is_offline(exc):
                raise _OfflineError(str(getattr(exc, "reason", exc))) from exc
            if attempt + 1 == attempts:
                raise
            print(f"quickdraw: {url}: {exc}; retrying ({attempt + 2}/{attempts})", file=sys.stderr, flush=True)
            time.sleep(backoff_s * 2 ** attempt)
    try:
        open_bitmaps(part)
    except WPError as exc:
        part.unlink(missing_ok=True)
        raise WPError(f"download of {url} gave a bad file ({exc}); rerun to download it again") from exc
    os.replace(part, dest)


def _missing_error(missing: list[str], opts: dict, why: str) -> WPError:
    source = opts["source_dir"]
    shown = ", ".join(f"{m}.npy" for m in missing[:SHOW_MISSING])
    more = f" and {len(missing) - SHOW_MISSING} more" if len(missing) > SHOW_MISSING else ""
    example = next((c for c in missing if "_" in c), missing[0])
    return WPError(
        f"QuickDraw: {len(missing)} of {len(opts['classes'])} class files missing from {source} ({shown}{more}){why}: "
        f"download them from {opts['url_template']} ({{name}} = class name with '_' as %20, "
        f"e.g. {url_for(opts['url_template'], example)}) "
        f"into {source} as <class>.npy (or copy {GSUTIL_SOURCE} there), or set option source_dir to where they are"
    )


def ensure_files(opts: dict) -> dict[str, Path]:
    """class name -> its local file, downloading missing ones (if allowed); one WPError if any stay missing."""
    source: Path = opts["source_dir"]
    found = {name: find(source, name) for name in opts["classes"]}
    missing = [name for name, path in found.items() if path is None]
    if missing and not opts["download"]:
        raise _missing_error(missing, opts, " and downloading is off (option download: false)")
    for i, name in enumerate(missing):
        url = url_for(opts["url_template"], name)
        print(f"quickdraw: downloading {url} ({i + 1}/{len(missing)})", file=sys.stderr, flush=True)
        try:
            download(url, source / f"{name}.npy", opts["attempts"], opts["backoff_s"], opts["timeout_s"])
        except (_PermanentError, _OfflineError, urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            kind = "no network" if isinstance(exc, _OfflineError) else "download failed"
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise _missing_error(missing[i:], opts, f" ({kind}: {url}: {reason})") from exc
        found[name] = source / f"{name}.npy"
    return found  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------- load


def load(data_dir: str | Path, seed: int, options: dict) -> tuple[Split, Split, dict]:
    opts = resolve_options(options, data_dir)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise WPError(f"seed {seed!r} must be a non-negative integer: fix 'seed' in your config")
    seed = int(seed)
    classes = opts["classes"]
    files = ensure_files(opts)
    n, per, n_tr = len(classes), opts["per_class"], opts["train_per_class"]
    n_te = per - n_tr
    train_x = np.empty((n * n_tr, 1, 28, 28), np.uint8)
    test_x = np.empty((n * n_te, 1, 28, 28), np.uint8)
    train_y = np.empty(n * n_tr, np.int64)
    test_y = np.empty(n * n_te, np.int64)
    if opts["split"] == "reference":
        # One seeded permutation of all n * per sampled drawings; its first n * n_te places are the test set.
        perm = split_rng(seed).permutation(n * per)
        place = np.empty_like(perm)
        place[perm] = np.arange(n * per)
    hashes, drawings = {}, {}
    for i, name in enumerate(classes):
        path = files[name]
        arr = open_bitmaps(path)
        drawings[name] = int(len(arr))
        rows = sample_class(arr, per, class_rng(seed, i), path)
        del arr  # release the memory map before the next class
        if opts["split"] == "stratified":
            train_x[i * n_tr:(i + 1) * n_tr], train_y[i * n_tr:(i + 1) * n_tr] = rows[:n_tr], i
            test_x[i * n_te:(i + 1) * n_te], test_y[i * n_te:(i + 1) * n_te] = rows[n_tr:], i
        else:
            where = place[i * per:(i + 1) * per]
            is_test = where < n * n_te
            test_x[where[is_test]], test_y[where[is_test]] = rows[is_test], i
            train_x[where[~is_test] - n * n_te], train_y[where[~is_test] - n * n_te] = rows[~is_test], i
        hashes[path.name] = sha256(path)
    provenance = {
        "source": str(opts["source_dir"]), "url_template": opts["url_template"], "classes": list(classes),
        "seed": seed, "per_class": per, "train_per_class": n_tr, "split": opts["split"],
        "sampling": "class i: numpy default_rng([seed, 1, i]).choice(N, per_class, replace=False); "
                    "stratified: first train_per_class drawn -> train; reference: default_rng([seed, 2]) permutation",
        "drawings": drawings, "sha256": hashes,
    }
    return Split(train_x, train_y), Split(test_x, test_y), provenance


register_dataset(DatasetSpec(
    name="quickdraw100", load=load, classes=CLASSES, channels=1, image_size=28, augment={},
    paper_name="quickdraw100",
    description="QuickDraw-100: the paper's 100 classes, seeded 5,000 drawings per class, stratified 4,000/1,000 split",
))
