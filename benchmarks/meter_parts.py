"""Where a measured step's extra time goes: the meter with its parts switched off one after
another, against a plain step, in one process, round-robin (issue 32, ninth pass).

  meter              as the trainer measures (hooks kept between batches)
  no rules           each layer's rule replaced by a fresh zero vector (one tiny operation), in
                     the layer hooks' path and in a plain Sequential's (the MLP's)
  no rules, no G     and the batch gradient not added into G
  forward side only  and no hook on the layers' outputs: what is left is the forward hooks,
                     their bookkeeping and ``track``

The parts are switched by replacing meter methods for the duration of a step; the variants
compute nothing useful and exist only to be timed. CPU time of this process, one thread,
medians over rounds:

    python benchmarks/meter_parts.py --model mlp --batch-size 32 --rounds 11
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diversity_overhead as overhead  # noqa: E402
import round_robin  # noqa: E402
from divebatch.meter.diversity import DiversityMeter  # noqa: E402
from divebatch.meter.hooks import SqNormHooks  # noqa: E402
from divebatch.meter import sequential  # noqa: E402
from divebatch.meter.output_hooks import OutputHooks  # noqa: E402


def zero_norms(module, saved, fused, grad_out):
    return grad_out.new_zeros(grad_out.shape[0])


def zero_linear_norms(linear, inputs, grad_out):
    return grad_out.new_zeros(grad_out.shape[0])


def skip(*args, **kwargs):
    return None


# the rules of both paths: the layer hooks', and a plain Sequential's (divebatch.meter.sequential)
NO_RULES = [(SqNormHooks, "_rule_sq_norms", staticmethod(zero_norms)),
            (sequential, "linear_sq_norms", zero_linear_norms)]
SWITCHED_OFF = {
    "meter": [],
    "no rules": NO_RULES,
    "no rules, no G": [*NO_RULES, (DiversityMeter, "_add_grad_sum", skip)],
    "forward side only": [*NO_RULES, (DiversityMeter, "_add_grad_sum", skip),
                          (OutputHooks, "hook", skip)],
}


def with_parts_off(step, patches):
    """``step`` with the methods in ``patches`` replaced while it runs (a few attribute
    assignments, every variant's step included)."""
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]

    def patched() -> None:
        for owner, name, value in patches:
            setattr(owner, name, value)
        try:
            step()
        finally:
            for owner, name, value in originals:
                setattr(owner, name, value)
    return patched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", help="of mlp, cnn, digits_cnn, gpt")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--steps", type=int, default=300, help="steps per block")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, inputs, targets = overhead.workload(args.model, args.batch_size, torch.device("cpu"))
    plain = overhead.plain_step(copy.deepcopy(model), inputs, targets)
    steps = {"plain": with_parts_off(plain, [])}
    for name, patches in SWITCHED_OFF.items():
        measured = overhead.divebatch_step(copy.deepcopy(model), inputs, targets)
        measured()  # the checked first batch, with every part
        steps[name] = with_parts_off(measured, patches)
    seconds, faults = round_robin.time_steps(steps, dict.fromkeys(steps, args.steps),
                                             args.rounds)
    round_robin.print_table(f"{args.model}, B = {args.batch_size}, 1 thread, {args.rounds} "
                            "rounds, medians", "step", seconds, faults, unit=1e6,
                            unit_name="us", digits=1)


if __name__ == "__main__":
    main()
