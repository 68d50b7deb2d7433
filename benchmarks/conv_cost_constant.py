"""A model's measured step with ``GROUPED_CONV_SMALL_POSITIONS`` at each of several values
(the extra positions the cost model charges the CPU's grouped weight-gradient convolution: at
160 the small CNN's last convolution takes the pixel-Gram path, at 64 the fused grouped explicit
path), round-robin with a plain step in one process, with page faults per step (issue 32).

    python benchmarks/conv_cost_constant.py --batch-size 32 --rounds 8
    python benchmarks/conv_cost_constant.py --model resnet18 --batch-size 128 --values 160,64
    python benchmarks/conv_cost_constant.py --values 64 --chunk-elements 262144,524288,1048576

``--chunk-elements`` sets ``conv.GROUPED_CONV_CHUNK_ELEMENTS`` (the grouped convolution's
chunks of samples) for each value, every combination a row.
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


def with_costs(costs: conv.DeviceCosts, chunk_elements: int, model, inputs, targets):
    step = meter_before_after.meter_step(DiversityMeter, model, inputs, targets)
    default, default_chunk = conv.DEVICE_COSTS["cpu"], conv.GROUPED_CONV_CHUNK_ELEMENTS

    def costed_step() -> None:
        conv.DEVICE_COSTS["cpu"] = costs
        conv.GROUPED_CONV_CHUNK_ELEMENTS = chunk_elements
        try:
            step()
        finally:
            conv.DEVICE_COSTS["cpu"] = default
            conv.GROUPED_CONV_CHUNK_ELEMENTS = default_chunk
    return costed_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn", help="of cnn, digits_cnn, resnet18")
    parser.add_argument("--values", default="160,64", help="GROUPED_CONV_SMALL_POSITIONS values")
    parser.add_argument("--chunk-elements", default=str(conv.GROUPED_CONV_CHUNK_ELEMENTS),
                        help="GROUPED_CONV_CHUNK_ELEMENTS values")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, inputs, targets = overhead.workload(args.model, args.batch_size, torch.device("cpu"))
    default = conv.DEVICE_COSTS["cpu"]
    steps = {"plain": overhead.plain_step(copy.deepcopy(model), inputs, targets)}
    for value in args.values.split(","):
        costs = default._replace(small_matmul=float(value))
        for chunk in args.chunk_elements.split(","):
            steps[f"{value}, chunks of {chunk}"] = with_costs(
                costs, int(chunk), copy.deepcopy(model), inputs, targets)
    for step in steps.values():
        step()
    seconds, faults = round_robin.time_steps(steps, dict.fromkeys(steps, args.steps),
                                             args.rounds)
    round_robin.print_table(f"{args.model}, B = {args.batch_size}, 1 thread, CPU clock, "
                            f"{args.rounds} rounds, medians", "small_matmul, chunk elements",
                            seconds, faults)

if __name__ == "__main__":
    main()
