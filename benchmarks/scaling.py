"""Training throughput of one run on 1, 2, ... processes (torchrun + DDP).

Each case trains the same fixed-batch run (the global batch size is the same for every process
count) under `torch.distributed.run --nproc_per_node=K --standalone`, K = 1, 2, ... (CPU: each
process gets cores / K threads, plus one process on one thread; GPU: one process per GPU),
and reports training examples per second (rank 0's train_time, evaluation excluded; median
over the epochs after the first).

    python benchmarks/scaling.py                      # CPU: 1 and 2 processes
    python benchmarks/scaling.py --device cuda        # 1..N GPUs, adds a CIFAR-shaped ResNet-18
    python benchmarks/scaling.py --nprocs 1 2 4 --epochs 4

CIFAR-shaped cases use random uint8 images (speed does not depend on pixel values), so no
dataset is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def cases(device: str) -> list[tuple[str, dict]]:
    digits = dict(problem="digits", model="cnn", method="sgd", diversity_every_epoch=False)
    chosen = [("digits CNN, B=256", {**digits, "batch_size": 256}),
              ("digits CNN, B=256, diversity 1/4",
               {**digits, "batch_size": 256, "diversity_every_epoch": True}),
              ("digits CNN, B=1024", {**digits, "batch_size": 1024})]
    if device == "cuda":
        chosen.append(("CIFAR ResNet-18 (random pixels), B=512",
                       dict(problem="cifar10", model="resnet18", method="sgd", batch_size=512,
                            n_samples=16384, diversity_every_epoch=False)))
        chosen.append(("CIFAR ResNet-18, B=512, diversity 1/4",
                       dict(problem="cifar10", model="resnet18", method="sgd", batch_size=512,
                            n_samples=16384, diversity_every_epoch=True)))
    return chosen


def train_one(config_json: str, out: str) -> None:
    """Inner mode, on every process of a torchrun launch: train, rank 0 writes the timings."""
    from divebatch.config import RunConfig
    from divebatch.training.distributed import is_main_process
    from divebatch.training.trainer import train
    from trainer_throughput import synthetic_cifar
    values = json.loads(config_json)
    config = RunConfig(**{**values, "max_batch_size": values["batch_size"]})
    with synthetic_cifar(config):
        result = train(config)
    if is_main_process():
        Path(out).write_text(json.dumps([r.to_dict() for r in result.records]))


def examples_per_second(records: list[dict]) -> float:
    timed = records[1:] or records  # the first epoch warms up (allocator, kernels)
    per_epoch = [r["samples_seen"] / r["epoch"] / r["train_time"] for r in timed]
    return statistics.median(per_epoch)


def launch(values: dict, nproc: int, threads: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "records.json"
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                   "--standalone", __file__, "--inner", json.dumps(values), "--out", str(out)]
        finished = subprocess.run(command, env=env, capture_output=True, text=True)
        if finished.returncode != 0:
            raise RuntimeError(f"{nproc} processes failed:\n{finished.stderr[-3000:]}")
        return examples_per_second(json.loads(out.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--nprocs", type=int, nargs="+",
                        help="process counts (default: 1 2 on CPU, 1..N GPUs on cuda)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        return train_one(args.inner, args.out)
    import torch
    nprocs = args.nprocs or ([1, 2] if args.device == "cpu"
                             else list(range(1, torch.cuda.device_count() + 1)))
    print(f"torch {torch.__version__}, device {args.device}, {os.cpu_count()} CPU cores, "
          f"{args.epochs} epochs (median of epochs 2..{args.epochs})")
    cores = os.cpu_count() or 1
    # (processes, CPU threads per process): on CPU each process gets its share of the cores,
    # and one process on one thread shows what the second process adds on the same footing
    layouts = [(nproc, max(1, cores // nproc) if args.device == "cpu" else 1)
               for nproc in nprocs]
    if args.device == "cpu" and cores > 1 and (1, 1) not in layouts:
        layouts.insert(1, (1, 1))
    print(f"{'case':44s} {'procs':>5s} {'threads':>7s} {'examples/s':>11s} {'vs first':>8s}")
    for name, values in cases(args.device):
        values = {**values, "epochs": args.epochs, "device": args.device}
        base = None
        for nproc, threads in layouts:
            rate = launch(values, nproc, threads)
            base = base or rate
            print(f"{name:44s} {nproc:5d} {threads:7d} {rate:11.0f} {rate / base:8.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
