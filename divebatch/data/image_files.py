"""What the image-dataset loaders share: folder names, archive URLs, the data folder, the
`ImageArrays` they return and the one-line `DatasetError` messages (`divebatch.data.images` is
the entry point that users call)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import torch

from divebatch.config import IMAGE_DATASETS  # noqa: F401  (the loaders' names)

# progress(done, total): bytes for downloads, images for Tiny-ImageNet decoding;
# total is None when unknown.
Progress = Callable[[int, "int | None"], None]

DATA_ENV = "DIVEBATCH_DATA"
DEFAULT_DATA_DIR = "data"

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


# ---------------------------------------------------------------------------------------------
# Messages shared by the loaders and dataset_status


def missing_message(name: str, root: Path) -> str:
    folder = DOWNLOADS[name]["folder"]
    archive = _archive_name(name)
    extra = " (or cifar-10-batches-bin from the binary version)" if name == "cifar10" else ""
    return (f"{TITLES[name]} not found: place the folder {folder}{extra} (from {archive}) "
            f"in {root}/, or run: python -m divebatch download {name}")


def incomplete_message(name: str, path: Path) -> str:
    return (f"{TITLES[name]} incomplete: {path} is missing; re-extract "
            f"{_archive_name(name)} or run: python -m divebatch download {name}")


def _archive_name(name: str) -> str:
    return PurePosixPath(DOWNLOADS[name]["url"]).name


def require_files(name: str, folder: Path, relative_paths) -> None:
    """Raise DatasetError naming the first of `relative_paths` missing under `folder`."""
    for relative in relative_paths:
        if not (folder / relative).exists():
            raise DatasetError(incomplete_message(name, folder / relative))
