"""The CPU's grouped weight-gradient convolution (one group per sample: the Conv2d rule's
explicit path) in chunks of k samples, against the batch weight gradient of the same layer, on
13 layer shapes (the small CNN's, ResNet-18's on 32x32 images, the digits CNN's), one thread,
CPU time, medians. The "rule" column is the chunk ``GROUPED_CONV_CHUNK_ELEMENTS`` picks
(issue 32, eleventh pass).

    python benchmarks/grouped_conv_chunks.py --batch-size 32
    python benchmarks/grouped_conv_chunks.py --batch-size 128
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from divebatch.meter.rules import conv as conv_rules  # noqa: E402
from round_robin import median_ms  # noqa: E402

SHAPES = [  # (C_in, C_out, input side, stride)
    (32, 64, 32, 2), (64, 64, 16, 2), (32, 32, 32, 1), (64, 64, 32, 1), (128, 128, 16, 1),
    (256, 256, 8, 1), (512, 512, 4, 1), (64, 128, 32, 2), (128, 256, 16, 2), (256, 512, 8, 2),
    (1, 32, 8, 1), (32, 64, 8, 2), (64, 64, 4, 2)]


def in_chunks(conv: nn.Conv2d, x: torch.Tensor, grad_out: torch.Tensor, samples: int) -> None:
    for x_part, grad_part in zip(x.split(samples), grad_out.split(samples)):
        per_sample = conv_rules._per_sample_weight_grads_by_conv(conv, x_part, grad_part)
        per_sample.sum(0)
        conv_rules._large_sq_norms(per_sample)


def row(batch: int, chunks: list[int], c_in: int, c_out: int, side: int, stride: int,
        repeats: int) -> str:
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
    x = torch.randn(batch, c_in, side, side)
    with torch.no_grad():
        grad_out = torch.randn_like(conv(x))
        batch_ms = median_ms(lambda: torch.nn.grad.conv2d_weight(
            x, conv.weight.shape, grad_out, stride=stride, padding=1), repeats)
        per_sample = x[0].numel() + grad_out[0].numel() + conv.weight.numel()
        rule = max(1, conv_rules.GROUPED_CONV_CHUNK_ELEMENTS // per_sample)
        cells = [f"{median_ms(lambda: in_chunks(conv, x, grad_out, k), repeats) / batch_ms:.2f}x"
                 for k in chunks]
    return (f"| {c_in} -> {c_out}, {side}x{side}, stride {stride} | {batch_ms:.2f} | "
            + " | ".join(cells) + f" | {min(rule, batch)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    chunks = [k for k in (1, 2, 4, 8, 16, 32) if k < args.batch_size] + [args.batch_size]
    print(f"B = {args.batch_size}: chunked grouped weight gradient / batch weight gradient")
    print("| layer | batch weight gradient ms | " + " | ".join(f"k = {k}" for k in chunks)
          + " | rule's k |")
    print("| --- | ---: | " + " | ".join("---:" for _ in chunks) + " | ---: |")
    for shape in SHAPES:
        print(row(args.batch_size, chunks, *shape, args.repeats), flush=True)


if __name__ == "__main__":
    main()
