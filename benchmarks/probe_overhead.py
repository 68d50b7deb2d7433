"""Does the chart's diversity cost training time? SGD on the digits CNN, with the chart-only
probe (divebatch.training.probe, `diversity_every_epoch`) on and off, side by side.

The two settings run alternately (off, on, off, on, ...) in one process so that load on a
shared machine hits both alike; each round is one short run of each. Printed per setting: the
median over rounds of the run's training time (sum of `train_time`), of its probe seconds
(sum of `instrument_time`, outside training time), and the ratio on / off of training time.
The target (issue 12): the ratio within 1.10.

    OMP_NUM_THREADS=1 python3 benchmarks/probe_overhead.py            # about two minutes
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divebatch.config import RunConfig  # noqa: E402
from divebatch.training.trainer import train  # noqa: E402


def totals(config: RunConfig) -> tuple[float, float]:
    records = train(config).records
    return sum(r.train_time for r in records), sum(r.instrument_time for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = RunConfig(problem="digits", model="cnn", method="sgd", epochs=args.epochs,
                     batch_size=args.batch_size, lr=0.05, device="cpu")
    totals(base.replace(epochs=1))  # warm-up: data loading, allocator
    results = {False: [], True: []}
    for _ in range(args.rounds):
        for probe in (False, True):
            results[probe].append(totals(base.replace(diversity_every_epoch=probe)))
    train_off = statistics.median(t for t, _ in results[False])
    train_on = statistics.median(t for t, _ in results[True])
    probe_on = statistics.median(p for _, p in results[True])
    print(f"SGD digits CNN, B={args.batch_size}, {args.epochs} epochs, median of "
          f"{args.rounds} rounds")
    print(f"  chart diversity off: train {train_off:.3f} s")
    print(f"  chart diversity on : train {train_on:.3f} s, probe {probe_on:.3f} s "
          f"(outside train time)")
    print(f"  ratio on / off of training time: {train_on / train_off:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
