"""Image datasets on disk: CIFAR-10, CIFAR-100 and Tiny-ImageNet-200, without torchvision.

Every loader returns an `ImageArrays` of uint8 tensors in channels-first layout; augmentation
and normalisation happen later, on the training device (`divebatch.augment`).

Datasets live under one data folder: the `root` argument, else $DIVEBATCH_DATA, else `data/`
(the CLI's --data-dir and RunConfig.data_dir feed `root`). Nothing is ever downloaded
implicitly: a missing dataset raises `DatasetError` with one line saying what to place where,
and only the explicit `download()` (CLI: `python -m divebatch download NAME`) uses the network.

CIFAR's python-format files are pickles. They are read with `CifarUnpickler`, which only
allows numpy's array reconstruction, so a crafted pickle cannot run code.

>>> status = dataset_status("data")
>>> status["digits"]["present"]
True
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable

import numpy as np
import torch

# progress(done, total): bytes for downloads, images for Tiny-ImageNet decoding;
# total is None when unknown.
Progress = Callable[[int, "int | None"], None]

DATA_ENV = "DIVEBATCH_DATA"
DEFAULT_DATA_DIR = "data"
IMAGE_DATASETS = ("cifar10", "cifar100", "tiny_imagenet")

# Official archives. Module-level so tests can point an entry at a local file:// archive.
DOWNLOADS = {
    "cifar10": {"url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "md5": "c58f30108f718f92721af3b95e74349a", "folder": "cifar-10-batches-py"},
    "cifar100": {"url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "md5": "eb9058c3a382ffc7106e4002c42a8d85", "folder": "cifar-100-python"},
    "tiny_imagenet": {"url": "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
                      "md5": "90528d7ca1a48142e341f4ef8d21d0de",
                      "folder": "tiny-imagenet-200"},
}

TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tiny_imagenet": "Tiny-ImageNet-200"}

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
CIFAR10_PY = "cifar-10-batches-py"
CIFAR10_BIN = "cifar-10-batches-bin"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = "test_batch"
CIFAR_PIXELS = 3 * 32 * 32  # one image as stored: 1024 red, 1024 green, 1024 blue bytes
CIFAR100_FILES = ("train", "test", "meta")
TINY_SIZE = 64
TINY_CACHE = "cache_uint8.npz"
TINY_FILES = ("wnids.txt", "train", "val/images", "val/val_annotations.txt")


class DatasetError(ValueError):
    """A dataset is missing, incomplete or corrupt; the message is one actionable line."""


@dataclass
class ImageArrays:
    """One image dataset in memory, uint8 channels-first, ready to move to a device."""
    x_train: torch.Tensor  # (N, 3, H, W) uint8
    y_train: torch.Tensor  # (N,) int64
    x_val: torch.Tensor    # (M, 3, H, W) uint8
    y_val: torch.Tensor    # (M,) int64
    classes: list[str]     # class index -> human name
    n_classes: int
    name: str = ""         # "cifar10", "cifar100" or "tiny_imagenet"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root` if given (non-empty), else $DIVEBATCH_DATA, else data/."""
    if root:
        return Path(root)
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR)


def load_images(name: str, root: str | os.PathLike | None = None,
                progress: Progress | None = None) -> ImageArrays:
    """Load the image dataset `name` (one of IMAGE_DATASETS) from the data folder."""
    if name == "cifar10":
        return load_cifar10(root)
    if name == "cifar100":
        return load_cifar100(root)
    if name == "tiny_imagenet":
        return load_tiny_imagenet(root, progress=progress)
    raise DatasetError(f"unknown image dataset {name!r}; "
                       f"choose one of {', '.join(IMAGE_DATASETS)}")


# ---------------------------------------------------------------------------------------------
# Messages shared by the loaders and dataset_status


