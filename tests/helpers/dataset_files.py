"""Tiny image datasets written in the real file formats (CIFAR-10 python and binary,
CIFAR-100, Tiny-ImageNet), for the loaders' tests and for runs on image problems."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from divebatch.data import image_files

N_PER_BATCH = 20  # images per CIFAR batch file (10000 in the real files)


class Py2StylePickler(pickle._Pickler):
    """Writes str and bytes as Python 2 byte strings (SHORT_BINSTRING), as the real CIFAR
    files do: they were pickled by Python 2 with protocol 2."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def write_py2_pickle(path: Path, obj) -> None:
    """A pickle byte-for-byte in the style of the official files (numpy 1.x global names)."""
    buffer = io.BytesIO()
    Py2StylePickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue().replace(b"numpy._core.multiarray\n",
                                               b"numpy.core.multiarray\n"))


def random_cifar(rng, n: int, n_classes: int):
    """(data (n, 3072) uint8, labels list) like one CIFAR batch."""
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return data, [int(v) for v in rng.integers(0, n_classes, size=n)]


def make_cifar10_python(root: Path, seed: int = 0, numpy2_pickles: bool = False) -> dict:
    """cifar-10-batches-py with 5 train batches + test batch; returns the expected arrays."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data, labels = random_cifar(rng, N_PER_BATCH, 10)
        content = {b"batch_label": b"training batch", b"labels": labels, b"data": data,
                   b"filenames": [b"img_%d.png" % i for i in range(N_PER_BATCH)]}
        if numpy2_pickles:
            (folder / name).write_bytes(pickle.dumps(content, protocol=4))
        else:
            write_py2_pickle(folder / name, content)
        batches[name] = (data, labels)
    write_py2_pickle(folder / "batches.meta", {b"label_names": [
        c.encode() for c in image_files.CIFAR10_CLASSES], b"num_vis": 3072})
    return batches


def make_cifar10_binary(root: Path, seed: int = 1) -> dict:
    """cifar-10-batches-bin: files of records (1 label byte + 3072 pixel bytes)."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data, labels = random_cifar(rng, N_PER_BATCH, 10)
        records = np.concatenate([np.asarray(labels, np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
        batches[name] = (data, labels)
    return batches


def make_cifar100(root: Path, seed: int = 2) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name, n in (("train", 50), ("test", 10)):
        data, labels = random_cifar(rng, n, 100)
        write_py2_pickle(folder / name, {b"data": data, b"fine_labels": labels,
                                         b"coarse_labels": [v // 5 for v in labels]})
        batches[name] = (data, labels)
    write_py2_pickle(folder / "meta", {b"fine_label_names": [b"c%02d" % i for i in range(100)],
                                       b"coarse_label_names": [b"s%d" % i for i in range(20)]})
    return batches


TINY_WNIDS = ["n03", "n01", "n02"]  # as listed in wnids.txt; labels follow sorted order
TINY_COLORS = {"n01": (250, 10, 10), "n02": (10, 250, 10), "n03": (10, 10, 250)}
TINY_VAL = [("val_0.JPEG", "n02"), ("val_1.JPEG", "n03"), ("val_2.JPEG", "n01"),
            ("val_3.JPEG", "n02")]


def save_jpeg(path: Path, color, mode: str = "RGB", size: int = 64) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).convert(mode).save(path, quality=95)


def make_tiny_imagenet(root: Path, per_class: int = 2) -> Path:
    """tiny-imagenet-200 in the standard layout, solid-colour 64x64 JPEGs per class."""
    folder = root / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(w + "\n" for w in TINY_WNIDS))
    (folder / "words.txt").write_text("n00\tentity\nn01\tgoldfish, Carassius auratus\n"
                                      "n02\ttabby, tabby cat\nn03\tlighthouse\n")
    for wnid in TINY_WNIDS:
        for k in range(per_class):
            save_jpeg(folder / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", TINY_COLORS[wnid])
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for filename, wnid in TINY_VAL:
        save_jpeg(folder / "val" / "images" / filename, TINY_COLORS[wnid])
        lines.append(f"{filename}\t{wnid}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    return folder
