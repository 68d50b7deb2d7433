"""Overhead per run of the Ray backend against the local one, side by side in one process.

The same sweep (tiny least-squares runs, so the overhead dominates) is trained into fresh
stores by `sweeps.run_here` here, one run after the other, and through a local Ray cluster
started beforehand (its start-up is reported apart: a cluster serves many sweeps). Each
backend trains the sweep `--rounds` times, alternating local and Ray so that a change of load
hits both. Ray's first round is "cold": the cluster's worker processes import torch and
divebatch for their first task, once per command. Later rounds are "warm": Ray hands the next
tasks to the same worker processes. Ray uses `--cpus` CPUs at once, so the per-run figure is
wall time / runs.

    python benchmarks/ray_overhead.py                    # 2 CPUs, 3 seeds: 15 runs a round
    python benchmarks/ray_overhead.py --cpus 1 --seeds 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divebatch.experiments import sweeps  # noqa: E402
from divebatch.runs.ray_backend import RayBackend, RayOptions  # noqa: E402
from divebatch.runs.store import RunStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="sweeps per backend (>= 2)")
    args = parser.parse_args()
    import ray
    import torch
    torch.set_num_threads(1)
    base = {"problem": "least_squares", "n_samples": 320, "dim": 8, "epochs": 3,
            "batch_size": 16, **sweeps.SWEEP_DEFAULTS}
    spec = sweeps.SweepSpec(base=base, deltas=(0.1, 1.0), max_batch_sizes=(64,),
                            resize_everys=(1, 2), seeds=tuple(range(args.seeds)))
    runs = len(spec.plan())
    folder = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    for attempt in range(5):  # Ray gives a node 30 s to start: not always enough when busy
        try:
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 4:
                raise
    started = time.perf_counter() - start
    rounds = {"local": [], "ray": []}
    for round_ in range(args.rounds):
        for name, backend in (("local", None), ("ray", RayBackend(RayOptions()))):
            start = time.perf_counter()
            store = RunStore(folder / f"{name}-{round_}.db")
            assert sweeps.run_here(store, spec, backend=backend) == runs
            rounds[name].append(time.perf_counter() - start)
    ray.shutdown()
    print(f"{runs} runs a round; Ray cluster start {started:.1f} s (once per command)")
    for round_ in range(args.rounds):
        local, on_ray = rounds["local"][round_], rounds["ray"][round_]
        kind = "cold" if round_ == 0 else "warm"
        print(f"round {round_ + 1} ({kind} Ray workers): local {local:6.1f} s "
              f"({local / runs:5.2f} s per run), Ray {on_ray:6.1f} s ({on_ray / runs:5.2f} s "
              f"per run): Ray - local {(on_ray - local) / runs:+.2f} s per run")
    print(f"({args.cpus} runs at once on Ray, one at a time locally)")


if __name__ == "__main__":
    main()
