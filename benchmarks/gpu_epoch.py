"""CIFAR-10 ResNet-18 epoch time: plain / measured x GroupNorm / BatchNorm x bf16 / fp32 x B.

Writes a full-size CIFAR-10 python-version folder of random pixels (50,000 training and 10,000
test images by default) into a temporary directory, then trains each configuration for
``--epochs`` epochs with ``divebatch.train`` (fixed batch, SGD, lr 0.1, weight decay 5e-4) and
reports the last epoch's ``train_time`` (the first epoch warms up cuDNN and the allocator) and
images per second. "plain" does not measure diversity (``--no-diversity-every-epoch``);
"measured" measures per-sample norms on every batch, as the defaults do. bf16 means autocast
with channels-last, fp32 neither (CUDA-only options: on a CPU only fp32 is run). The paper's
authors report 15-19 s per CIFAR-10 epoch on their GPU.

    python benchmarks/gpu_epoch.py                                 # a few minutes on an H200
    python benchmarks/gpu_epoch.py --device cpu --images 64 --test-images 16 --model cnn \\
        --batch-sizes 16,32                                        # a smoke run on a CPU
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divebatch.config import RunConfig  # noqa: E402
from divebatch.training.trainer import train  # noqa: E402

TARGETS = {("plain", "group", 128): 2.5, ("plain", "group", 2048): 1.0,
           ("measured", "group", 128): 3.2}  # seconds per 50k-image epoch (issue 14, H200)
PRECISIONS = {"bf16": dict(amp=True, channels_last=True),
              "fp32": dict(amp=False, channels_last=False)}
MODES = {"plain": False, "measured": True}  # diversity_every_epoch


def write_synthetic_cifar10(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """root/cifar-10-batches-py: five training batch files and a test batch of random pixels
    and labels, in the python version's layout (numpy arrays, as the loader accepts)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)

    def dump(name: str, n: int) -> None:
        content = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                   b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   b"filenames": [b"synthetic.png"] * n}
        (folder / name).write_bytes(pickle.dumps(content))

    for index, share in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        dump(f"data_batch_{index}", len(share))
    dump("test_batch", n_test)
    (folder / "batches.meta").write_bytes(pickle.dumps(
        {b"label_names": [b"class%d" % i for i in range(10)], b"num_vis": 3072}))


def epoch_seconds(data_dir: str, args: argparse.Namespace, mode: str, norm: str,
                  precision: str, batch_size: int) -> float:
    config = RunConfig(problem="cifar10", model=args.model, method="sgd", norm=norm,
                       epochs=args.epochs, batch_size=batch_size, max_batch_size=batch_size,
                       lr=0.1, weight_decay=5e-4, device=args.device, data_dir=data_dir,
                       diversity_every_epoch=MODES[mode], seed=0, **PRECISIONS[precision])
    result = train(config)
    if result.status != "completed":
        raise SystemExit(f"{mode} {norm} {precision} B={batch_size}: {result.status} "
                         f"({result.message})")
    return result.records[-1].train_time


def table(rows: list[dict], n_train: int) -> str:
    lines = ["| norm | precision | B | plain s | plain img/s | measured s | measured img/s "
             "| measured / plain |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        plain, measured = row.get("plain"), row.get("measured")
        cells = [f"{s:.2f} | {n_train / s:,.0f}" if s else " | " for s in (plain, measured)]
        ratio = f"{measured / plain:.2f}x" if plain and measured else ""
        lines.append(f"| {row['norm']} | {row['precision']} | {row['batch_size']} | "
                     f"{cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines)


def verdicts(rows: list[dict], n_train: int) -> list[str]:
    """Issue 14's targets (float32 or bf16, whichever is faster), scaled to 50,000 images."""
    lines = []
    for (mode, norm, batch_size), target in TARGETS.items():
        times = [row[mode] for row in rows if (row["norm"], row["batch_size"]) == (norm,
                 batch_size) and row.get(mode)]
        if times:
            seconds = min(times) * 50_000 / n_train
            lines.append(f"{mode} {norm} B={batch_size}: {seconds:.2f} s per 50k images "
                         f"(target <= {target} s: {'met' if seconds <= target else 'MISSED'})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--images", type=int, default=50_000, help="training images")
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--batch-sizes", default="128,2048")
    parser.add_argument("--norms", default="group,batch")
    parser.add_argument("--precisions", default=None, help="default bf16,fp32 (CPU: fp32)")
    parser.add_argument("--modes", default="plain,measured")
    parser.add_argument("--epochs", type=int, default=2, help="the last one is timed")
    parser.add_argument("--model", default="resnet18", help="resnet18 or cnn")
    args = parser.parse_args()
    precisions = (args.precisions or ("bf16,fp32" if args.device == "cuda" else "fp32"))
    print(f"device {args.device}, torch {torch.__version__}"
          + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else "")
          + f", {args.model}, {args.images} synthetic CIFAR-10 images", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        write_synthetic_cifar10(Path(data_dir), args.images, args.test_images)
        for norm in args.norms.split(","):
            for precision in precisions.split(","):
                for batch_size in map(int, args.batch_sizes.split(",")):
                    row = dict(norm=norm, precision=precision, batch_size=batch_size)
                    for mode in args.modes.split(","):
                        row[mode] = epoch_seconds(data_dir, args, mode, norm, precision,
                                                  batch_size)
                        print(f"{norm} {precision} B={batch_size} {mode}: {row[mode]:.2f} s",
                              file=sys.stderr, flush=True)
                    rows.append(row)
    print(table(rows, args.images))
    if args.model == "resnet18":
        print("\n".join(verdicts(rows, args.images)))


if __name__ == "__main__":
    main()
