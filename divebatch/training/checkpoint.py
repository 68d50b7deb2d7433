"""Checkpoints: one file per run holding everything needed to continue it exactly.

A checkpoint is the dict of `Trainer.state_dict()` (tensors and plain python values only). It
is written atomically: a temporary file in the same folder, fsync, then `os.replace`, so a
process killed at any moment leaves either the previous checkpoint or the new one, never half
of one. It is read with `torch.load(weights_only=True)`, which rebuilds only tensors and
plain containers, numbers and strings, so a crafted file cannot run code.

Runs of a store keep their checkpoint next to the store file:
`<store folder>/checkpoints/run-<id>.pt`, only the latest epoch's. A run also keeps copies at
the epochs `config.kept_checkpoint_epochs` names (`run-<id>-epoch-<e>.pt`, hard links to the
file just written, so keeping one costs no write): the critical-batch measurement
(`divebatch.experiments.critical_batch`) branches from them after the run has ended.

>>> import tempfile, torch
>>> path = Path(tempfile.mkdtemp()) / "demo.pt"
>>> save(path, {"epoch": 3, "weights": torch.ones(2)})
>>> load(path)["epoch"]
3
"""

from __future__ import annotations

import operator
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from divebatch.paths import path_in

FORMAT_VERSION = 1  # bump when Trainer.state_dict() changes incompatibly
FOLDER = "checkpoints"  # beside the store file


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, refused or of another format; one-line message."""


def run_checkpoint_path(store_path: str | os.PathLike, run_id: int) -> Path:
    """Where stored run `run_id` keeps its checkpoint."""
    folder = Path(store_path).resolve().parent / FOLDER
    return path_in(folder, f"run-{operator.index(run_id)}.pt")


def save(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (temp file, fsync, rename, fsync of the folder)."""
    import torch  # here, not at the top: the CLI's list / prune need only the paths

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT_VERSION, "state": state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """The state saved at `path`; CheckpointError (one line) if it cannot be used."""
    import torch

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except pickle.UnpicklingError as error:  # weights_only refused a global (code to run)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        culprit = found.group(1) if found else "a python object"
        raise CheckpointError(f"cannot load the checkpoint {path}: refused, it holds "
                              f"{culprit}, not only tensors and plain values") from None
    except Exception as error:  # truncation, not a torch file, ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot load the checkpoint {path}: {reason}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT_VERSION \
            or not isinstance(content.get("state"), dict):
        raise CheckpointError(f"{path} is not a divebatch checkpoint of format {FORMAT_VERSION}")
    return content["state"]


def kept_path(path: str | os.PathLike, epoch: int) -> Path:
    """Where the copy of checkpoint `path` kept at `epoch` lives."""
    path = Path(path)
    return path.with_name(f"{path.stem}-epoch-{operator.index(epoch)}{path.suffix}")


def keep(path: str | os.PathLike, epoch: int) -> Path:
    """Keep the checkpoint now at `path` as the one of `epoch` (a hard link: the next `save`
    replaces `path`'s name, not this file; a copy where links are not allowed)."""
    kept = kept_path(path, epoch)
    temporary = kept.with_name(f".{kept.name}.link.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(path, temporary)
    except OSError:
        shutil.copyfile(path, temporary)
    os.replace(temporary, kept)
    return kept


def kept_epochs(path: str | os.PathLike) -> list[int]:
    """The epochs whose copies of checkpoint `path` are kept, in order."""
    path = Path(path)
    found = (re.fullmatch(rf"{re.escape(path.stem)}-epoch-(\d+){re.escape(path.suffix)}",
                          kept.name) for kept in path.parent.glob(f"{path.stem}-epoch-*"))
    return sorted(int(match.group(1)) for match in found if match)


def remove_kept(path: str | os.PathLike) -> None:
    """Delete every kept copy of checkpoint `path`."""
    for epoch in kept_epochs(path):
        kept_path(path, epoch).unlink(missing_ok=True)


def remove(path: str | os.PathLike) -> None:
    """Delete the checkpoint at `path` and any temp file a killed writer left (no-op if absent)."""
    path = Path(path)
    path.unlink(missing_ok=True)
    _remove_leftovers(path)


def _remove_leftovers(path: Path) -> None:
    """Temp files of a writer killed before its rename (one writer per path at a time)."""
    if path.parent.is_dir():
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
