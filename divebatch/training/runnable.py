"""Whether a RunConfig can run here: the device exists and the dataset is on disk."""

from __future__ import annotations

from divebatch.data.problems import check_available
from divebatch.device_options import resolve_device


def check_runnable(config) -> None:
    """Raise ValueError (one line naming the field) when the device or the dataset is missing."""
    resolve_device(config.device)
    check_available(config)
