"""Checkpoints: one file per run holding everything needed to continue it exactly.

A checkpoint is the dict of `Trainer.state_dict()` (tensors and plain python values only). It
is written atomically: a temporary file in the same folder, fsync, then `os.replace`, so a
process killed at any moment leaves either the previous checkpoint or the new one, never half
of one. It is read with `torch.load(weights_only=True)`, which rebuilds only tensors and
plain containers, numbers and strings, so a crafted file cannot run code.

Runs of a store keep their checkpoint in a folder of that store beside it:
`<store folder>/checkpoints/<store file name>/run-<id>.pt`, only the latest epoch's (two
stores in one folder never share a file). Stores made before that kept them in
`<store folder>/checkpoints/run-<id>.pt`: `adopt_shared` brings such a file into the store's
folder when `mismatch` finds it is the run's own (same config, same records), never another
store's run of the same id. A run also keeps copies at the epochs
`config.kept_checkpoint_epochs` names (`run-<id>-epoch-<e>.pt`, hard links to the file just
written, so keeping one costs no write): the critical-batch measurement
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
FOLDER = "checkpoints"  # beside the store file; one sub-folder per store file


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, refused or of another format; one-line message."""


def store_folder(store_path: str | os.PathLike) -> Path:
    """The folder of the checkpoints of the store at `store_path`, its own (named after it)."""
    store_path = Path(store_path).resolve()
    return store_path.parent / FOLDER / store_path.name


def run_checkpoint_path(store_path: str | os.PathLike, run_id: int) -> Path:
    """Where stored run `run_id` keeps its checkpoint."""
    return path_in(store_folder(store_path), f"run-{operator.index(run_id)}.pt")


def shared_checkpoint_path(store_path: str | os.PathLike, run_id: int) -> Path:
    """Where stores made before per-store folders kept run `run_id`'s checkpoint: a folder
    every store beside it shared, so the file there may be another store's run of that id."""
    folder = Path(store_path).resolve().parent / FOLDER
    return path_in(folder, f"run-{operator.index(run_id)}.pt")


def mismatch(state: dict[str, Any], config: dict, records: list[dict]) -> str | None:
    """Why checkpoint `state` is not of the run with this stored `config` and `records`
    (None: it is): its config differs outside the hot fields (changed while a run trains),
    or its records are not the stored ones (another run, or a record newer than the
    checkpoint missing). One line, for a refusal."""
    from divebatch.config import HOT_FIELDS
    saved = state.get("config")
    if not isinstance(saved, dict):
        return "it holds no config"
    changed = sorted(k for k in set(saved) | set(config)
                     if k not in HOT_FIELDS and saved.get(k) != config.get(k))
    if changed:
        return f"its config differs in {', '.join(changed)}"
    epoch = state.get("epoch")
    stored = {record["epoch"]: record for record in records}
    if [record["epoch"] for record in records][:epoch] != list(range(1, epoch + 1)):
        return f"it is of epoch {epoch}, but {len(records)} epochs are stored"
    ours = [_identity(stored.get(record["epoch"], {})) for record in state.get("records", [])]
    if ours != [_identity(record) for record in state.get("records", [])]:
        return "its records differ from the stored ones (another run with the same config)"
    return None


def adopt_shared(store_path: str | os.PathLike, run_id: int, config: dict,
                 records: list[dict]) -> str | None:
    """Bring run `run_id`'s checkpoint and kept copies from the folder stores used to share
    (`shared_checkpoint_path`) into its store's own folder, each only when `mismatch` finds it
    is this run's and the store's folder has no such file yet; the shared file is removed
    once its records prove it (an epoch-0 copy, which has none, is copied and left). Returns
    why the shared latest checkpoint is not this run's (None when it is, or there is none)."""
    shared, own = shared_checkpoint_path(store_path, run_id), run_checkpoint_path(store_path,
                                                                                   run_id)
    why_not = None
    pairs = [(shared, own)] + [(kept_path(shared, e), kept_path(own, e))
                               for e in kept_epochs(shared)]
    for source, target in pairs:
        if not source.exists() or target.exists():
            continue
        try:
            state = load(source)
        except CheckpointError as error:
            reason = str(error)
        else:
            reason = mismatch(state, config, records)
        if reason is not None:
            why_not = reason if source == shared else why_not
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(source, target)
        if state.get("records"):
            source.unlink(missing_ok=True)
    return why_not


def _identity(record: dict) -> tuple:
    """What tells one run's epoch record from another's: counters and the wall clock."""
    return tuple(record.get(key) for key in ("epoch", "step", "samples_seen", "wall_time"))


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
    _link_or_copy(path, kept)
    return kept


def _link_or_copy(source: Path, target: Path) -> None:
    """`target` becomes the file `source` is: a hard link, a copy where links are not allowed;
    through a temporary name, so `target` is never half written."""
    temporary = target.with_name(f".{target.name}.link.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)


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
