"""One run on several processes: torchrun and DistributedDataParallel (DDP).

Under ``torchrun`` (WORLD_SIZE, RANK and LOCAL_RANK in the environment) the trainer trains one
model with DDP: NCCL on GPUs (process r uses cuda:LOCAL_RANK), gloo on CPU. The schedulers
decide the global batch size B; every process runs a contiguous share of each global batch,
B // W or B // W + 1 samples, cut from the same seeded permutation, so over an epoch the W
processes see disjoint shards that together are the single-process epoch.

Exactness: each share backpropagates sum(its per-sample losses) / B and a communication hook
makes DDP *sum* the gradients over processes instead of averaging them, so ``param.grad`` is
(1 / B) sum_i g_i over the global batch, as in one process, and per-sample gradients seen by
the DiversityMeter's hooks are g_i / B, as in one process. Only S (each process's sum of
||g_i||^2) needs one extra all-reduce, of one number per measured epoch, through the meter's
``reduce`` hook. Results equal the single-process run up to the order of float additions.

>>> group = Distributed.setup(torch.device("cpu"))  # no torchrun: one process, no-ops
>>> group.world_size, group.is_main, [(s.start, s.stop) for s in group.micro_batches(5, 2)]
(1, True, [(0, 2), (2, 4), (4, 5)])
"""

from __future__ import annotations

import gc
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch import Tensor, nn


def launched() -> bool:
    """True inside a process started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 (or no torchrun): the process that writes the run store and prints."""
    return int(os.environ.get("RANK", "0")) == 0


def _sum_gradients(group, bucket):
    """DDP communication hook: all-reduce SUM (DDP's default hook divides by W afterwards).
    Unannotated: DDP checks annotations, which `from __future__` would turn into strings."""
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


class Distributed:
    """The processes training one run; with one process every method is a cheap no-op."""

    def __init__(self, device: torch.device, rank: int = 0, world_size: int = 1,
                 owns_group: bool = False, control_group: dist.ProcessGroup | None = None):
        self.device, self.rank, self.world_size = device, rank, world_size
        self.is_main = rank == 0
        self._owns_group = owns_group        # we called init_process_group: we destroy it
        self._control_group = control_group  # CPU (gloo) group for control messages
        self._ddp: nn.parallel.DistributedDataParallel | None = None
        self._next_poll_step = 1             # first mid-epoch poll after the first step
        self._polled_step, self._polled_time = 0, time.perf_counter()

    @classmethod
    def setup(cls, device: torch.device) -> "Distributed":
        """Join torchrun's process group if launched by it (cuda -> cuda:LOCAL_RANK, NCCL;
        cpu -> gloo), else a one-process group."""
        if not launched():
            return cls(device)
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device should be cpu or cuda under torchrun, but got "
                             f"device={device.type!r}")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        owns_group = not dist.is_initialized()
        if owns_group:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # control messages are tiny Python objects: keep them off the GPU (no device syncs)
        control_group = dist.new_group(backend="gloo") if device.type == "cuda" else None
        return cls(device, dist.get_rank(), dist.get_world_size(), owns_group, control_group)

    # ------------------------------------------------------------------ the model

    def wrap(self, model: nn.Module) -> None:
        """Train `model` through DDP (summing gradients); it keeps its own parameters, so
        the optimizer, the meter and evaluation use `model` itself."""
        if self.world_size > 1:
            # conv weights with one input channel: grad and bucket differ only in the stride of
            # a size-1 dimension, the same memory layout, yet DDP warns once; nothing to fix
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
            self._ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                gradient_as_bucket_view=True)  # param.grad lives in DDP's buckets: no copy
            self._ddp.register_comm_hook(None, _sum_gradients)

    def micro_batches(self, n_samples: int, max_micro_batch: int = 0) -> Iterator[slice]:
        """Slices of at most `max_micro_batch` samples (0: one slice) covering this process's
        `n_samples`, at least one even when empty (DDP needs every process in each all-reduce).

        Run forward and backward of each slice inside the loop: gradients accumulate in
        param.grad, and DDP all-reduces them only during the last slice (no_sync before)."""
        size = max_micro_batch if 0 < max_micro_batch < n_samples else max(n_samples, 1)
        starts = range(0, max(n_samples, 1), size)
        for number, start in enumerate(starts, start=1):
            last = number == len(starts)
            with nullcontext() if last or self._ddp is None else self._ddp.no_sync():
                yield slice(start, min(start + size, n_samples))

    def forward(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """`model(inputs)`, through DDP when there are several processes."""
        return model(inputs) if self._ddp is None else self._ddp(inputs)

    # ------------------------------------------------------------------ data

    def shard(self, batch: Tensor) -> Tensor:
        """This process's contiguous share of a global batch (dim 0): ranks below B % W get
        B // W + 1 samples, the others B // W (possibly none)."""
        if self.world_size == 1:
            return batch
        return torch.tensor_split(batch, self.world_size)[self.rank]

    def all_sum(self, tensor: Tensor) -> Tensor:
        """Sum over processes, on `tensor`'s device (`tensor` itself for one process; else a
        new tensor, `tensor` untouched)."""
        if self.world_size == 1:
            return tensor
        total = tensor.detach().to(self.device, copy=True)
        dist.all_reduce(total)
        return total.to(tensor.device)

    # ------------------------------------------------------------------ control

    def control(self, control):
        """A control channel giving every process rank 0's messages at the same step."""
        if self.world_size == 1:
            return control
        return _BroadcastControl(control if self.is_main else None, self._control_group)

    def poll_due(self, step: int, every_seconds: float) -> bool:
        """The same answer on every process: a poll every ~`every_seconds` of rank 0's time,
        at steps that rank 0 schedules from its pace at the previous poll (one broadcast of
        one number per poll, none in between)."""
        if step < self._next_poll_step:
            return False
        now = time.perf_counter()
        steps_per_second = (step - self._polled_step) / max(now - self._polled_time, 1e-9)
        next_step = torch.tensor([step + max(1, int(every_seconds * steps_per_second))])
        dist.broadcast(next_step, 0, group=self._control_group)
        self._next_poll_step = int(next_step)
        self._polled_step, self._polled_time = step, now
        return True

    def close(self) -> None:
        """Drop DDP, then leave the process group if we joined it (DDP must go first: a
        reducer that outlives its group aborts the interpreter at exit)."""
        self._ddp = None
        gc.collect()
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_group = False


class _BroadcastControl:
    """Rank 0 polls the real channel (the run store); every rank gets the same messages."""

    def __init__(self, control, group: dist.ProcessGroup | None):
        self.control, self.group = control, group

    def poll(self) -> list[dict]:
        messages = [self.control.poll() if self.control is not None else []]
        dist.broadcast_object_list(messages, src=0, group=self.group)
        return messages[0]
