"""Epoch records as tests write and compare them."""

from __future__ import annotations

from divebatch.training.records import TIMING_FIELDS

# One epoch's record as the store keeps it.
RECORD = {"epoch": 1, "step": 40, "samples_seen": 5120, "train_time": 0.8, "wall_time": 1.1,
          "batch_size": 128, "lr": 0.1, "diversity": None, "train_loss": 0.71,
          "val_loss": 0.74, "val_acc": 0.81}


def comparable(records) -> list[dict]:
    """Records without their timings, as dicts (EpochRecords or stored rows)."""
    rows = [r if isinstance(r, dict) else r.to_dict() for r in records]
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]
