"""The meter of an earlier commit against this tree's, side by side with a plain step in one
process: the before/after ratios of docs/performance.md without the run-to-run noise of a shared
machine.

The earlier ``divebatch/meter`` is taken from git (``git archive``) into a temporary folder and
imported as the package ``meter_before`` (its own imports renamed to match); both meters then
measure every batch of the same SGD step as ``benchmarks/diversity_overhead.py``, round-robin
with the plain step, each timed over blocks of steps (CPU time of this process with
``--clock cpu``). This tree's meter runs twice: as the trainer measures ("after":
``keep_hooks=True``, the hooks stay between measured batches) and with the default (hooks
placed for every batch). The table gives medians over rounds of the time per step against
plain, and of the minor page faults per step (see ``page_faults``). The earlier meter places
its hooks for every batch, or keeps them too with ``--before-kept-hooks`` (a commit whose meter
has that option).

    python benchmarks/meter_before_after.py --before 7094add --models mlp,cnn --rounds 15
"""

from __future__ import annotations

import argparse
import copy
import importlib
import io
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diversity_overhead as overhead  # noqa: E402
from divebatch.meter.diversity import DiversityMeter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def meter_of_commit(commit: str, folder: Path) -> type:
    """DiversityMeter of ``commit``'s divebatch/meter, imported as the package meter_before."""
    archive = subprocess.run(["git", "archive", commit, "divebatch/meter"], cwd=ROOT,
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "meter_before"
    (folder / "divebatch" / "meter").rename(package)
    for source in package.rglob("*.py"):
        text = source.read_text().replace("divebatch.meter", "meter_before")
        source.write_text(text.replace("from divebatch import meter", "import meter_before"))
    sys.path.insert(0, str(folder))
    return importlib.import_module("meter_before.diversity").DiversityMeter


def meter_step(meter_class: type, model, inputs, targets, **options):
    model = copy.deepcopy(model)
    optimizer, meter = overhead.sgd(model), meter_class(model, sample_every=1, **options)

    def step() -> None:
        optimizer.zero_grad()
        with meter.track(len(inputs)):
            overhead.per_sample_loss(model(inputs), targets).mean().backward()
        optimizer.step()
    return step


def compare(name: str, batch_size: int, before: type, rounds: int, clock,
            before_options: dict) -> str:
    model, inputs, targets = overhead.workload(name, batch_size, torch.device("cpu"))
    steps = {"plain": overhead.plain_step(copy.deepcopy(model), inputs, targets),
             "before": meter_step(before, model, inputs, targets, **before_options),
             "after": meter_step(DiversityMeter, model, inputs, targets, keep_hooks=True),
             "after, hooks per batch": meter_step(DiversityMeter, model, inputs, targets)}
    counts = {}
    for method, step in steps.items():  # warm-up (the checked first batch), steps per block
        step()
        counts[method] = max(1, round(overhead.BLOCK_SECONDS / overhead.time_block(
            step, 1, torch.device("cpu"), clock)))
    samples = {method: [] for method in steps}
    faults = {method: [] for method in steps}
    for _ in range(rounds):
        for method, step in steps.items():
            started = page_faults()
            samples[method].append(overhead.time_block(step, counts[method],
                                                       torch.device("cpu"), clock))
            faults[method].append((page_faults() - started) / counts[method])
    plain = statistics.median(samples["plain"])
    before_ratio = statistics.median(samples["before"]) / plain
    after_ratio = statistics.median(samples["after"]) / plain
    per_batch_ratio = statistics.median(samples["after, hooks per batch"]) / plain
    fault_cells = " / ".join(f"{statistics.median(faults[method]):.0f}" for method in steps)
    return (f"| {name} | {batch_size} | {plain * 1000:.2f} | {before_ratio:.2f}x | "
            f"{after_ratio:.2f}x | {per_batch_ratio:.2f}x | {fault_cells} |")


def page_faults() -> int:
    """Minor page faults of this process so far: memory the allocator gave back to the system
    and takes again (glibc does so by the heap's history, so a step may pay for it or not)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="main", help="the earlier commit (git revision)")
    parser.add_argument("--before-kept-hooks", action="store_true",
                        help="the earlier meter keeps its hooks between batches too")
    parser.add_argument("--models", default="mlp,cnn",
                        help="of mlp, cnn, digits_cnn, resnet18, gpt")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    with tempfile.TemporaryDirectory() as folder:
        before = meter_of_commit(args.before, Path(folder))
        kept = ", kept hooks" if args.before_kept_hooks else ""
        print(f"before: {args.before}{kept}, after: this tree; {torch.get_num_threads()} threads, "
              f"{args.rounds} rounds, {args.clock} clock, medians")
        print("| model | batch | plain ms / step | before: time vs plain | after | "
              "after, hooks per batch | page faults / step: plain / before / after / per batch |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name in args.models.split(","):
            print(compare(name, args.batch_size, before, args.rounds, clock,
                          {"keep_hooks": True} if args.before_kept_hooks else {}), flush=True)


if __name__ == "__main__":
    main()
