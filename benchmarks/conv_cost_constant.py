"""The small CNN's measured step with ``GROUPED_CONV_SMALL_POSITIONS`` at its value (160: the
last convolution takes the pixel-Gram path) and at 64 (it takes the fused grouped explicit
path), round-robin with a plain step in one process, with page faults per step (issue 32).

    python benchmarks/conv_cost_constant.py --batch-size 32 --rounds 8
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diversity_overhead as overhead  # noqa: E402
import meter_before_after  # noqa: E402
import round_robin  # noqa: E402
from divebatch.meter.diversity import DiversityMeter  # noqa: E402
from divebatch.meter.rules import conv  # noqa: E402


def with_costs(costs: conv.DeviceCosts, model, inputs, targets):
    step = meter_before_after.meter_step(DiversityMeter, model, inputs, targets)
    default = conv.DEVICE_COSTS["cpu"]

    def costed_step() -> None:
        conv.DEVICE_COSTS["cpu"] = costs
        try:
            step()
        finally:
            conv.DEVICE_COSTS["cpu"] = default
    return costed_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, inputs, targets = overhead.workload("cnn", args.batch_size, torch.device("cpu"))
    default = conv.DEVICE_COSTS["cpu"]
    steps = {"plain": overhead.plain_step(copy.deepcopy(model), inputs, targets),
             f"{default.small_matmul:.0f}": with_costs(default, model, inputs, targets),
             "64": with_costs(default._replace(small_matmul=64), model, inputs, targets)}
    for step in steps.values():
        step()
    seconds, faults = round_robin.time_steps(steps, dict.fromkeys(steps, args.steps),
                                             args.rounds)
    round_robin.print_table(f"small CNN, B = {args.batch_size}, 1 thread, CPU clock, "
                            f"{args.rounds} rounds, medians", "small_matmul", seconds, faults)

if __name__ == "__main__":
    main()