def _missing_message(name: str, root: Path) -> str:
    folder = DOWNLOADS[name]["folder"]
    archive = _archive_name(name)
    extra = " (or cifar-10-batches-bin from the binary version)" if name == "cifar10" else ""
    return (f"{TITLES[name]} not found: place the folder {folder}{extra} (from {archive}) "
            f"in {root}/, or run: python -m divebatch download {name}")


def _incomplete_message(name: str, path: Path) -> str:
    return (f"{TITLES[name]} incomplete: {path} is missing; re-extract "
            f"{_archive_name(name)} or run: python -m divebatch download {name}")


def _archive_name(name: str) -> str:
    return PurePosixPath(DOWNLOADS[name]["url"]).name


def _require_files(name: str, folder: Path, relative_paths) -> None:
    """Raise DatasetError naming the first of `relative_paths` missing under `folder`."""
    for relative in relative_paths:
        if not (folder / relative).exists():
            raise DatasetError(_incomplete_message(name, folder / relative))


# ---------------------------------------------------------------------------------------------
# CIFAR pickles: a restricted unpickler


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class CifarUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a CIFAR pickle needs (numpy arrays).

    Anything else (os.system, builtins.exec, numpy.load, ...) raises UnpicklingError before
    it can be called, so a crafted file cannot execute code.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),   # written by numpy 1.x (the real files)
        ("numpy._core.multiarray", "_reconstruct"),  # written by numpy 2.x
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}, which a CIFAR file never needs")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


def _load_cifar_pickle(path: Path) -> dict:
    """One CIFAR python-format file as a dict with bytes keys (the files are Python 2 pickles)."""
    try:
        with open(path, "rb") as f:
            content = CifarUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DatasetError(f"{path}: not a valid CIFAR pickle ({e}); the file may be corrupt "
                           f"or malicious, replace it from the official archive") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError) as e:
        raise DatasetError(f"{path}: truncated or corrupt CIFAR pickle "
                           f"({type(e).__name__}: {e}); replace it from the official archive") \
            from None
    if not isinstance(content, dict):
        raise DatasetError(f"{path}: expected a dict in a CIFAR pickle, "
                           f"got {type(content).__name__}")
    return content


def _cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one python-format batch."""
    batch = _load_cifar_pickle(path)
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or labels is None:
        raise DatasetError(f"{path}: missing b'data' array or {label_key!r} labels")
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS \
            or labels.shape != (data.shape[0],):
        raise DatasetError(f"{path}: expected data uint8 (N, {CIFAR_PIXELS}) and N labels, "
                           f"got data {data.dtype} {data.shape} and {labels.shape[0]} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) and labels (N,) from a binary-format file of 3073-byte records."""
    raw = np.fromfile(path, dtype=np.uint8)
    record = 1 + CIFAR_PIXELS
    if raw.size == 0 or raw.size % record:
        raise DatasetError(f"{path}: truncated or corrupt ({raw.size} bytes is not a "
                           f"multiple of {record}); replace it from the official archive")
    records = raw.reshape(-1, record)  # (N, 1 label byte + 3072 pixel bytes)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def _check_labels(path: Path, labels: np.ndarray, n_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"{path}: labels outside 0..{n_classes - 1}")


def _read_cifar_files(paths: list[Path], read, n_classes: int):
    """Concatenate `read(path) -> (x, y)` over files, checking label ranges -> tensors."""
    xs, ys = [], []
    for path in paths:
        x, y = read(path)
        _check_labels(path, y, n_classes)
        xs.append(x)
        ys.append(y)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def load_cifar10(root: str | os.PathLike | None = None) -> ImageArrays:
    """CIFAR-10 (50000 train / 10000 test at full size) from the python or binary version."""
    root = data_root(root)
    names = CIFAR10_TRAIN + [CIFAR10_TEST]
    if (root / CIFAR10_PY).is_dir():
        folder, read = root / CIFAR10_PY, partial(_cifar_batch, label_key=b"labels")
    elif (root / CIFAR10_BIN).is_dir():
        folder, read = root / CIFAR10_BIN, _cifar_binary_batch
        names = [n + ".bin" for n in names]
    else:
        raise DatasetError(_missing_message("cifar10", root))
    _require_files("cifar10", folder, names)
    x_train, y_train = _read_cifar_files([folder / n for n in names[:-1]], read, 10)
    x_val, y_val = _read_cifar_files([folder / names[-1]], read, 10)
    return ImageArrays(x_train, y_train, x_val, y_val, list(CIFAR10_CLASSES), 10, "cifar10")


