"""Epoch records as a test compares them: everything but the timings."""

from __future__ import annotations

from divebatch.training.records import TIMING_FIELDS


def comparable(records) -> list[dict]:
    """Records without their timings, as dicts (EpochRecords or stored rows)."""
    rows = [r if isinstance(r, dict) else r.to_dict() for r in records]
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]
