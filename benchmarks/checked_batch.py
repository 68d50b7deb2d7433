"""What the meter's check of the split into samples costs: a checked batch (after ``reset()``
of a changed model, or ``recheck()``) against an ordinary measured batch, in one process,
alternating, CPU time, one thread; medians over rounds.

    python benchmarks/checked_batch.py --models mlp,cnn --batch-size 32 --rounds 15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diversity_overhead as overhead  # noqa: E402
from divebatch.meter.diversity import DiversityMeter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--measured-per-round", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| model | batch | checked batch, ms | measured batch, ms | checked / measured |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in args.models.split(","):
        model, inputs, targets = overhead.workload(name, args.batch_size, torch.device("cpu"))
        meter = DiversityMeter(model, keep_hooks=True)

        def step() -> float:
            started = time.process_time()
            model.zero_grad()
            with meter.track(len(inputs)):
                overhead.per_sample_loss(model(inputs), targets).mean().backward()
            return time.process_time() - started
        step()
        checked, measured = [], []
        for _ in range(args.rounds):
            meter.recheck()
            checked.append(step())
            measured += [step() for _ in range(args.measured_per_round)]
        one, other = statistics.median(checked), statistics.median(measured)
        print(f"| {name} | {args.batch_size} | {one * 1e3:.2f} | {other * 1e3:.2f} | "
              f"{one / other:.1f}x |")


if __name__ == "__main__":
    main()