def load_cifar100(root: str | os.PathLike | None = None) -> ImageArrays:
    """CIFAR-100 (python version) with its 100 fine labels."""
    root = data_root(root)
    folder = root / DOWNLOADS["cifar100"]["folder"]
    if not folder.is_dir():
        raise DatasetError(_missing_message("cifar100", root))
    _require_files("cifar100", folder, CIFAR100_FILES)
    names = _load_cifar_pickle(folder / "meta").get(b"fine_label_names")
    if not isinstance(names, list) or len(names) != 100:
        raise DatasetError(f"{folder / 'meta'}: expected 100 fine_label_names")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    read = partial(_cifar_batch, label_key=b"fine_labels")
    x_train, y_train = _read_cifar_files([folder / "train"], read, 100)
    x_val, y_val = _read_cifar_files([folder / "test"], read, 100)
    return ImageArrays(x_train, y_train, x_val, y_val, classes, 100, "cifar100")


# ---------------------------------------------------------------------------------------------
# Tiny-ImageNet-200: JPEG folders decoded once into a uint8 cache


def load_tiny_imagenet(root: str | os.PathLike | None = None, *,
                       progress: Progress | None = None, workers: int | None = None
                       ) -> ImageArrays:
    """Tiny-ImageNet-200 (100000 train / 10000 val, 64x64).

    The first load decodes every JPEG (threads; `progress(done, total)` reports images) and
    writes `tiny-imagenet-200/cache_uint8.npz` atomically; later loads read that cache when its
    shapes and class list match. Labels index the sorted wnids.
    """
    root = data_root(root)
    folder = root / DOWNLOADS["tiny_imagenet"]["folder"]
    if not folder.is_dir():
        raise DatasetError(_missing_message("tiny_imagenet", root))
    _require_files("tiny_imagenet", folder, TINY_FILES)
    wnids = _read_wnids(folder / "wnids.txt")
    arrays = _read_tiny_cache(folder / TINY_CACHE, wnids)
    if arrays is None:
        arrays = _decode_tiny(folder, wnids, progress, workers)
        _write_tiny_cache(folder / TINY_CACHE, arrays, wnids)
    x_train, y_train, x_val, y_val = (torch.from_numpy(a) for a in arrays)
    classes = _class_names(folder / "words.txt", wnids)
    return ImageArrays(x_train, y_train, x_val, y_val, classes, len(wnids), "tiny_imagenet")


def _read_wnids(path: Path) -> list[str]:
    wnids = sorted({line.strip() for line in path.read_text().splitlines() if line.strip()})
    if not wnids:
        raise DatasetError(f"{path}: no class ids (wnids) listed")
    return wnids


def _class_names(words_path: Path, wnids: list[str]) -> list[str]:
    """First synonym of each wnid from words.txt ("n01443537<TAB>goldfish, Carassius auratus")."""
    names = {}
    if words_path.exists():
        for line in words_path.read_text(encoding="utf-8", errors="replace").splitlines():
            wnid, _, words = line.partition("\t")
            names[wnid] = words.split(",")[0].strip()
    return [names.get(w) or w for w in wnids]


