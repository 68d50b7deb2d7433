"""Image datasets on disk: CIFAR-10, CIFAR-100 and Tiny-ImageNet-200, without torchvision.

Every loader returns an `ImageArrays` of uint8 tensors in channels-first layout; augmentation
and normalisation happen later, on the training device (`divebatch.data.augment`).

Datasets live under one data folder: the `root` argument, else $DIVEBATCH_DATA, else `data/`
(the CLI's --data-dir and RunConfig.data_dir feed `root`). Nothing is ever downloaded
implicitly: a missing dataset raises `DatasetError` with one line saying what to place where,
and only the explicit `download()` (CLI: `python -m divebatch download NAME`) uses the network.

The loaders live in `divebatch.data.cifar` and `divebatch.data.tiny_imagenet`, the downloader in
`divebatch.data.download`; `divebatch.data.image_files` holds what they share; this module is the one entry point.
CIFAR's python-format files are pickles, read with a restricted unpickler (`CifarUnpickler`)
that allows only numpy's array reconstruction, so a crafted pickle cannot run code.

>>> status = dataset_status("data")
>>> status["digits"]["present"]
True
"""

from __future__ import annotations

import os
from pathlib import Path

from divebatch.data.cifar import load_cifar10, load_cifar100
from divebatch.data.download import download
from divebatch.data.image_files import (CIFAR100_FILES, CIFAR10_BIN, CIFAR10_TEST, CIFAR10_TRAIN,
                                        DOWNLOADS, IMAGE_DATASETS, TINY_CACHE, TINY_FILES,
                                        TITLES, DatasetError, ImageArrays, Progress,
                                        data_root, missing_message, require_files)
from divebatch.data.tiny_imagenet import load_tiny_imagenet

__all__ = ["DOWNLOADS", "IMAGE_DATASETS", "DatasetError", "ImageArrays", "data_root",
           "dataset_status", "download", "load_images"]


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
        return {"present": False, "path": str(folder), "message": missing_message(name, root)}
    try:
        require_files(name, folder, required)
    except DatasetError as e:
        return {"present": False, "path": str(folder), "message": str(e)}
    message = f"{TITLES[name]} found in {folder}"
    if name == "tiny_imagenet" and not (folder / TINY_CACHE).exists():
        message += " (the first load decodes the JPEGs once and caches them)"
    return {"present": True, "path": str(folder), "message": message}
