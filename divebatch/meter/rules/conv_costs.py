"""The Conv2d rule's cost model (``divebatch.meter.rules.conv``): multiply-adds per sample of
each way to a layer's per-sample weight norms, from the layer's numbers alone (so cached), with
each device's price of an elementwise pass and of one tensor operation (``DEVICE_COSTS``)."""

from __future__ import annotations

import functools
from typing import NamedTuple

from divebatch.meter import kernels
from divebatch.meter.kernels import ELEMENTWISE_COST, OPERATION_COST

Phases = tuple[tuple[int, int, tuple[tuple[int, int, int, int], ...]], ...]


class DeviceCosts(NamedTuple):
    """What a device charges, in multiply-adds of a matrix product."""
    elementwise: float   # one elementwise pass over one element
    operation: float     # the fixed cost of one tensor operation, per batch
    small_matmul: float  # extra positions charged to a per-sample product's inner dimension
    patch_copy_channels_last: float  # copying one patch element of a channels-last input


# CPU: measured (see divebatch.meter.kernels). CUDA: from an H200's data sheet, not yet measured
# here: ~33 T fp32 multiply-adds/s against ~0.6 T elements/s of an elementwise pass (read and
# write, 4.8 TB/s), and ~5 us per kernel launch; batched products of small matrices run well.
# On a CPU the weight-gradient convolution with one group per sample runs small products below
# peak even in chunks that stay in the cache (conv.GROUPED_CONV_CHUNK_ELEMENTS): 30-90 extra
# positions on 13 layer shapes at B = 32 and 128 (the small CNN's last convolution, 64 -> 64 at
# 8x8 out, 1.8 times its batch weight gradient: 51), so 64; before the chunks it took 3.7 to
# 4.2 times and 160 sent that layer to the pixel-Gram path (issue 32, eleventh pass).
GROUPED_CONV_SMALL_POSITIONS = 64
# On a channels-last input the unfold-Gram path's patches (conv_patches.patches_last, one copy
# of a strided view) are copied in runs of a pixel's channels: about a fifth of an elementwise
# pass per element, where the pixel-Gram path copies each stride phase's pixels out of that
# layout (an elementwise pass over the padded input). Fitted on 34 layers x batch sizes timed
# both ways (docs/performance.md, seventh pass): 3 choices the slower Gram path, against 13.
PATCH_COPY_CHANNELS_LAST = 4
DEVICE_COSTS = {"cpu": DeviceCosts(ELEMENTWISE_COST, OPERATION_COST,
                                   GROUPED_CONV_SMALL_POSITIONS, PATCH_COPY_CHANNELS_LAST),
                "cuda": DeviceCosts(elementwise=50, operation=150_000_000, small_matmul=0,
                                    patch_copy_channels_last=50)}


class PathCosts(NamedTuple):
    """Multiply-adds per sample of each way to the weight's per-sample norms, and of the batch
    weight gradient that autograd computes anyway."""
    pixel_gram: float
    unfold_gram: float
    explicit: float
    weight_grad: float

    @property
    def gram(self) -> float:
        return min(self.pixel_gram, self.unfold_gram)

    def choice(self) -> str:
        """The cheapest path: "explicit", "unfold_gram" or "pixel_gram"."""
        if not kernels.gram_is_cheaper(self.gram, self.explicit):
            return "explicit"
        return "unfold_gram" if self.unfold_gram < self.pixel_gram else "pixel_gram"


@functools.lru_cache(maxsize=4096)  # a pure function of its numbers: called on every batch
def path_costs(costs: DeviceCosts, batched_matmul: bool, channels_last: bool, groups: int,
               channels_in: int, channels_out: int, kernel_size: tuple[int, int],
               stride: tuple[int, int], dilation: tuple[int, int], n_samples: int,
               out_height: int, out_width: int) -> PathCosts:
    c_in, c_out = channels_in // groups, channels_out // groups  # per group
    kernel = kernel_size[0] * kernel_size[1]
    positions = out_height * out_width
    read = phases(kernel_size, stride, dilation, out_height, out_width)
    per_op = costs.operation / max(n_samples, 1)
    grad_gram = positions ** 2 * c_out
    unfold_pass = c_in * kernel * positions * costs.elementwise  # copying the patches
    pixel_gram = (sum((rows * cols) ** 2 for rows, cols, _ in read) * c_in + grad_gram
                  + positions ** 2 * kernel * costs.elementwise
                  + per_op * (6 + 5 * len(read) + 2 * kernel))
    unfold_gram = positions ** 2 * c_in * kernel + grad_gram + per_op * 6
    if channels_last:
        pixel_gram += sum(rows * cols for rows, cols, _ in read) * c_in * costs.elementwise
        unfold_gram += c_in * kernel * positions * costs.patch_copy_channels_last
    else:
        unfold_gram += unfold_pass
    weight_grad = c_in * kernel * c_out * positions
    explicit = c_in * kernel * c_out * (positions + costs.small_matmul)
    if batched_matmul:
        explicit += unfold_pass + per_op * 4
    return PathCosts(pixel_gram, unfold_gram, explicit, weight_grad)


@functools.lru_cache(maxsize=4096)
def phases(kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
           out_height: int, out_width: int) -> Phases:
    """The stride phases of the padded input that the kernel reads, with their kernel offsets.

    Kernel offset (i, j) at output position (y, x) reads padded pixel (s y + d i, s x + d j),
    which is pixel (y + (d i) // s, x + (d j) // s) of phase ((d i) % s, (d j) % s), the
    sub-image x[:, :, (d i) % s::s, (d j) % s::s]. For each phase that some offset reads:
    (rows, cols) of it that are read, and ((phase_y, phase_x, shift_y, shift_x), ...) per
    offset.
    """
    def by_phase(kernel: int, dilation: int, stride: int) -> dict[int, list[int]]:
        shifts: dict[int, list[int]] = {}
        for offset in range(0, kernel * dilation, dilation):
            shifts.setdefault(offset % stride, []).append(offset // stride)
        return shifts

    rows_by_phase = by_phase(kernel_size[0], dilation[0], stride[0])
    cols_by_phase = by_phase(kernel_size[1], dilation[1], stride[1])
    return tuple((out_height + max(shifts_y), out_width + max(shifts_x),
                  tuple((phase_y, phase_x, shift_y, shift_x)
                        for shift_y in shifts_y for shift_x in shifts_x))
                 for phase_y, shifts_y in rows_by_phase.items()
                 for phase_x, shifts_x in cols_by_phase.items())