def _tiny_file_lists(folder: Path, wnids: list[str]):
    """(train paths, train labels, val paths, val labels) in the standard folder layout."""
    index = {w: i for i, w in enumerate(wnids)}
    train_paths, train_labels = [], []
    for wnid in wnids:
        images = folder / "train" / wnid / "images"
        if not images.is_dir():
            raise DatasetError(_incomplete_message("tiny_imagenet", images))
        files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
        train_paths += files
        train_labels += [index[wnid]] * len(files)
    val_paths, val_labels = [], []
    annotations = folder / "val" / "val_annotations.txt"
    for line in annotations.read_text().splitlines():
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in index:
            raise DatasetError(f"{annotations}: bad line {line[:80]!r} "
                               f"(expected filename<TAB>wnid from wnids.txt)")
        val_paths.append(folder / "val" / "images" / fields[0])
        val_labels.append(index[fields[1]])
    return train_paths, train_labels, val_paths, val_labels


def _decode_jpeg(path: Path) -> np.ndarray:
    """One image file -> (3, 64, 64) uint8; greyscale images are expanded to RGB."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))  # (H, W, 3)
    except (OSError, UnidentifiedImageError) as e:
        raise DatasetError(f"{path}: cannot decode image ({e})") from None
    if pixels.shape != (TINY_SIZE, TINY_SIZE, 3):
        raise DatasetError(f"{path}: expected a {TINY_SIZE}x{TINY_SIZE} image, "
                           f"got {pixels.shape[1]}x{pixels.shape[0]}")
    return pixels.transpose(2, 0, 1)


def _decode_tiny(folder: Path, wnids: list[str], progress: Progress | None,
                 workers: int | None) -> tuple[np.ndarray, ...]:
    """Decode all JPEGs with a thread pool (Pillow releases the GIL while decoding)."""
    train_paths, train_labels, val_paths, val_labels = _tiny_file_lists(folder, wnids)
    paths = train_paths + val_paths
    pixels = np.empty((len(paths), 3, TINY_SIZE, TINY_SIZE), dtype=np.uint8)  # (N+M, 3, 64, 64)

    def decode(i: int) -> None:
        pixels[i] = _decode_jpeg(paths[i])

    pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1))
    try:
        for done, _ in enumerate(pool.map(decode, range(len(paths))), start=1):
            if progress and (done % 1000 == 0 or done == len(paths)):
                progress(done, len(paths))
    finally:
        pool.shutdown(cancel_futures=True)  # on a bad file, skip the queued rest
    n_train = len(train_paths)
    return (pixels[:n_train], np.asarray(train_labels, dtype=np.int64),
            pixels[n_train:], np.asarray(val_labels, dtype=np.int64))


def _write_tiny_cache(path: Path, arrays: tuple[np.ndarray, ...], wnids: list[str]) -> None:
    """Write the decoded arrays to `path` via a temp file + rename, so readers never see half."""
    x_train, y_train, x_val, y_val = arrays
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cache-", suffix=".npz.part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                     wnids=np.asarray(wnids))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_tiny_cache(path: Path, wnids: list[str]) -> tuple[np.ndarray, ...] | None:
    """The cached arrays, or None when the cache is absent, unreadable or does not fit."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as cache:
            arrays = tuple(cache[k] for k in ("x_train", "y_train", "x_val", "y_val"))
            cached_wnids = [str(w) for w in cache["wnids"]]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    if cached_wnids != wnids or not _tiny_cache_shapes_ok(arrays, len(wnids)):
        return None
    return arrays


def _tiny_cache_shapes_ok(arrays: tuple[np.ndarray, ...], n_classes: int) -> bool:
    x_train, y_train, x_val, y_val = arrays
    for x, y in ((x_train, y_train), (x_val, y_val)):
        if x.dtype != np.uint8 or x.shape[1:] != (3, TINY_SIZE, TINY_SIZE) \
                or y.dtype != np.int64 or y.shape != (x.shape[0],):
            return False
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Explicit download with checksum and safe extraction


