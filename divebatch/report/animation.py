"""A race as an animation: the dashboard's charts growing epoch by epoch, from stored runs,
written as an animated GIF or an MP4, with the verdict on the last frame.

Each frame holds the plotly specs the dashboard would draw if the runs had stopped at that
epoch (figures.SPECS on the records up to it), so the animation shows the same series,
colours, dashes and labels as the live charts; `animation_draw` paints the specs with
matplotlib (offline: no browser), and `animation_encode` writes the frames with Pillow (GIF)
or the ffmpeg binary of the imageio-ffmpeg wheel (MP4).

One frame per epoch of the longest run, up to MAX_FRAMES (a longer race shows evenly spaced
epochs, always its last); the last frame, with the verdict, stays on screen HOLD_S seconds.

>>> frame_epochs(5), frame_epochs(1000)[:3], frame_epochs(1000)[-1], len(frame_epochs(1000))
([1, 2, 3, 4, 5], [1, 11, 21], 1000, 100)
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from divebatch.report import figures
from divebatch.report.animation_settings import (DEFAULT_SPEED, FORMATS, HOLD_S, MAX_FRAMES,
                                                 SPEEDS)
from divebatch.report.figures import ChartOptions, RunData
from divebatch.report.target_table import build as build_target_table
from divebatch.experiments import verdicts

CHARTS_SHOWN = 4   # the dashboard's 2x2 grid


class AnimationError(ValueError):
    """Bad input for an animation (no runs, unknown runs, runs that do not race): one line."""


@dataclass
class Frame:
    """What one frame draws: the plotly spec of each chart, as the dashboard would build it
    from the records up to `epoch`."""
    epoch: int
    charts: dict[str, dict]   # chart name -> plotly spec (figures.SPECS)
    title: str
    verdict: str = ""         # the last frame only


@dataclass
class Race:
    frames: list[Frame]
    legend: dict              # figures.legend_spec of the finished race (every frame's)
    notes: list[str]          # settings that never changed ("Learning rate: 0.1 in every ...")
    last_epoch: int


def frame_epochs(last_epoch: int, max_frames: int = MAX_FRAMES) -> list[int]:
    """The epoch each frame shows: every epoch, or max_frames evenly spaced ones (the last
    included) when there are more."""
    if last_epoch <= max_frames:
        return list(range(1, last_epoch + 1))
    return np.unique(np.linspace(1, last_epoch, max_frames).round().astype(int)).tolist()


def stored_runs(store, run_ids: list[int]) -> list[dict]:
    """The runs' store rows; AnimationError for an empty list or an unknown id."""
    if not run_ids:
        raise AnimationError("runs: pick at least one stored run to animate")
    runs = [store.get_run(run_id) for run_id in run_ids]
    unknown = [str(run_id) for run_id, run in zip(run_ids, runs) if run is None]
    if unknown:
        raise AnimationError(f"run_id should be the id of a stored run, but got "
                             f"run_id={', '.join(unknown)}")
    return runs


def load_runs(store, run_ids: list[int]) -> list[RunData]:
    """The stored runs, their records and events (stored_runs' errors)."""
    runs = stored_runs(store, run_ids)
    records = store.records_many(run_ids)
    return [RunData(run, records.get(run["id"], []), store.events(run["id"])) for run in runs]


def check_race(runs: list[dict], last_epochs: list[int] | None = None) -> None:
    """AnimationError unless the runs (store rows) are one or more runs of one problem and
    dataset (runs of different problems do not race) and, where their last recorded epochs
    are given, one of them has an epoch to draw."""
    if not runs:
        raise AnimationError("runs: pick at least one stored run to animate")
    groups = verdicts.group_by_data(runs)
    if len(groups) > 1:
        listed = [f"{name} (run{'s' if len(group) > 1 else ''} "
                  f"{', '.join(str(run['id']) for run in group)})"
                  for name, group in zip(verdicts.group_names(groups), groups)]
        raise AnimationError(f"runs should be of one problem and dataset to race, but got "
                             f"{' and '.join(listed)}")
    if last_epochs is not None and max(last_epochs, default=0) < 1:
        raise AnimationError("runs: no epoch recorded yet in "
                             + ", ".join(f"#{run['id']}" for run in runs)
                             + ": nothing to animate")


