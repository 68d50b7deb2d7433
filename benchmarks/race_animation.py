"""How long a race animation takes to export: a 4-run race of 30 epochs (the
classification_race preset: DiveBatch, AdaBatch, SGD at B0 and at B_max) as a GIF and as an
MP4, at the default speed, against the 30 s budget of issue #31.

    python3 benchmarks/race_animation.py                      # trains the race first
    python3 benchmarks/race_animation.py --db runs.db --runs 1 2 3 4   # stored runs

Without --db it trains the preset on 400 samples (drawing cost depends on the epochs and
runs shown, not on the data size) into a temporary store. Prints, per format, the wall and
CPU seconds of `animation.build_race` + `animation.export` (what `divebatch export ...
--format gif` runs after opening the store), the frames, the file size, and the machine's
load average and cores, since the wall time on a shared machine depends on the load: CPU
seconds are the load-independent figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divebatch.presets import PRESETS, race_configs  # noqa: E402
from divebatch.report import animation  # noqa: E402
from divebatch.report.figures import ChartOptions  # noqa: E402
from divebatch.runs.worker import execute_run  # noqa: E402
from divebatch.runs.store import RunStore  # noqa: E402

BUDGET_S = 30.0


def train_race(store: RunStore, epochs: int, n_samples: int) -> list[int]:
    base = PRESETS["classification_race"].config().replace(epochs=epochs, n_samples=n_samples)
    ids = []
    for _, config in race_configs(base):
        ids.append(store.create_run(config.to_dict(), status="running"))
        execute_run(store, ids[-1])
    return ids


def timed_export(store: RunStore, run_ids: list[int], fmt: str, folder: Path) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    race = animation.build_race(animation.load_runs(store, run_ids), ChartOptions(log_y=True))
    path = animation.export(race, folder / f"race.{fmt}", fmt)
    return {"format": fmt, "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu, "frames": len(race.frames),
            "kb": path.stat().st_size / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a run store holding the race (default: train one)")
    parser.add_argument("--runs", type=int, nargs="+", help="the race's run ids (with --db)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n-samples", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(args.db or Path(folder) / "runs.db")
        run_ids = args.runs if args.db else train_race(store, args.epochs, args.n_samples)
        load = os.getloadavg()
        print(f"race: runs {run_ids}; cores {len(os.sched_getaffinity(0))}; load average "
              f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (1, 5, 15 min)")
        for fmt in animation.FORMATS:
            result = timed_export(store, run_ids, fmt, Path(folder))
            verdict = "within" if result["wall_s"] < BUDGET_S else "OVER"
            print(f"{fmt}: {result['frames']} frames, {result['kb']:.0f} KB, "
                  f"{result['wall_s']:.2f} s wall, {result['cpu_s']:.2f} s CPU "
                  f"({1000 * result['cpu_s'] / result['frames']:.0f} ms CPU a frame); "
                  f"{verdict} the {BUDGET_S:g} s budget")


if __name__ == "__main__":
    main()