def download(name: str, root: str | os.PathLike | None = None,
             progress: Progress | None = None) -> Path:
    """Download, verify (md5) and extract dataset `name` into the data folder; return its folder.

    Does nothing when the folder is already there. The archive is streamed to a temp file,
    its md5 checked before anything is extracted, and extracted into a temp folder that is
    renamed into place at the end, so a failure leaves no partial dataset behind.
    """
    if name not in DOWNLOADS:
        raise DatasetError(f"unknown dataset {name!r} to download; "
                           f"choose one of {', '.join(DOWNLOADS)}")
    root = data_root(root)
    source = DOWNLOADS[name]
    target = root / source["folder"]
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    archive = _fetch(source["url"], root, progress)
    try:
        _verify_md5(archive, source["md5"], source["url"])
        _extract_into(archive, root, source["folder"])
    finally:
        archive.unlink(missing_ok=True)
    return target


def _fetch(url: str, root: Path, progress: Progress | None) -> Path:
    """Stream `url` into a temp file under `root`; return its path."""
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".download-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except (OSError, ValueError) as e:  # URLError is an OSError; ValueError: bad URL
        Path(tmp).unlink(missing_ok=True)
        raise DatasetError(f"could not download {url} ({e}); on an offline machine place "
                           f"the extracted folder in {root}/ by hand") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _verify_md5(path: Path, expected: str, url: str) -> None:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise DatasetError(f"checksum mismatch for {url}: expected md5 {expected}, got "
                           f"{digest.hexdigest()}; the download is corrupt, try again")


def _extract_into(archive: Path, root: Path, folder: str) -> None:
    """Extract `archive` (tar.gz or zip) in a temp folder, then move `folder` into `root`."""
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".extract-"))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging)
        else:
            _extract_tar(archive, staging)
        if not (staging / folder).is_dir():
            raise DatasetError(f"{archive.name}: archive does not contain the folder {folder}")
        os.replace(staging / folder, root / folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")  # refuses absolute paths, "..", odd links
    except (tarfile.TarError, OSError) as e:
        raise DatasetError(f"cannot extract the downloaded archive safely ({e})") from None


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            if _escapes_folder(member):
                raise DatasetError(f"refusing to extract the downloaded archive: member "
                                   f"{member!r} points outside the data folder")
        zf.extractall(dest)


def _escapes_folder(member: str) -> bool:
    """True for an absolute path, a drive letter or a ".." part in an archive member name."""
    parts = PurePosixPath(member.replace("\\", "/")).parts
    return member.startswith(("/", "\\")) or ".." in parts or bool(PureWindowsPath(member).drive)


# ---------------------------------------------------------------------------------------------
# Status for the dashboard


def dataset_status(root: str | os.PathLike | None = None) -> dict[str, dict]:
    """{name: {present, path, message}} for digits and each image dataset (a cheap file check)."""
    root = data_root(root)
    status = {"digits": {"present": True, "path": "",
                         "message": "ships with scikit-learn; nothing to place"}}
    for name in IMAGE_DATASETS:
        status[name] = _status_of(name, root)
    return status


def _status_of(name: str, root: Path) -> dict:
    folder = root / DOWNLOADS[name]["folder"]
    if name == "cifar10":
        required = CIFAR10_TRAIN + [CIFAR10_TEST]
        if not folder.is_dir() and (root / CIFAR10_BIN).is_dir():
            folder, required = root / CIFAR10_BIN, [n + ".bin" for n in required]
    else:
        required = CIFAR100_FILES if name == "cifar100" else TINY_FILES
    if not folder.is_dir():
        return {"present": False, "path": str(folder), "message": _missing_message(name, root)}
    try:
        _require_files(name, folder, required)
    except DatasetError as e:
        return {"present": False, "path": str(folder), "message": str(e)}
    message = f"{TITLES[name]} found in {folder}"
    if name == "tiny_imagenet" and not (folder / TINY_CACHE).exists():
        message += " (the first load decodes the JPEGs once and caches them)"
    return {"present": True, "path": str(folder), "message": message}