def build_race(runs: list[RunData], options: ChartOptions | None = None,
               max_frames: int = MAX_FRAMES) -> Race:
    """Every frame's specs. The charts are the dashboard's grid of the finished race (a
    setting that never changed is a note instead, as on the dashboard), in the same order."""
    options = options or ChartOptions()
    last_epochs = [max((r["epoch"] for r in data.records), default=0) for data in runs]
    check_race([data.run for data in runs], last_epochs)
    last_epoch = max(last_epochs)
    final = figures.figure_specs(runs, options)
    names = sorted((name for name, spec in final.items() if not isinstance(spec, str)),
                   key=lambda name: name == "lr")[:CHARTS_SHOWN]  # lr last, as projected
    notes = [spec for spec in final.values() if isinstance(spec, str)]
    title = f"{verdicts.group_names([[d.run for d in runs]])[0]}: " \
            f"{len(runs)} run{'s' if len(runs) > 1 else ''}"
    frames = [_frame(runs, epoch, last_epoch, names, options, title)
              for epoch in frame_epochs(last_epoch, max_frames)]
    frames[-1].verdict = race_verdict(runs)
    return Race(frames, figures.legend_spec(runs, options), notes, last_epoch)


def _frame(runs: list[RunData], epoch: int, last_epoch: int, names: list[str],
           options: ChartOptions, title: str) -> Frame:
    shown = [RunData(data.run, [r for r in data.records if r["epoch"] <= epoch],
                     [e for e in data.events if (e.get("epoch") or 0) <= epoch])
             for data in runs]
    return Frame(epoch, {name: figures.SPECS[name](shown, options) for name in names},
                 f"{title} · epoch {epoch} of {last_epoch}")


def race_verdict(runs: list[RunData]) -> str:
    """The time-to-target verdict under the dashboard's table; for one run, its final value."""
    table = build_target_table([d.run for d in runs], {d.run["id"]: d.records for d in runs})
    if table.verdict or len(runs) > 1:
        return table.verdict
    row = table.rows[0]
    final = next((f"{key} {value}" for key, value in row.items() if key.startswith("final")),
                 "")
    return f"{row['method']}: {final}."


def check_choice(speed: str, fmt: str) -> None:
    if speed not in SPEEDS:
        raise AnimationError(f"speed should be one of {', '.join(SPEEDS)}, but got "
                             f"speed={speed!r}")
    if fmt not in FORMATS:
        raise AnimationError(f"format should be one of {', '.join(FORMATS)}, but got "
                             f"format={fmt!r}")


def export(race: Race, path: str | os.PathLike, fmt: str, speed: str = DEFAULT_SPEED) -> Path:
    """Write the race as `fmt` ("gif" or "mp4") at `speed` (a SPEEDS name) to `path`."""
    from divebatch.report import animation_draw, animation_encode  # matplotlib: on use
    check_choice(speed, fmt)
    images = animation_draw.render(race)
    write = animation_encode.write_gif if fmt == "gif" else animation_encode.write_mp4
    write(images, Path(path), SPEEDS[speed], HOLD_S)
    return Path(path)


def export_bytes(race: Race, fmt: str, speed: str = DEFAULT_SPEED) -> bytes:
    """export() into memory (a download button's data)."""
    with tempfile.TemporaryDirectory() as folder:
        return export(race, Path(folder) / f"race.{fmt}", fmt, speed).read_bytes()


def file_name(run_ids: list[int], fmt: str) -> str:
    """'divebatch-race-3-4-5-6.gif'"""
    return f"divebatch-race-{'-'.join(map(str, run_ids[:8]))}.{fmt}"
