"""CIFAR-10 (python and binary versions) and CIFAR-100 loaders.

The python-version batches are pickles, read with `CifarUnpickler`, which allows only numpy's
array reconstruction and plain types, so a crafted pickle cannot run code.
"""

from __future__ import annotations

import os
import pickle
from functools import partial
from pathlib import Path

import numpy as np
import torch

from divebatch.data.image_files import (CIFAR100_FILES, CIFAR10_BIN, CIFAR10_CLASSES, CIFAR10_PY, CIFAR10_TEST,
                     CIFAR10_TRAIN, CIFAR_PIXELS, DOWNLOADS, DatasetError,
                     ImageArrays, missing_message, require_files, data_root)


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
        raise DatasetError(missing_message("cifar10", root))
    require_files("cifar10", folder, names)
    x_train, y_train = _read_cifar_files([folder / n for n in names[:-1]], read, 10)
    x_val, y_val = _read_cifar_files([folder / names[-1]], read, 10)
    return ImageArrays(x_train, y_train, x_val, y_val, list(CIFAR10_CLASSES), 10, "cifar10")


def load_cifar100(root: str | os.PathLike | None = None) -> ImageArrays:
    """CIFAR-100 (python version) with its 100 fine labels."""
    root = data_root(root)
    folder = root / DOWNLOADS["cifar100"]["folder"]
    if not folder.is_dir():
        raise DatasetError(missing_message("cifar100", root))
    require_files("cifar100", folder, CIFAR100_FILES)
    names = _load_cifar_pickle(folder / "meta").get(b"fine_label_names")
    if not isinstance(names, list) or len(names) != 100:
        raise DatasetError(f"{folder / 'meta'}: expected 100 fine_label_names")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    read = partial(_cifar_batch, label_key=b"fine_labels")
    x_train, y_train = _read_cifar_files([folder / "train"], read, 100)
    x_val, y_val = _read_cifar_files([folder / "test"], read, 100)
    return ImageArrays(x_train, y_train, x_val, y_val, classes, 100, "cifar100")
