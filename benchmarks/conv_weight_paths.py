"""Per-sample weight gradients of one Conv2d layer on a CPU, each way timed alone against the
batch weight gradient autograd computes anyway (issue 32, third pass).

  grouped   the weight-gradient convolution with one group per sample (the CPU's explicit path)
  windows   one batched product over patches stacked from strided windows of the padded input
            (the CPU's explicit path for short patches, C_in / G kh kw <= 32)
  unfold    the same product over F.unfold's patches (CUDA's explicit path, timed here on a CPU)
  transposed  tried and dropped: one conv2d with the input channels as the batch and the output
            gradients as one group of kernels per sample
  offsets   tried and dropped: one bmm per kernel offset over its strided window

CPU time of one thread, each way repeated for about a second, median of ``--rounds``.

    python benchmarks/conv_weight_paths.py --batch-size 32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divebatch.meter.rules import conv  # noqa: E402

# (C_in, C_out, input side, stride): the small CNN's three convolutions, other short stems
LAYERS = {"cnn stem 3->32": (3, 32, 32, 1), "cnn 32->64 s2": (32, 64, 32, 2),
          "cnn 64->64 s2": (64, 64, 16, 2), "grayscale 1->32": (1, 32, 28, 1),
          "rgb 3->64": (3, 64, 32, 1), "8->32": (8, 32, 32, 1)}


def milliseconds(fn, seconds: float = 1.0) -> float:
    fn()
    started, calls = time.process_time(), 0
    while time.process_time() - started < seconds:
        fn()
        calls += 1
    return (time.process_time() - started) / calls * 1e3


def transposed(x: Tensor, grad_out: Tensor, stride: int) -> Tensor:
    """(C_in, N C_out, 3, 3): each sample's output gradients correlated with its input."""
    n_samples, channels_out = grad_out.shape[:2]
    kernels = grad_out.reshape(n_samples * channels_out, 1, *grad_out.shape[2:])
    return F.conv2d(x.transpose(0, 1), kernels, padding=1, dilation=stride,
                    groups=n_samples)[:, :, :3, :3]


def by_offsets(x: Tensor, grad_out: Tensor, stride: int) -> Tensor:
    """(N, 9, C_out, C_in): one product per kernel offset."""
    padded = F.pad(x, (1, 1, 1, 1))
    rows, cols = grad_out.shape[2:]
    grads = grad_out.flatten(2)  # (N, C_out, T)
    return torch.stack([
        torch.bmm(grads, padded[:, :, i:i + stride * (rows - 1) + 1:stride,
                                j:j + stride * (cols - 1) + 1:stride].flatten(2).transpose(1, 2))
        for i in range(3) for j in range(3)], 1)


def timings(batch_size: int, layer: tuple[int, int, int, int]) -> dict[str, float]:
    channels_in, channels_out, side, stride = layer
    module = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
    x = torch.randn(batch_size, channels_in, side, side)
    grad_out = torch.randn_like(module(x)).detach()
    ways = {"batch weight gradient": lambda: torch.nn.grad.conv2d_weight(
                x, module.weight.shape, grad_out, stride=stride, padding=1),
            "grouped": lambda: conv._per_sample_weight_grads_by_conv(module, x, grad_out),
            "windows": lambda: conv._per_sample_weight_grads_by_windows(module, x, grad_out),
            "unfold": lambda: conv._per_sample_weight_grads_by_bmm(module, x, grad_out),
            "transposed": lambda: transposed(x, grad_out, stride),
            "offsets": lambda: by_offsets(x, grad_out, stride)}
    with torch.no_grad():
        return {name: milliseconds(way) for name, way in ways.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"B = {args.batch_size}, 3x3 kernels, padding 1, 1 thread, CPU time, ms per call, "
          f"median of {args.rounds}")
    print("| layer | patch | batch weight gradient | grouped | windows | unfold | transposed | "
          "offsets |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, layer in LAYERS.items():
        rounds = [timings(args.batch_size, layer) for _ in range(args.rounds)]
        cells = [f"{statistics.median(r[way] for r in rounds):.2f}" for way in rounds[0]]
        print(f"| {name} | {layer[0] * 9} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
