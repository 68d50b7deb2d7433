"""Tiny-ImageNet-200: the JPEG folders are decoded once into a uint8 cache next to them."""

from __future__ import annotations

import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from divebatch.data.image_files import (DOWNLOADS, TINY_CACHE, TINY_FILES, TINY_SIZE, DatasetError, ImageArrays,
                     Progress, incomplete_message, missing_message,
                     require_files, data_root)


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
        raise DatasetError(missing_message("tiny_imagenet", root))
    require_files("tiny_imagenet", folder, TINY_FILES)
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
            raise DatasetError(incomplete_message("tiny_imagenet", images))
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
