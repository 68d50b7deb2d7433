"""Would a fused path for Linear layers on sequences pay, as it does for Conv2d (issue 32, fifth
pass)? Its rule forms each sample's weight gradient with one batched product, takes their norms,
and writes their sum into ``weight.grad``, so autograd skips the batch weight gradient (the
weight is frozen for the forward call, as ``divebatch.meter.rules.conv`` does). The rule lives
here, not in the library, because in the whole step it did not pay.

Two tables, CPU, one thread, CPU clock, medians:
  - layer alone, the small GPT's Linear shapes (batch 128, 32 tokens): the batch weight gradient,
    the library's Gram rule, the fused rule (which includes the weight gradient);
  - the small GPT's measured step, round-robin with a plain step in one process: the library's
    meter, the meter with the fused Linear rule (fresh per-sample tensors each call), with the
    per-sample tensors written into a buffer kept between batches (no page faults), and that
    only on the layers where the fused rule won alone.

    python benchmarks/linear_fused.py --rounds 9
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diversity_overhead as overhead  # noqa: E402
import meter_before_after  # noqa: E402
import round_robin  # noqa: E402
from round_robin import median_ms  # noqa: E402
from divebatch.meter import hooks, kernels, timing  # noqa: E402
from divebatch.meter.diversity import DiversityMeter  # noqa: E402
from divebatch.meter.rules import conv  # noqa: E402
from divebatch.meter.rules.linear import linear_weight_sq_norms  # noqa: E402

GPT_LINEARS = [(64, 192), (64, 64), (64, 256), (256, 64)]  # c_attn, c_proj, MLP in and out


def fused_linear_rule(buffers: dict | None):
    """The fused rule; with ``buffers``, per-sample gradients go into a tensor kept per shape."""
    def rule(linear: nn.Linear, x: Tensor, grad_out: Tensor) -> Tensor:
        n = x.shape[0]
        x, grad_out = x.reshape(n, -1, x.shape[-1]), grad_out.reshape(n, -1, grad_out.shape[-1])
        shape = (n, linear.out_features, linear.in_features)
        out = None if buffers is None else buffers.setdefault(shape, torch.empty(shape))
        per_sample = torch.bmm(grad_out.transpose(1, 2), x, out=out)
        norms = torch.linalg.vector_norm(per_sample, dim=(1, 2)).square()
        conv._add_to_grad(linear.weight, per_sample.sum(0))
        if linear.bias is not None:
            norms = norms + kernels.sq_norms(grad_out.sum(1))
        return norms
    return rule


def on_sequences(linear: nn.Linear, x: Tensor) -> bool:
    return x.dim() == 3 and x.requires_grad and linear.weight.requires_grad


def on_narrow_sequences(linear: nn.Linear, x: Tensor) -> bool:
    """Only the layers on which the fused rule won alone (64 -> 64 and 64 -> 192)."""
    return on_sequences(linear, x) and linear.in_features * linear.out_features <= 64 * 192


def with_fused_linear(step, rule, fuses=on_sequences):
    """``step`` with the fused rule in the meter's table of fused rules while it runs."""
    def fused_step() -> None:
        hooks.FUSED_RULES[nn.Linear] = (fuses, rule)
        timing.FUSED_EXCESS[nn.Linear] = lambda *call: 1.0  # what `seconds` counts: unused here
        try:
            step()
        finally:
            del hooks.FUSED_RULES[nn.Linear], timing.FUSED_EXCESS[nn.Linear]
    return fused_step


def layer_table(batch: int = 128, tokens: int = 32) -> None:
    print(f"Linear layers alone, batch {batch}, {tokens} tokens: ms")
    print("| d_in -> d_out | weight gradient | Gram rule | both | fused rule |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rule = fused_linear_rule(None)
    for d_in, d_out in GPT_LINEARS:
        linear, x = nn.Linear(d_in, d_out), torch.randn(batch, tokens, d_in)
        grad_out = torch.randn(batch, tokens, d_out)
        weight_grad = median_ms(lambda: grad_out.reshape(-1, d_out).t().mm(x.reshape(-1, d_in)))
        gram = median_ms(lambda: linear_weight_sq_norms(x, grad_out))
        fused = median_ms(lambda: (linear.zero_grad(), rule(linear, x, grad_out)))
        print(f"| {d_in} -> {d_out} | {weight_grad:.2f} | {gram:.2f} | {weight_grad + gram:.2f} "
              f"| {fused:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    layer_table(args.batch_size)
    base, inputs, targets = overhead.workload("gpt", args.batch_size, torch.device("cpu"))

    def meter_step():  # as the trainer measures
        return meter_before_after.meter_step(DiversityMeter, base, inputs, targets,
                                             keep_hooks=True)
    steps = {"plain": overhead.plain_step(copy.deepcopy(base), inputs, targets),
             "meter": meter_step(),
             "fused Linear": with_fused_linear(meter_step(), fused_linear_rule(None)),
             "fused Linear, kept buffer": with_fused_linear(meter_step(), fused_linear_rule({})),
             "fused where it won alone, kept buffer": with_fused_linear(
                 meter_step(), fused_linear_rule({}), on_narrow_sequences)}
    for step in steps.values():
        step(), step()  # warm-up (the meter's checked batch)
    seconds, faults = round_robin.time_steps(steps, dict.fromkeys(steps, 3), args.rounds)
    round_robin.print_table(f"\nsmall GPT, B = {args.batch_size}, 1 thread, CPU clock, "
                            f"{args.rounds} rounds, medians", "step", seconds, faults)


if __name__ == "__main__":
    main()
