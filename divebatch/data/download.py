"""Explicit download of a dataset: streamed, md5-verified, then extracted safely."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from divebatch.data.image_files import (DOWNLOADS, DatasetError, Progress, data_root)



def download(name: str, root: str | os.PathLike | None = None,
             progress: Progress | None = None) -> Path:
    """Download, verify (md5) and extract dataset `name` into the data folder; return its folder.

    Does nothing when the folder is already there. The archive is streamed to a temp file,
    its md5 checked before anything is extracted, and extracted into a temp folder that is
    renamed into place at the end, so a failure leaves no partial dataset behind (nor the
    data folder, when this call made it and it is still empty).
    """
    if name not in DOWNLOADS:
        raise DatasetError(f"unknown dataset {name!r} to download; "
                           f"choose one of {', '.join(DOWNLOADS)}")
    root = data_root(root)
    source = DOWNLOADS[name]
    target = root / source["folder"]
    if target.is_dir():
        return target
    made = [folder for folder in (root, *root.parents) if not folder.exists()]
    root.mkdir(parents=True, exist_ok=True)
    try:
        archive = _fetch(source["url"], root, progress)
        try:
            _verify_md5(archive, source["md5"], source["url"])
            _extract_into(archive, root, source["folder"])
        finally:
            archive.unlink(missing_ok=True)
    except BaseException:
        _remove_empty(made)  # an offline download leaves no empty data/ folder behind
        raise
    return target


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this download made (deepest first) that are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another download, a user's file) or already gone
            return


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
