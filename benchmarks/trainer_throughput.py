"""Our trainer's fixed-batch epoch against a minimal hand-written PyTorch loop.

Same model (same initial weights), same data already on the device, same batch size and
shuffle; the two are timed alternately in one process and the median epoch times compared.
A ratio >= 0.95 means the trainer keeps at least 95% of the hand loop's throughput.

    python benchmarks/trainer_throughput.py                 # digits CNN + CIFAR-shaped ResNet-18
    python benchmarks/trainer_throughput.py --quick         # fewer repeats, narrow ResNet
    python benchmarks/trainer_throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divebatch.config import RunConfig  # noqa: E402
from divebatch.data.problem import Problem  # noqa: E402
from divebatch.training.trainer import Trainer  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def hand_loop_epoch(model, optimizer, problem: Problem, loss_fn, batch_size: int,
                    generator: torch.Generator) -> float:
    """The minimal loop a PyTorch user would write for in-memory data."""
    device = problem.x_train.device
    n = problem.n_train
    order = torch.randperm(n, generator=generator).to(device)
    model.train()
    synchronize(device)
    started = time.perf_counter()
    for start in range(0, n, batch_size):
        batch = order[start:start + batch_size]
        inputs = problem.inputs(problem.x_train[batch], training=True)
        optimizer.zero_grad()
        loss_fn(model(inputs), problem.y_train[batch]).mean().backward()
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - started


def trainer_epoch(trainer: Trainer, epoch: int) -> float:
    synchronize(trainer.device)
    started = time.perf_counter()
    trainer.train_pass(epoch, trainer.scheduler.batch_size)
    synchronize(trainer.device)
    return time.perf_counter() - started


def compare(config: RunConfig, repeats: int) -> tuple[float, float]:
    """(median trainer epoch seconds, median hand-loop epoch seconds)."""
    trainer = Trainer(config)
    model = copy.deepcopy(trainer.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed + 1)
    trainer_epoch(trainer, 1)  # warm-up both
    hand_loop_epoch(model, optimizer, trainer.problem, trainer.loss_fn, config.batch_size,
                    generator)
    ours, theirs = [], []
    for epoch in range(2, repeats + 2):
        ours.append(trainer_epoch(trainer, epoch))
        theirs.append(hand_loop_epoch(model, optimizer, trainer.problem, trainer.loss_fn,
                                      config.batch_size, generator))
    return statistics.median(ours), statistics.median(theirs)


def cifar_shaped_config(device: str, quick: bool) -> RunConfig:
    return RunConfig(problem="cifar10", model="resnet18", method="sgd", batch_size=128,
                     max_batch_size=128, device=device, augment=True,
                     n_samples=512 if quick else 2048)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    cases = [("digits CNN, B=32", RunConfig(problem="digits", model="cnn", method="sgd",
                                            batch_size=32, device=args.device))]
    cases.append(("CIFAR-shaped ResNet-18, B=128", cifar_shaped_config(args.device, args.quick)))
    print(f"torch {torch.__version__}, device {args.device}, median of {repeats} epochs")
    print(f"{'case':34s} {'trainer s':>10s} {'hand loop s':>12s} {'throughput ratio':>17s}")
    for name, config in cases:
        with synthetic_cifar(config):
            ours, theirs = compare(config, repeats)
        print(f"{name:34s} {ours:10.3f} {theirs:12.3f} {theirs / ours:17.3f}")


class synthetic_cifar:
    """Serve random CIFAR-shaped uint8 images when the config asks for CIFAR-10, so the
    benchmark runs without the dataset on disk (speed does not depend on pixel values)."""

    def __init__(self, config: RunConfig):
        self.active = config.problem == "cifar10"
        self.n = config.n_samples or 2048

    def __enter__(self):
        if self.active:
            from divebatch.data import image_problems
            from divebatch.data.images import ImageArrays
            self.module, self.original = image_problems, image_problems.load_images
            g = torch.Generator().manual_seed(0)

            def fake(name, root=None, progress=None):
                x = torch.randint(0, 256, (self.n, 3, 32, 32), generator=g, dtype=torch.uint8)
                y = torch.randint(0, 10, (self.n,), generator=g)
                return ImageArrays(x, y, x[:256], y[:256], [str(i) for i in range(10)], 10,
                                   name)
            image_problems.load_images = fake
        return self

    def __exit__(self, *exc):
        if self.active:
            self.module.load_images = self.original


if __name__ == "__main__":
    main()
