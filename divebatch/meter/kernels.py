"""Tensor kernels that the per-layer rules share: squared norms per sample, chunks of samples that
bound temporaries, the Gram-vs-explicit choice, and the cost model's constants.

Temporaries are computed in chunks of samples so that they stay within ``TEMP_BUDGET`` times the
layer's own input or output (or ``MIN_TEMP_ELEMENTS``). Everything is summed in float32 at least
(``accumulation_dtype``), so bf16/fp16 activations under autocast are summed accurately.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

# Gram-vs-explicit cost model, in multiply-adds per sample. An elementwise pass over one element
# costs about this many multiply-adds of a matrix product (measured on CPU)...
ELEMENTWISE_COST = 20
# ...and a per-sample matrix product whose inner dimension (positions) is small runs far below
# peak: it is charged this many positions more than it has.
SMALL_MATMUL_POSITIONS = 64
# The fixed cost of one tensor operation (dispatch, allocation), in multiply-adds per batch: about
# 10 us of CPU time. It decides between paths only where the tensors are tiny.
OPERATION_COST = 200_000
# Chunks of samples keep the temporaries of a rule within this many times the larger of the
# layer's input and output...
TEMP_BUDGET = 2
# ...or within this many elements (1 MiB of float32), if that is more: tiny layers are not
# split, since every chunk costs a round of operations. With 16 MiB the digits CNN's unfold-Gram
# patches at B = 128 (2.3 MiB, and the padded input beside them) put its measured step's peak
# memory at 1.50x a plain step's; with 1 MiB 1.11x (docs/performance.md, seventh pass).
MIN_TEMP_ELEMENTS = 2 ** 18
# Temporaries up to this fraction over the budget are not split, and a split makes chunks of
# equal size: every chunk costs a round of operations, and the digits CNN's 32 -> 64 layer at
# B = 32 (1.6 % over the floor) went 31 samples and then 1.
CHUNK_SLACK = 0.125
# Rules that form per-sample gradients a few samples at a time (tied weights, the torch.func
# re-run) take this many elements (16 MiB of float32) per round: a round there is a whole
# batched backward, far dearer than a rule's few operations.
PER_SAMPLE_GRADS_ELEMENTS = 2 ** 22
# On CUDA a round of operations costs more (kernel launches from Python) and a GPU has more
# memory: up to 128 MiB of float32 temporaries before splitting.
CUDA_MIN_TEMP_ELEMENTS = 2 ** 25


PARAMETER_CONTAINERS = (nn.ParameterList, nn.ParameterDict)


def is_trainable(param: Tensor | None) -> bool:
    return param is not None and param.requires_grad


def own_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters a module uses as its own: those it holds directly, those of its
    ``nn.ParameterList`` and ``nn.ParameterDict`` children (``ws.0``), and, for a parametrized
    module (weight_norm, spectral_norm: ``torch.nn.utils.parametrize``), the originals its
    weights are computed from (``parametrizations.weight.original``)."""
    if parametrize.is_parametrized(module):
        return list(module.named_parameters())
    params = list(module.named_parameters(recurse=False))
    for child_name, child in module.named_children():
        if isinstance(child, PARAMETER_CONTAINERS):
            params += [(f"{child_name}.{name}", p) for name, p in child.named_parameters()]
    return params


def trainable_direct_params(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``own_parameters`` that require grad."""
    return [(name, p) for name, p in own_parameters(module) if p.requires_grad]


def accumulation_dtype(tensor: Tensor) -> torch.dtype:
    """float32 at least, so that bf16/fp16 activations under autocast are summed accurately."""
    return torch.promote_types(tensor.dtype, torch.float32)


def is_channels_last(x: Tensor) -> bool:
    """Laid out channels-last, and not also plainly (as one channel or one pixel makes it)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def sq_norms(per_sample: Tensor) -> Tensor:
    """(N, ...) -> (N,) squared Euclidean norm of each sample's slice."""
    flat = per_sample.reshape(per_sample.shape[0], -1).to(accumulation_dtype(per_sample))
    return torch.linalg.vecdot(flat, flat)


def total(norms: list[Tensor]) -> Tensor | int:
    """The sum of a rule's fresh (N,) norm tensors, added in place (``sum`` would allocate
    for ``0 + norms[0]`` too); 0 when the layer has nothing trainable."""
    if not norms:
        return 0
    for more in norms[1:]:
        norms[0].add_(more)
    return norms[0]


def frobenius_dots(a: Tensor, b: Tensor) -> Tensor:
    """(B, ...) x (B, ...) -> (B,): sum of the elementwise product, without a temporary."""
    a, b = a.reshape(a.shape[0], 1, -1), b.reshape(b.shape[0], -1, 1)
    return torch.bmm(a, b).view(-1)


def gram_is_cheaper(gram_cost: float, explicit_cost: float) -> bool:
    """The Gram-vs-explicit choice; tests replace it to force either branch (callers look it up
    as ``kernels.gram_is_cheaper`` for that reason)."""
    return gram_cost < explicit_cost


def sample_chunks(tensors: Sequence[Tensor], temp_per_sample: int) -> list[tuple[Tensor, ...]]:
    """Slices of samples of ``tensors`` (which share their first dimension) small enough that
    ``temp_per_sample`` temporary elements per sample stay within ``TEMP_BUDGET`` times the
    largest of them (or ``MIN_TEMP_ELEMENTS``, on CUDA ``CUDA_MIN_TEMP_ELEMENTS``), give or take
    ``CHUNK_SLACK``; as few slices as that allows, of equal size; one slice (the tensors
    themselves) when everything fits."""
    n_samples = tensors[0].shape[0]
    least = CUDA_MIN_TEMP_ELEMENTS if tensors[0].is_cuda else MIN_TEMP_ELEMENTS
    budget = max(TEMP_BUDGET * max(t.numel() for t in tensors), least, 1) * (1 + CHUNK_SLACK)
    n_chunks = min(n_samples, math.ceil(n_samples * temp_per_sample / budget))
    if n_chunks <= 1:
        return [tuple(tensors)]
    return list(zip(*(t.tensor_split(n_chunks) for t in tensors)))  # sizes differ by one at most


def in_chunks(per_sample_fn: Callable[..., Tensor], tensors: Sequence[Tensor],
              temp_per_sample: int) -> Tensor:
    """Apply ``per_sample_fn`` to slices of samples so temporaries stay within the inputs' size
    (see ``sample_chunks``) and concatenate its (n,) results."""
    chunks = sample_chunks(tensors, temp_per_sample)
    if len(chunks) == 1:
        return per_sample_fn(*chunks[0])
    return torch.cat([per_sample_fn(*chunk) for chunk in chunks])
