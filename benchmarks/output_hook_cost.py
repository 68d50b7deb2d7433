"""What hooking one layer output costs, by the way the hook is placed (issue 32, ninth pass).

One step is a Linear(64, 128) forward on a batch of digits-sized rows, ``.sum().backward()``,
with the output's gradient obtained (or not) by:

  none       no hook (the baseline)
  node       ``output.grad_fn.register_prehook`` (what the meter's direct path used)
  tensor     ``output.register_hook`` (what its checked path used)
  dict       the output's hooks dict registered on its node directly, as ``register_hook`` does
             it but without the ``RemovableHandle`` (``divebatch.meter.output_hooks``)
  retain     ``output.retain_grad()`` (a C++ hook; the gradient is read after backward)

Each hook does nothing. CPU time of this process, one thread, round-robin, medians:

    python benchmarks/output_hook_cost.py --batch-size 32 --rounds 15
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import OrderedDict

import torch
from torch import nn


def ignore(grad):
    return None


def ignore_all(grads):
    return None


def place(kind: str, output: torch.Tensor) -> None:
    if kind == "node":
        output.grad_fn.register_prehook(ignore_all)
    elif kind == "tensor":
        output.register_hook(ignore)
    elif kind == "dict":
        output._backward_hooks = OrderedDict({"meter": ignore})
        output.grad_fn._register_hook_dict(output)
    elif kind == "retain":
        output.retain_grad()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=2000, help="steps per block")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layer, inputs = nn.Linear(64, 128), torch.randn(args.batch_size, 64)
    kinds = ("none", "node", "tensor", "dict", "retain")

    def step(kind: str) -> None:
        output = layer(inputs)
        place(kind, output)
        output.sum().backward()

    seconds = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            for _ in range(args.steps // 10):
                step(kind)
            started = time.process_time()
            for _ in range(args.steps):
                step(kind)
            seconds[kind].append((time.process_time() - started) / args.steps)
    base = statistics.median(seconds["none"])
    print(f"Linear(64, 128), B = {args.batch_size}, 1 thread, {args.rounds} rounds, medians")
    print("| hook | us / step | more than none |")
    print("| --- | ---: | ---: |")
    for kind in kinds:
        median = statistics.median(seconds[kind])
        print(f"| {kind} | {median * 1e6:.1f} | {(median - base) * 1e6:+.1f} |")


if __name__ == "__main__":
    main()
