"""How cheap can per-layer hooks make the MLP's measured step? Hand-written minimal meters
against a plain step and DiversityMeter, in one process, round-robin (issue 32, third pass;
since the tenth, "meter" on this MLP is its plain-Sequential path, divebatch.meter.sequential).

Every variant runs the same SGD step as ``benchmarks/diversity_overhead.py`` on the digits MLP
and obtains S = sum_i ||g_i||^2 (Linear layers: (||a_i||^2 + 1) ||dy_i||^2) and adds the batch
gradient into G; none checks anything:

  minimal   a forward hook per Linear keeps its input and hooks its output; the output's
            tensor hook runs the three operations of the rule (the floor of the hook design)
  grad      forward hooks keep inputs and outputs; one torch.autograd.grad over the
            parameters and the outputs replaces backward (no tensor hooks), .grad set by hand
  retain    forward hooks keep inputs and call retain_grad() on the outputs; rules after backward
  deferred  tensor hooks only keep the output gradients; rules after backward
  by_hand   no hooks at all: the Sequential's layers called one by one keep each Linear's
            input and output, then the capture of "grad" (what a meter that ran the forward
            itself would pay; eighth pass)
  captured  by_hand without the rules: the capture alone
  own_loop  by_hand with backward(): a tensor hook per Linear output runs the rule (what the
            meter's plain-Sequential path does, without its bookkeeping; tenth pass)

Inputs are kept detached: a rule run after backward on an input that requires a gradient builds
an autograd graph, which made "grad", "retain" and "deferred" 0.1-0.2x slower before the eighth
pass. Each step clears what it kept: a reference cycle through the hooks would keep every batch's
graph alive until the garbage collector runs, and the page faults of that memory (shown per
step) once made a minimal meter look 0.1x slower than it is. Medians over rounds of the time
per step (CPU time of this process) against plain.

    python benchmarks/hook_floor.py --batch-size 32 --rounds 15
    python benchmarks/hook_floor.py --calls    # Python function calls per step instead
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diversity_overhead as overhead  # noqa: E402
import round_robin  # noqa: E402
from divebatch.meter.diversity import DiversityMeter  # noqa: E402


def linear_rule(x: Tensor, grad_out: Tensor) -> Tensor:
    grad_sq = torch.linalg.vecdot(grad_out, grad_out)
    return torch.addcmul(grad_sq, torch.linalg.vecdot(x, x), grad_sq)


class Sums:
    """S and G, as DiversityMeter keeps them."""

    def __init__(self, model: nn.Module, batch_size: int) -> None:
        self.params = list(model.parameters())
        self.grad_sum = [torch.zeros_like(p) for p in self.params]
        self.sq_norm_sum = torch.zeros((), dtype=torch.float64)
        self.scale = batch_size  # the loss is a mean

    def add(self, norms: Tensor) -> None:
        self.sq_norm_sum.add_(torch.sum(norms, dtype=torch.float64), alpha=self.scale ** 2)
        torch._foreach_add_(self.grad_sum, [p.grad for p in self.params], alpha=self.scale)


def summed(x_and_grads) -> Tensor:
    total = None
    for x, grad_out in x_and_grads:
        norms = linear_rule(x, grad_out)
        total = norms if total is None else total.add_(norms)
    return total


def variant(kind: str, base: nn.Module, inputs: Tensor, targets: Tensor):
    model = copy.deepcopy(base)
    optimizer, sums = overhead.sgd(model), Sums(model, len(inputs))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    meter = DiversityMeter(model, keep_hooks=True) if kind == "meter" else None  # the trainer's

    def loss() -> Tensor:
        return overhead.per_sample_loss(model(inputs), targets).mean()

    def hooked_loss(forward_hook) -> Tensor:
        handles = [layer.register_forward_hook(forward_hook) for layer in linears]
        batch_loss = loss()
        for handle in handles:
            handle.remove()
        return batch_loss

    def by_hand(kept_in: list[Tensor], kept_out: list[Tensor]) -> Tensor:
        hidden = inputs
        for layer in model:
            output = layer(hidden)
            if isinstance(layer, nn.Linear):
                kept_in.append(hidden.detach())  # the rules run outside backward's no-grad
                kept_out.append(output)
            hidden = output
        return overhead.per_sample_loss(hidden, targets).mean()

    def own_loop() -> None:
        norms = []

        def on_grad(x: Tensor, grad_out: Tensor) -> None:
            rule_norms = linear_rule(x, grad_out)
            norms.append(rule_norms) if not norms else norms[0].add_(rule_norms)
        hidden = inputs
        for layer in model:
            output = layer(hidden)
            if isinstance(layer, nn.Linear):
                output.register_hook(lambda grad_out, x=hidden.detach(): on_grad(x, grad_out))
            hidden = output
        overhead.per_sample_loss(hidden, targets).mean().backward()
        sums.add(norms.pop())

    def measured() -> None:
        kept_in, kept_out, grads, norms = [], [], [], []

        def on_grad(x: Tensor, grad_out: Tensor) -> None:
            rule_norms = linear_rule(x, grad_out)
            norms.append(rule_norms) if not norms else norms[0].add_(rule_norms)

        def forward_hook(layer, args, output) -> None:
            kept_in.append(args[0].detach())  # rules run after backward: no graph on them
            if kind == "minimal":
                output.register_hook(lambda grad_out, x=args[0]: on_grad(x, grad_out))
            elif kind == "deferred":
                output.register_hook(grads.append)
            else:
                kept_out.append(output)
                if kind == "retain":
                    output.retain_grad()
        batch_loss = by_hand(kept_in, kept_out) if kind in BY_HAND else hooked_loss(forward_hook)
        if kind in ("grad", *BY_HAND):
            all_grads = torch.autograd.grad(batch_loss, sums.params + kept_out)
            for param, grad in zip(sums.params, all_grads):
                param.grad = grad
            total = (summed(zip(kept_in, all_grads[len(sums.params):])) if kind != "captured"
                     else inputs.new_zeros(len(inputs)))
        else:
            batch_loss.backward()
            total = {"minimal": lambda: norms[0],
                     "deferred": lambda: summed(zip(kept_in, reversed(grads))),
                     "retain": lambda: summed((x, y.grad) for x, y in zip(kept_in, kept_out)),
                     }[kind]()
        kept_in.clear(), kept_out.clear(), grads.clear(), norms.clear()
        sums.add(total)

    def step() -> None:
        optimizer.zero_grad()
        if kind == "plain":
            loss().backward()
        elif kind == "own_loop":
            own_loop()
        elif meter is not None:
            with meter.track(len(inputs)):
                loss().backward()
        else:
            measured()
        optimizer.step()
    return step


BY_HAND = ("by_hand", "captured")
KINDS = ("plain", "meter", "minimal", "grad", "retain", "deferred", *BY_HAND, "own_loop")


def calls_per_step(step, steps: int = 100) -> float:
    """Function calls (Python and built-in) per step, counted by cProfile."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(steps):
        step()
    profile.disable()
    return pstats.Stats(profile).total_calls / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--calls", action="store_true", help="count function calls per step")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base, inputs, targets = overhead.workload("mlp", args.batch_size, torch.device("cpu"))
    steps = {kind: variant(kind, base, inputs, targets) for kind in args.kinds.split(",")}
    if args.calls:
        for kind, step in steps.items():
            step(), step()  # warm-up (the meter's checked batch)
            print(f"{kind}: {calls_per_step(step):.0f} function calls per step")
        return
    counts = {}
    for kind, step in steps.items():  # warm-up (the meter's checked batch), steps per block
        step()
        counts[kind] = max(1, round(overhead.BLOCK_SECONDS / overhead.time_block(
            step, 5, torch.device("cpu"), time.process_time)))
    seconds, faults = round_robin.time_steps(steps, counts, args.rounds)
    round_robin.print_table(f"digits MLP, B = {args.batch_size}, 1 thread, CPU clock, "
                            f"{args.rounds} rounds, medians", "variant", seconds, faults,
                            unit=1e6, unit_name="us", digits=0, fault_digits=1)

if __name__ == "__main__":
    main()
