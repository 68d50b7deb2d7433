"""Image dataset files: tiny CIFAR / Tiny-ImageNet folders written here in the real formats."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from divebatch.data import image_files, images, tiny_imagenet
from divebatch.data.images import DatasetError, ImageArrays
from tests.helpers.dataset_files import (N_PER_BATCH, TINY_COLORS, TINY_VAL, TINY_WNIDS,
                                         make_cifar10_binary, make_cifar10_python,
                                         make_cifar100, make_tiny_imagenet, save_jpeg,
                                         write_py2_pickle)

def expected_cifar(batches: dict, names: list[str]):
    x = np.concatenate([batches[n][0] for n in names]).reshape(-1, 3, 32, 32)
    y = np.concatenate([batches[n][1] for n in names])
    return torch.from_numpy(x), torch.from_numpy(y).long()


TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def check_cifar10(data: ImageArrays, batches: dict) -> None:
    x_train, y_train = expected_cifar(batches, TRAIN_BATCHES)
    x_val, y_val = expected_cifar(batches, ["test_batch"])
    assert data.x_train.dtype == torch.uint8 and data.y_train.dtype == torch.int64
    assert data.x_train.shape == (5 * N_PER_BATCH, 3, 32, 32)
    assert data.x_val.shape == (N_PER_BATCH, 3, 32, 32)
    assert torch.equal(data.x_train, x_train) and torch.equal(data.y_train, y_train)
    assert torch.equal(data.x_val, x_val) and torch.equal(data.y_val, y_val)
    assert data.classes == image_files.CIFAR10_CLASSES and data.n_classes == 10
    assert data.name == "cifar10"


# ---------------------------------------------------------------------------------------------
# CIFAR loading


def test_cifar10_python_official_style(tmp_path):
    batches = make_cifar10_python(tmp_path)
    check_cifar10(images.load_cifar10(tmp_path), batches)


def test_cifar10_python_written_by_numpy2(tmp_path):
    batches = make_cifar10_python(tmp_path, numpy2_pickles=True)
    check_cifar10(images.load_cifar10(tmp_path), batches)


def test_cifar10_pixel_layout_is_channel_major(tmp_path):
    """Bytes 0..1023 of a row are the red plane, row-major: pixel (r, c) is byte 32 r + c."""
    batches = make_cifar10_python(tmp_path)
    data = images.load_cifar10(tmp_path)
    raw = batches["data_batch_1"][0][0]
    assert data.x_train[0, 0, 1, 2] == raw[32 + 2]
    assert data.x_train[0, 2, 31, 31] == raw[3071]


def test_cifar10_binary(tmp_path):
    batches = make_cifar10_binary(tmp_path)
    check_cifar10(images.load_cifar10(tmp_path), batches)


def test_cifar10_prefers_python_version(tmp_path):
    python_batches = make_cifar10_python(tmp_path, seed=5)
    make_cifar10_binary(tmp_path, seed=6)
    check_cifar10(images.load_cifar10(tmp_path), python_batches)


def test_cifar100(tmp_path):
    batches = make_cifar100(tmp_path)
    data = images.load_cifar100(tmp_path)
    x_train, y_train = expected_cifar(batches, ["train"])
    x_val, y_val = expected_cifar(batches, ["test"])
    assert torch.equal(data.x_train, x_train) and torch.equal(data.y_train, y_train)
    assert torch.equal(data.x_val, x_val) and torch.equal(data.y_val, y_val)
    assert data.n_classes == 100 and data.classes[:2] == ["c00", "c01"]
    assert images.load_images("cifar100", tmp_path).name == "cifar100"


def test_data_root_from_environment(tmp_path, monkeypatch):
    batches = make_cifar10_binary(tmp_path)
    monkeypatch.setenv("DIVEBATCH_DATA", str(tmp_path))
    assert images.data_root(None) == tmp_path and images.data_root("") == tmp_path
    assert images.data_root("elsewhere") == Path("elsewhere")
    check_cifar10(images.load_images("cifar10"), batches)
    monkeypatch.delenv("DIVEBATCH_DATA")
    assert images.data_root() == Path("data")


# ---------------------------------------------------------------------------------------------
# Malicious, truncated and missing files


class SystemPayload:
    """Unpickling calls `function`, which would create the file `marker`."""
    function = os.system

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class ExecPayload(SystemPayload):
    function = exec

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


class NumpySavePayload(SystemPayload):
    function = np.save

    def __reduce__(self):
        return np.save, (str(self.marker), np.zeros(1))


@pytest.mark.parametrize("payload", [SystemPayload, ExecPayload, NumpySavePayload])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, payload):
    make_cifar10_python(tmp_path)
    marker = tmp_path / "pwned"
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    write_py2_pickle(bad, {b"labels": [], b"data": payload(marker)})
    with pytest.raises(DatasetError, match="refused global") as error:
        images.load_cifar10(tmp_path)
    message = str(error.value)
    assert "data_batch_2" in message and "\n" not in message
    assert f".{payload.function.__name__}," in message  # refused for the payload itself
    assert not marker.exists() and not marker.with_suffix(".npy").exists()


def test_truncated_pickle_names_the_file(tmp_path):
    make_cifar10_python(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="test_batch"):
        images.load_cifar10(tmp_path)


def test_truncated_binary_names_the_file(tmp_path):
    make_cifar10_binary(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_4.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="data_batch_4.bin.*truncated"):
        images.load_cifar10(tmp_path)


def test_wrong_shape_names_the_file(tmp_path):
    make_cifar100(tmp_path)
    write_py2_pickle(tmp_path / "cifar-100-python" / "train",
                     {b"data": np.zeros((4, 100), np.uint8), b"fine_labels": [0, 1, 2, 3]})
    with pytest.raises(DatasetError, match=r"train: expected data uint8 \(N, 3072\)"):
        images.load_cifar100(tmp_path)


def test_label_out_of_range(tmp_path):
    make_cifar10_binary(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    raw[0] = 10
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="test_batch.bin: labels outside 0..9"):
        images.load_cifar10(tmp_path)


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"),
                                          ("cifar100", "cifar-100-python"),
                                          ("tiny_imagenet", "tiny-imagenet-200")])
def test_missing_dataset_says_where_and_how(tmp_path, name, folder):
    with pytest.raises(DatasetError) as error:
        images.load_images(name, tmp_path)
    message = str(error.value)
    assert folder in message and str(tmp_path) in message
    assert f"python -m divebatch download {name}" in message and "\n" not in message
    assert isinstance(error.value, ValueError)


def test_incomplete_folder_names_the_missing_file(tmp_path):
    make_cifar10_python(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3 is missing.*download cifar10"):
        images.load_cifar10(tmp_path)


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DatasetError, match="unknown image dataset 'mnist'"):
        images.load_images("mnist", tmp_path)


# ---------------------------------------------------------------------------------------------
# Tiny-ImageNet


def check_tiny(data: ImageArrays) -> None:
    sorted_wnids = sorted(TINY_WNIDS)
    assert data.x_train.shape == (6, 3, 64, 64) and data.x_train.dtype == torch.uint8
    assert data.y_train.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.y_val.tolist() == [sorted_wnids.index(w) for _, w in TINY_VAL]
    assert data.x_val.shape == (len(TINY_VAL), 3, 64, 64)
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        colors = torch.tensor([TINY_COLORS[sorted_wnids[label]] for label in y.tolist()])
        mean_color = x.float().mean(dim=(2, 3))  # (N, 3)
        assert (mean_color - colors).abs().max() < 4  # JPEG is lossy, slightly
    assert data.classes == ["goldfish", "tabby", "lighthouse"] and data.n_classes == 3


def test_tiny_imagenet_decodes_then_reuses_cache(tmp_path, monkeypatch):
    folder = make_tiny_imagenet(tmp_path)
    seen = []
    check_tiny(images.load_tiny_imagenet(tmp_path, progress=lambda d, t: seen.append((d, t))))
    assert seen[-1] == (10, 10)
    assert (folder / "cache_uint8.npz").exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []

    def no_decoding(path):
        raise AssertionError("decoded a JPEG although the cache is valid")

    monkeypatch.setattr(tiny_imagenet, "_decode_jpeg", no_decoding)
    check_tiny(images.load_images("tiny_imagenet", tmp_path))


def test_tiny_imagenet_rebuilds_a_bad_cache(tmp_path):
    folder = make_tiny_imagenet(tmp_path)
    np.savez(folder / "cache_uint8.npz", x_train=np.zeros((6, 3, 32, 32), np.uint8),
             y_train=np.zeros(6, np.int64), x_val=np.zeros((4, 3, 64, 64), np.uint8),
             y_val=np.zeros(4, np.int64), wnids=np.asarray(sorted(TINY_WNIDS)))
    check_tiny(images.load_tiny_imagenet(tmp_path))
    (folder / "cache_uint8.npz").write_bytes(b"not a zip file")
    check_tiny(images.load_tiny_imagenet(tmp_path))


def test_tiny_imagenet_greyscale_becomes_rgb(tmp_path):
    folder = make_tiny_imagenet(tmp_path)
    save_jpeg(folder / "train" / "n01" / "images" / "n01_0.JPEG", (120, 120, 120), mode="L")
    data = images.load_tiny_imagenet(tmp_path)
    assert data.x_train.shape == (6, 3, 64, 64)
    assert (data.x_train[0].float() - 120).abs().max() < 4


def test_tiny_imagenet_wrong_image_size_names_the_file(tmp_path):
    folder = make_tiny_imagenet(tmp_path)
    save_jpeg(folder / "val" / "images" / "val_1.JPEG", (0, 0, 0), size=32)
    with pytest.raises(DatasetError, match="val_1.JPEG: expected a 64x64 image"):
        images.load_tiny_imagenet(tmp_path)
    assert not (folder / "cache_uint8.npz").exists()


def test_tiny_imagenet_missing_val_annotations(tmp_path):
    folder = make_tiny_imagenet(tmp_path)
    (folder / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DatasetError, match="val_annotations.txt is missing"):
        images.load_tiny_imagenet(tmp_path)


# ---------------------------------------------------------------------------------------------
# Download: file:// archives made here


def make_archive(tmp_path: Path, make, kind: str) -> Path:
    """Build a dataset folder with `make` in a scratch dir and pack it as tar.gz or zip."""
    source = tmp_path / "source"
    make(source)
    folder = next(p for p in source.iterdir() if p.is_dir())
    archive = tmp_path / f"archive.{kind}"
    if kind == "tar.gz":
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
    else:
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted(folder.rglob("*")):
                zf.write(path, path.relative_to(source).as_posix())
    return archive


def point_download_at(monkeypatch, name: str, archive: Path, md5: str | None = None) -> None:
    md5 = md5 or hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(images.DOWNLOADS, name, {**images.DOWNLOADS[name],
                                                 "url": archive.as_uri(), "md5": md5})


def test_download_verifies_and_extracts(tmp_path, monkeypatch):
    archive = make_archive(tmp_path, make_cifar10_python, "tar.gz")
    point_download_at(monkeypatch, "cifar10", archive)
    root = tmp_path / "data"
    seen = []
    folder = images.download("cifar10", root, progress=lambda d, t: seen.append((d, t)))
    assert folder == root / "cifar-10-batches-py"
    assert seen[-1][0] == archive.stat().st_size
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # no temp files
    assert images.load_cifar10(root).x_train.shape == (5 * N_PER_BATCH, 3, 32, 32)
    assert images.download("cifar10", root) == folder  # already there: nothing fetched


def test_download_wrong_checksum_extracts_nothing(tmp_path, monkeypatch):
    archive = make_archive(tmp_path, make_cifar100, "tar.gz")
    point_download_at(monkeypatch, "cifar100", archive, md5="0" * 32)
    root = tmp_path / "data"
    root.mkdir()  # the user's folder: a failed download leaves it there, empty
    with pytest.raises(DatasetError, match="checksum mismatch"):
        images.download("cifar100", root)
    assert list(root.iterdir()) == []


def test_download_zip(tmp_path, monkeypatch):
    archive = make_archive(tmp_path, make_tiny_imagenet, "zip")
    point_download_at(monkeypatch, "tiny_imagenet", archive)
    root = tmp_path / "data"
    images.download("tiny_imagenet", root)
    check_tiny(images.load_tiny_imagenet(root))


def test_download_refuses_zip_path_traversal(tmp_path, monkeypatch):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n01\n")
        zf.writestr("../../escaped.txt", "gotcha")
    point_download_at(monkeypatch, "tiny_imagenet", archive)
    root = tmp_path / "a" / "data"
    with pytest.raises(DatasetError, match="outside the data folder"):
        images.download("tiny_imagenet", root)
    assert not (tmp_path / "a").exists()  # the folders this call made go with the failure
    assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("*"))


def test_download_refuses_tar_path_traversal(tmp_path, monkeypatch):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("cifar-100-python/meta", "../escaped.txt"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    point_download_at(monkeypatch, "cifar100", archive)
    root = tmp_path / "a" / "data"
    with pytest.raises(DatasetError, match="safely"):
        images.download("cifar100", root)
    assert not (tmp_path / "a").exists()
    assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("*"))


def test_download_archive_without_the_folder(tmp_path, monkeypatch):
    archive = make_archive(tmp_path, make_cifar100, "tar.gz")
    point_download_at(monkeypatch, "cifar10", archive)
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="does not contain the folder cifar-10-batches-py"):
        images.download("cifar10", root)
    assert not root.exists()


def test_download_unreachable_or_unknown(tmp_path, monkeypatch):
    point_download_at(monkeypatch, "cifar10", tmp_path / "nowhere.tar.gz", md5="0" * 32)
    with pytest.raises(DatasetError, match="could not download"):
        images.download("cifar10", tmp_path / "data")
    assert not (tmp_path / "data").exists()  # no empty folder left by an offline download
    with pytest.raises(DatasetError, match="unknown dataset 'digits'"):
        images.download("digits", tmp_path / "data")


def test_official_download_table():
    assert images.DOWNLOADS["cifar10"]["md5"] == "c58f30108f718f92721af3b95e74349a"
    assert images.DOWNLOADS["cifar100"]["md5"] == "eb9058c3a382ffc7106e4002c42a8d85"
    assert images.DOWNLOADS["tiny_imagenet"]["md5"] == "90528d7ca1a48142e341f4ef8d21d0de"
    assert all(d["url"].startswith(("https://", "http://")) for d in images.DOWNLOADS.values())


# ---------------------------------------------------------------------------------------------
# Status for the dashboard


def test_dataset_status(tmp_path):
    status = images.dataset_status(tmp_path)
    assert set(status) == {"digits", "cifar10", "cifar100", "tiny_imagenet"}
    assert status["digits"]["present"]
    for name in ("cifar10", "cifar100", "tiny_imagenet"):
        assert not status[name]["present"]
        assert f"python -m divebatch download {name}" in status[name]["message"]
    make_cifar10_binary(tmp_path)
    make_cifar100(tmp_path)
    (make_tiny_imagenet(tmp_path) / "val" / "val_annotations.txt").unlink()
    status = images.dataset_status(tmp_path)
    assert status["cifar10"]["present"] and status["cifar10"]["path"].endswith("batches-bin")
    assert status["cifar100"]["present"]
    assert not status["tiny_imagenet"]["present"]
    assert "val_annotations.txt is missing" in status["tiny_imagenet"]["message"]
