"""The cost of a critical-batch measurement on each synthetic preset and digits, and what it
reads there (docs/reproduction.md quotes this output).

    python benchmarks/critical_batch.py                      # every synthetic preset + digits
    python benchmarks/critical_batch.py --presets convex --lr-rule tuned

Per preset: the preset's run is trained once on the CPU (keeping its default 4 checkpoints:
the start and every quarter), then measured with the default settings (B0 * 2^k up to B_max,
one epoch of examples at B0 for the target, half its decrease). Reported: the parent run's
training seconds, the measurement's wall seconds and how much of them the branches themselves
took (the rest: opening checkpoints, the noise scale, storing rows), the examples the branches
trained in epochs of the data, and per checkpoint the measured critical batch size, B_simple
and the batch size the run used; then the chart's sentence. One torch thread, as a background
worker gets on 2 cores (capacity.worker_threads).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from divebatch.experiments import critical_jobs  # noqa: E402
from divebatch.experiments.critical_batch import CriticalBatchSettings, summarize  # noqa: E402
from divebatch.presets import PRESETS, SYNTHETIC_PROBLEMS, presets_for  # noqa: E402
from divebatch.report.critical_batch import critical_batch_sentence, critical_label  # noqa: E402
from divebatch.report.figures import RunData  # noqa: E402
from divebatch.runs import worker  # noqa: E402
from divebatch.runs.measurements import Measurements  # noqa: E402
from divebatch.runs.store import RunStore  # noqa: E402

DEFAULT_PRESETS = [p.key for p in presets_for(SYNTHETIC_PROBLEMS)] + ["digits_race"]


def measure_preset(store: RunStore, key: str, lr_rule: str) -> dict:
    config = PRESETS[key].config().replace(device="cpu")
    run_id = store.create_run(config.to_dict(), name=key, status="queued")
    started = time.perf_counter()
    worker.execute_run(store, run_id)
    train_s = time.perf_counter() - started
    measurement_id = critical_jobs.create(store, run_id, CriticalBatchSettings(lr_rule=lr_rule))
    started, cpu_started = time.perf_counter(), time.process_time()
    status = critical_jobs.execute(store, measurement_id)
    measure_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    summaries = summarize(Measurements(store).rows(measurement_id))
    run = RunData(store.get_run(run_id), store.records(run_id))
    branches = [b for s in summaries for b in s["branches"]]
    n_train = run.n_train
    # the reference at B0 (one epoch) is stored as B0's branch under the run's rule
    references = sum(s["n_train"] or 0 for s in summaries
                     if s["target"] is None or lr_rule == "tuned")
    examples = sum(b["steps"] * b["batch_size"] for b in branches) + references
    return {"preset": key, "status": status, "train_s": train_s, "measure_s": measure_s,
            "measure_cpu_s": cpu_s, "branch_s": sum(b["seconds"] for b in branches),
            "branches": len(branches), "branch_epochs": examples / n_train,
            "points": [{"epoch": s["epoch"], "critical": critical_label(s),
                        "noise_scale": s["noise_scale"], "batch_used": s["batch_size"]}
                       for s in summaries],
            "sentence": critical_batch_sentence(summaries, [run])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(DEFAULT_PRESETS))
    parser.add_argument("--lr-rule", default="run", choices=("run", "tuned"))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("DIVEBATCH_WARM_WORKERS", "0")
    store = RunStore(Path(tempfile.mkdtemp()) / "runs.db")
    results = []
    for key in args.presets.split(","):
        result = measure_preset(store, key, args.lr_rule)
        results.append(result)
        points = "; ".join(f"epoch {p['epoch']}: B_crit {p['critical'] or '-'}, B_simple "
                           f"{p['noise_scale']:.3g}, B used {p['batch_used']}"
                           for p in result["points"])
        print(f"{key}: {result['status']}, parent run {result['train_s']:.1f} s, measurement "
              f"{result['measure_s']:.1f} s wall ({result['measure_cpu_s']:.1f} CPU-s), "
              f"branches {result['branch_s']:.1f} s, {result['branches']} branches = "
              f"{result['branch_epochs']:.1f} epochs of examples\n  {points}\n  "
              f"{result['sentence']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
