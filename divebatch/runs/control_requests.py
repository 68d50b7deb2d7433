"""Control requests to a stored run's worker, through the store's control rows.

The dashboard and the CLI write a request (`request_stop`, `request_hot_change`,
`request_play`, `request_pace`); the worker's trainer reads them between steps through its
`StoreControl` and acts between epochs (never during training time).
"""

from __future__ import annotations

from collections.abc import Callable

from divebatch.config import PACE_FIELDS, RunConfig, check_hot_change
from divebatch.runs.store import RunStore

PLAY_CONTROLS = ("pause", "resume", "step")


class StoreControl:
    """The trainer's control channel backed by the store's control rows."""

    def __init__(self, store: RunStore, run_id: int):
        self.store, self.run_id = store, run_id

    def poll(self) -> list[dict]:
        return self.store.take_controls(self.run_id)


def request_stop(store: RunStore, run_id: int) -> None:
    """Stop a running run between steps, or cancel a queued one at once."""
    if store.cancel_queued(run_id):
        return
    store.send_control(run_id, "stop")


def request_hot_change(store: RunStore, run_id: int, name_of: Callable[[str], str] = str,
                       **hot) -> None:
    """Change hot parameters (config.HOT_FIELDS) of a running run between epochs; a bad
    value raises ValueError naming its field by `name_of` (a page's label)."""
    check_hot_change(RunConfig.from_dict(store.get_run(run_id)["config"]), hot,
                     name_of=name_of)
    store.send_control(run_id, "set", hot)


def request_play(store: RunStore, run_id: int, kind: str) -> None:
    """"pause" (at the next epoch end), "resume", or "step" (while paused: one more epoch,
    then paused again) a running run."""
    if kind not in PLAY_CONTROLS:
        raise ValueError(f"kind should be one of {', '.join(PLAY_CONTROLS)}, but got "
                         f"kind={kind!r}")
    store.send_control(run_id, kind)


def request_pace(store: RunStore, run_id: int, pace_s: float) -> None:
    """Set a running run's classroom pace: each epoch lasts at least `pace_s` seconds."""
    check_hot_change(RunConfig(), {"pace_s": pace_s}, PACE_FIELDS)
    store.send_control(run_id, "pace", {"pace_s": pace_s})


def is_paused(store: RunStore, run_id: int) -> bool:
    """Whether the run's worker is waiting, paused, between two epochs."""
    return bool((store.get_progress(run_id) or {}).get("paused"))
