"""File names that come from users (run names, export names) turned into names that stay in
their folder.

>>> safe_filename("../../etc/passwd")
'etc_passwd'
>>> safe_filename("lr=0.1, B=128.csv")
'lr_0.1_B_128.csv'
>>> safe_filename("..", default="run")
'run'
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_NAME_LENGTH = 120  # characters; well under every file system's limit
UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")  # everything but ASCII letters, digits, . _ -
# Names Windows refuses whatever their extension (a dashboard export may land there).
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                    *(f"LPT{i}" for i in range(1, 10))}


def safe_filename(name: str, default: str = "run") -> str:
    """A plain file name made from `name`: ASCII letters, digits, `.`, `_` and `-` only, no
    path separators, never hidden or starting with `-`, at most MAX_NAME_LENGTH characters
    (the extension kept); `default` when nothing usable is left."""
    text = UNSAFE_CHARACTERS.sub("_", str(name)).strip("._-")
    text = re.sub(r"_{2,}", "_", text).replace("_.", ".")
    if len(text) > MAX_NAME_LENGTH:
        stem, dot, suffix = text.rpartition(".")
        keep = suffix if dot and stem and len(suffix) <= 10 else ""
        text = text[:MAX_NAME_LENGTH - len(keep) - 1].rstrip("._-") + (f".{keep}" if keep else "")
    if not text or text.split(".")[0].upper() in WINDOWS_RESERVED:
        return default
    return text


def path_in(folder: str | os.PathLike, name: str) -> Path:
    """`folder / name` for a plain file name; ValueError if `name` would leave `folder`."""
    folder = Path(folder).resolve()
    target = (folder / name).resolve()
    if target.parent != folder or name != safe_filename(name, default=""):
        raise ValueError(f"name should be a plain file name inside {folder}, but got "
                         f"name={name!r}")
    return target
