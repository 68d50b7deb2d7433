"""How often must DiversityMeter measure? Epoch time and Delta_hat error against sample_every.

The digits CNN of ``divebatch.models.registry`` (three 3x3 conv + GroupNorm blocks and a linear
head)
trains with SGD on sklearn's 8x8 digits (1437 training images) at several batch sizes.

Accuracy: one training run per seed and batch size carries one meter per candidate k
(sample_every=k) and estimator ("ratio", the default, and "count"), all on the same trajectory;
each epoch's Delta_hat_k is compared with the every-batch Delta_hat_1 of that epoch. The table
gives, per k, the median over seeds of the relative error |Delta_hat_k / Delta_hat_1 - 1|, at
its worst epoch and at its median epoch.

Time: epochs of plain training (no meter) and of training with a meter for each k run
round-robin on one model; the table gives the median epoch time over repeats as a ratio to
plain.

    python benchmarks/diversity_sampling.py --quick     # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divebatch.meter.diversity import DEFAULT_SAMPLE_EVERY, ESTIMATORS, DiversityMeter  # noqa: E402
from divebatch.models.registry import build_model  # noqa: E402

LR, MOMENTUM = 0.05, 0.9
TIME_TARGET, ERROR_TARGET = 1.05, 0.05


def digits_train_set() -> tuple[Tensor, Tensor]:
    """The first 80 % of a fixed shuffle of sklearn's digits: (1437, 1, 8, 8), (1437,)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    order = torch.randperm(len(digits.target), generator=torch.Generator().manual_seed(0))
    keep = order[:int(0.8 * len(order))]
    images = torch.tensor(digits.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    return images[keep], torch.tensor(digits.target)[keep]


def new_model(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = build_model("cnn", input_shape=(1, 8, 8), n_outputs=10)
    return model, torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def run_epoch(model, optimizer, images, labels, batch_size, meters, generator) -> None:
    """One shuffled epoch; every meter tracks every batch."""
    order = torch.randperm(len(labels), generator=generator)
    for start in range(0, len(labels), batch_size):
        batch = order[start:start + batch_size]
        optimizer.zero_grad()
        with contextlib.ExitStack() as stack:
            for meter in meters:
                stack.enter_context(meter.track(len(batch)))
            F.cross_entropy(model(images[batch]), labels[batch]).backward()
        optimizer.step()


def estimate_errors(images, labels, batch_size, every, seeds,
                    epochs) -> dict[tuple[int, str], tuple[float, float]]:
    """(k, estimator) -> (worst, median) epoch's median over seeds of |Delta_hat_k /
    Delta_hat_1 - 1|."""
    keys = [(k, estimator) for k in every for estimator in ESTIMATORS]
    errors = {key: [[] for _ in range(epochs)] for key in keys}  # key -> epoch -> per seed
    for seed in seeds:
        model, optimizer = new_model(seed)
        meters = {key: DiversityMeter(model, sample_every=key[0], estimator=key[1])
                  for key in [(1, "count"), *keys]}
        generator = torch.Generator().manual_seed(seed)
        for epoch in range(epochs):
            for meter in meters.values():
                meter.reset()
            run_epoch(model, optimizer, images, labels, batch_size, list(meters.values()),
                      generator)
            every_batch = meters[1, "count"].diversity()
            for key in keys:
                errors[key][epoch].append(abs(meters[key].diversity() / every_batch - 1))
    by_epoch = {key: [statistics.median(per_seed) for per_seed in epochs_of_key]
                for key, epochs_of_key in errors.items()}
    return {key: (max(values), statistics.median(values)) for key, values in by_epoch.items()}


def time_ratios(images, labels, batch_size, every, repeats) -> dict[int, float]:
    """k -> median epoch time with a sample_every=k meter / median plain epoch time."""
    model, optimizer = new_model(0)
    meters = {0: [], **{k: [DiversityMeter(model, sample_every=k)] for k in every}}  # 0: plain
    generator = torch.Generator().manual_seed(0)
    seconds = {k: [] for k in meters}
    for repeat in range(repeats + 1):  # the first round warms up
        for k, meter_list in meters.items():
            for meter in meter_list:
                meter.reset()
            started = time.perf_counter()
            run_epoch(model, optimizer, images, labels, batch_size, meter_list, generator)
            if repeat:
                seconds[k].append(time.perf_counter() - started)
    plain = statistics.median(seconds[0])
    return {k: statistics.median(seconds[k]) / plain for k in every}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats")
    parser.add_argument("--every", default="2,4,8,16,32", help="candidate sample_every values")
    parser.add_argument("--batch-sizes", default="32,64,128")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    every = [int(k) for k in args.every.split(",")]
    epochs, repeats = (3, 7) if args.quick else (6, 15)
    images, labels = digits_train_set()
    print(f"digits CNN, {len(labels)} training images, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; error: worst epoch of {epochs}, median over "
          f"{args.seeds} seeds; time: median of {repeats} epochs\n")
    print("| batch | sample_every | epoch time vs no meter | error, ratio: worst / median "
          "epoch | error, count: worst / median epoch |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        errors = estimate_errors(images, labels, batch_size, every, range(args.seeds), epochs)
        ratios = time_ratios(images, labels, batch_size, [1, *every], repeats)
        for k in [1, *every]:
            cells = [" / ".join(f"{100 * e:.1f} %" for e in errors[k, estimator])
                     if k > 1 else "0 (reference)" for estimator in ESTIMATORS]
            marks = ("*" if k == DEFAULT_SAMPLE_EVERY else "")
            print(f"| {batch_size} | {k}{marks} | {ratios[k]:.3f}x | {' | '.join(cells)} |",
                  flush=True)
    print(f"\n* the library default. Targets: time <= {TIME_TARGET}x, error <= "
          f"{100 * ERROR_TARGET:.0f} %.")


if __name__ == "__main__":
    main()
