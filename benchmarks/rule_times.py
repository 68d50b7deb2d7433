"""Where a measured step's rules spend their time: each layer's rule timed inside the step
(CPU time of this thread, median over steps), in backward order (issue 32).

    python benchmarks/rule_times.py --model cnn --batch-size 32
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diversity_overhead as overhead  # noqa: E402
from divebatch.meter import hooks  # noqa: E402
from divebatch.meter.diversity import DiversityMeter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn", help="of mlp, cnn, digits_cnn, resnet18, gpt")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, inputs, targets = overhead.workload(args.model, args.batch_size, torch.device("cpu"))
    names = {module: name or "model" for name, module in model.named_modules()}
    seconds: dict[tuple[str, bool], list[float]] = defaultdict(list)
    rule = hooks.SqNormHooks._rule_sq_norms

    def timed_rule(module, saved, fused, grad_out):
        started = time.thread_time()
        norms = rule(module, saved, fused, grad_out)
        seconds[names[module], fused].append(time.thread_time() - started)
        return norms
    hooks.SqNormHooks._rule_sq_norms = staticmethod(timed_rule)
    plain = overhead.plain_step(copy.deepcopy(model), inputs, targets)
    optimizer, meter = overhead.sgd(model), DiversityMeter(model)

    def measured() -> None:
        optimizer.zero_grad()
        with meter.track(len(inputs)):
            overhead.per_sample_loss(model(inputs), targets).mean().backward()
        optimizer.step()
    for _ in range(3):  # warm-up, the checked batch among them
        measured()
    seconds.clear()
    plain_seconds = []
    for _ in range(args.steps):
        started = time.thread_time()
        plain()
        plain_seconds.append(time.thread_time() - started)
        measured()
    print(f"{args.model}, B = {args.batch_size}: plain step "
          f"{statistics.median(plain_seconds) * 1e3:.2f} ms; rules, ms per step:")
    for (name, fused), times in seconds.items():
        kind = type(model.get_submodule(name if name != "model" else "")).__name__
        print(f"  {name} ({kind}{', fused' if fused else ''}): "
              f"{statistics.median(times) * 1e3:.2f}")
    print(f"  all rules: {sum(statistics.median(t) for t in seconds.values()) * 1e3:.2f}")


if __name__ == "__main__":
    main()
