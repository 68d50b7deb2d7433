"""Per-sample gradient norms and gradient diversity (Yin et al. 2018), from one backward pass.

Gradient diversity of per-sample gradients g_1..g_N is

    Delta = sum_i ||g_i||^2 / ||sum_i g_i||^2          (1/N when all g_i are equal)

The denominator is the ordinary batch gradient. The numerator comes from per-layer rules: a
forward hook keeps each layer's input (GroupNorm also the statistics autograd saved), a hook on
the layer's output receives dL/d(output) during the ordinary backward pass, and the layer's rule
turns (input, output gradient) into the squared norm of every sample's gradient of that layer's
own parameters. Squared norms add up
over layers, so per-sample gradients never need to exist all at once, and for most layers
they never exist at all:

- ``nn.Linear``: a 2-D input gives ||g_i||^2 = ||a_i||^2 ||dy_i||^2 exactly. A sequence input
  (N, T, d) gives ||sum_t dy_t a_t^T||^2, computed either as sum_{t,s} (a_t.a_s)(dy_t.dy_s)
  (Gram matrices, ~ T^2 (d_in + d_out) per sample) or by forming each sample's gradient
  (~ T d_in d_out), whichever the shapes make cheaper.
- ``nn.Conv2d`` (any stride, padding, dilation, groups, padding mode): the same two choices.
  The explicit one is the convolution weight-gradient kernel run with one group per sample;
  the Gram one gets the patch Gram matrix from pixel Gram matrices x^T x of the padded input's
  stride phases, summed over the kernel offsets. Neither path unfolds the input into patches
  (which would copy it kernel-size times).
- GroupNorm, LayerNorm and eval-mode BatchNorm: affine weight and bias, in closed form.
- Any other module with parameters of its own: ``torch.func`` (``vmap`` of ``grad`` of the
  module re-run on one sample at a time) for those parameters only; children keep their rules.

Temporaries are computed in chunks of samples so that they stay within ``TEMP_BUDGET`` times
the layer's own input or output. Frozen parameters (``requires_grad=False``) are ignored everywhere.

BatchNorm in training mode mixes samples through batch statistics, so per-sample gradients are
not defined and the functions here raise ``ValueError`` unless called with
``allow_batchnorm=True``. Then BatchNorm layers use the GroupNorm-style rule with the batch
statistics held fixed, which ignores the cross-sample terms: an approximation, flagged by
``DiversityMeter.approximate``.

Unsupported, with a ``ValueError``: a module called more than once in one forward pass, a
parameter registered in two modules, and a parameter that receives a gradient although its
module's forward never ran (``nn.MultiheadAttention.out_proj``). Weight tying through direct use
of another module's parameter inside a forward cannot be detected and gives wrong norms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

# DiversityMeter measures every batch by default. Per-sample squared norms are heavy-tailed once
# training fits most samples (on the digits CNN the top 1 % of samples hold up to 80 % of S), so
# measuring every k-th batch missed the every-batch Delta_hat by 12-25 % already at k = 2-4
# (benchmarks/diversity_sampling.py, docs/performance.md); larger k is a speed knob, not a default.
DEFAULT_SAMPLE_EVERY = 1
# Added to ||G||^2 in Delta_hat = S / (||G||^2 + EPS), so that a zero gradient gives a huge but
# finite estimate.
EPS = 1e-12
# Gram-vs-explicit cost model, in multiply-adds per sample. An elementwise pass over one element
# costs about this many multiply-adds of a matrix product (measured on CPU)...
ELEMENTWISE_COST = 20
# ...and a per-sample matrix product whose inner dimension (positions) is small runs far below
# peak: it is charged this many positions more than it has.
SMALL_MATMUL_POSITIONS = 64
# Chunks of samples keep the temporaries of a rule within this many times the larger of the
# layer's input and output.
TEMP_BUDGET = 2


def _layer_input(layer: nn.Module, args: tuple, output: Tensor) -> Tensor:
    return args[0]


# A capture runs in the forward hook and returns what the rule will need (by default the layer
# input). A rule maps (layer, what its capture kept, gradient of the loss w.r.t. the layer
# output) to the squared norm, per sample, of the gradient w.r.t. the layer's trainable direct
# parameters: (N,).
Capture = Callable[[nn.Module, tuple, Tensor], object]
Rule = Callable[[nn.Module, object, Tensor], Tensor]
RULES: dict[type[nn.Module], tuple[Capture, Rule]] = {}


def register_rule(*layer_types: type[nn.Module],
                  capture: Capture = _layer_input) -> Callable[[Rule], Rule]:
    """Register ``rule`` for exactly these layer classes (subclasses take the torch.func path)."""
    def register(rule: Rule) -> Rule:
        for layer_type in layer_types:
            RULES[layer_type] = (capture, rule)
        return rule
    return register


# ----------------------------------------------------------------------------- small helpers

def _is_trainable(param: Tensor | None) -> bool:
    return param is not None and param.requires_grad


def _trainable_direct_params(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, p) for name, p in module.named_parameters(recurse=False) if p.requires_grad]


def _accumulation_dtype(tensor: Tensor) -> torch.dtype:
    # float32 at least, so that bf16/fp16 activations under autocast are summed accurately
    return torch.promote_types(tensor.dtype, torch.float32)


def _sq_norms(per_sample: Tensor) -> Tensor:
    """(N, ...) -> (N,) squared Euclidean norm of each sample's slice."""
    flat = per_sample.reshape(per_sample.shape[0], -1).to(_accumulation_dtype(per_sample))
    return torch.linalg.vecdot(flat, flat)


def _frobenius_dots(a: Tensor, b: Tensor) -> Tensor:
    """(B, ...) x (B, ...) -> (B,): sum of the elementwise product, without a temporary."""
    a, b = a.reshape(a.shape[0], 1, -1), b.reshape(b.shape[0], -1, 1)
    return torch.bmm(a, b).view(-1)


def _gram_is_cheaper(gram_cost: float, explicit_cost: float) -> bool:
    """The Gram-vs-explicit choice; tests replace it to force either branch."""
    return gram_cost < explicit_cost


def _in_chunks(per_sample_fn: Callable[..., Tensor], tensors: Sequence[Tensor],
               temp_per_sample: int) -> Tensor:
    """Apply ``per_sample_fn`` to slices of samples so temporaries stay within the inputs' size.

    ``tensors`` share their first (sample) dimension; ``temp_per_sample`` is the number of
    temporary elements ``per_sample_fn`` allocates per sample.
    """
    n_samples = tensors[0].shape[0]
    budget = TEMP_BUDGET * max(t.numel() for t in tensors)
    chunk = max(1, budget // max(1, temp_per_sample))
    if chunk >= n_samples:
        return per_sample_fn(*tensors)
    return torch.cat([per_sample_fn(*(t[start:start + chunk] for t in tensors))
                      for start in range(0, n_samples, chunk)])


# ----------------------------------------------------------------------------- Linear

@register_rule(nn.Linear)
def _linear_sq_norms(linear: nn.Linear, x: Tensor, grad_out: Tensor) -> Tensor:
    if x.dim() == 2:  # (N, d_in), (N, d_out): rank one, ||dy a^T||^2 = ||dy||^2 ||a||^2
        grad_sq = _sq_norms(grad_out)
        weight_sq = _sq_norms(x) * grad_sq if _is_trainable(linear.weight) else 0
        return weight_sq + grad_sq if _is_trainable(linear.bias) else weight_sq
    n_samples = x.shape[0]
    x = x.reshape(n_samples, -1, x.shape[-1]).to(_accumulation_dtype(x))  # (N, T, d_in)
    grad_out = grad_out.reshape(n_samples, -1, grad_out.shape[-1]).to(x.dtype)  # (N, T, d_out)
    norms = []
    if _is_trainable(linear.weight):
        norms.append(_linear_weight_sq_norms(x, grad_out))
    if _is_trainable(linear.bias):
        norms.append(_sq_norms(grad_out.sum(1)))
    return sum(norms)


def _linear_weight_sq_norms(x: Tensor, grad_out: Tensor) -> Tensor:
    """||sum_t dy_t a_t^T||^2 per sample; x: (N, T, d_in), grad_out: (N, T, d_out)."""
    positions, d_in, d_out = x.shape[1], x.shape[2], grad_out.shape[2]
    gram_cost = positions ** 2 * (d_in + d_out + ELEMENTWISE_COST)
    explicit_cost = d_in * d_out * (positions + SMALL_MATMUL_POSITIONS)
    if _gram_is_cheaper(gram_cost, explicit_cost):
        return _in_chunks(_sequence_gram_dots, (x, grad_out), 2 * positions ** 2)
    return _in_chunks(_sequence_explicit_sq_norms, (x, grad_out), 2 * d_in * d_out)


def _sequence_gram_dots(x: Tensor, grad_out: Tensor) -> Tensor:
    """sum_{t,s} (a_t.a_s)(dy_t.dy_s) per sample."""
    x_gram = torch.bmm(x, x.transpose(1, 2))  # (N, T, T)
    grad_gram = torch.bmm(grad_out, grad_out.transpose(1, 2))  # (N, T, T)
    return _frobenius_dots(x_gram, grad_gram)


def _sequence_explicit_sq_norms(x: Tensor, grad_out: Tensor) -> Tensor:
    return _sq_norms(torch.bmm(grad_out.transpose(1, 2), x))  # (N, d_out, d_in)


# ----------------------------------------------------------------------------- Conv2d

@register_rule(nn.Conv2d)
def _conv2d_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    x = x.to(_accumulation_dtype(x))  # (N, C_in, H, W)
    grad_out = grad_out.to(x.dtype)  # (N, C_out, H_out, W_out)
    norms = []
    if _is_trainable(conv.weight):
        norms.append(_conv2d_weight_sq_norms(conv, x, grad_out))
    if _is_trainable(conv.bias):
        norms.append(_sq_norms(grad_out.sum((2, 3))))
    return sum(norms)


def _conv2d_weight_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    groups = conv.groups
    c_in, c_out = x.shape[1] // groups, grad_out.shape[1] // groups  # per group
    kernel = conv.kernel_size[0] * conv.kernel_size[1]
    positions = grad_out.shape[2] * grad_out.shape[3]
    phase_pixels = [rows * cols for rows, cols, _ in _phase_windows(conv, *grad_out.shape[2:])]
    gram_cost = (sum(p ** 2 for p in phase_pixels) * c_in
                 + positions ** 2 * (c_out + kernel * ELEMENTWISE_COST))
    explicit_cost = c_in * kernel * c_out * (positions + SMALL_MATMUL_POSITIONS)
    pad_left, pad_right, pad_top, pad_bottom = conv._reversed_padding_repeated_twice
    padded = x.shape[1] * (x.shape[2] + pad_top + pad_bottom) * (x.shape[3] + pad_left + pad_right)
    if _gram_is_cheaper(gram_cost, explicit_cost):
        temp = groups * (max(phase_pixels) ** 2 + 2 * positions ** 2) + padded
        return _in_chunks(partial(_conv2d_gram_sq_norms, conv), (x, grad_out), temp)
    temp = 2 * conv.weight.numel() + (0 if _kernel_pads(conv) else padded)
    return _in_chunks(partial(_conv2d_explicit_sq_norms, conv), (x, grad_out), temp)


def _kernel_pads(conv: nn.Conv2d) -> bool:
    """Whether the convolution kernels can apply the padding (zeros, same on both sides)."""
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def _pad_like_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return F.pad(x, conv._reversed_padding_repeated_twice, mode=mode)


def _conv2d_explicit_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """Per-sample weight gradients via the weight-gradient kernel with one group per sample."""
    n_samples, channels_in = x.shape[:2]
    if _kernel_pads(conv):
        padding = conv.padding
    else:
        x, padding = _pad_like_conv(conv, x), 0  # x: (N, C_in, Hp, Wp)
    weight_shape = (n_samples * conv.out_channels, channels_in // conv.groups, *conv.kernel_size)
    weight_grads = torch.nn.grad.conv2d_weight(
        x.reshape(1, n_samples * channels_in, *x.shape[2:]), weight_shape,
        grad_out.reshape(1, -1, *grad_out.shape[2:]), stride=conv.stride, padding=padding,
        dilation=conv.dilation, groups=n_samples * conv.groups)  # (N C_out, C_in / G, kh, kw)
    return _sq_norms(weight_grads.view(n_samples, -1))


def _phase_windows(conv: nn.Conv2d, out_height: int,
                   out_width: int) -> list[tuple[int, int, list[tuple[int, int, int, int]]]]:
    """The stride phases of the padded input that the kernel reads, with their kernel offsets.

    Kernel offset (i, j) at output position (y, x) reads padded pixel (s y + d i, s x + d j),
    which is pixel (y + (d i) // s, x + (d j) // s) of phase ((d i) % s, (d j) % s), the
    sub-image x[:, :, (d i) % s::s, (d j) % s::s]. For each phase that some offset reads:
    (rows, cols) of it that are read, and [(phase_y, phase_x, shift_y, shift_x)] per offset.
    """
    def by_phase(kernel: int, dilation: int, stride: int) -> dict[int, list[int]]:
        shifts: dict[int, list[int]] = {}
        for offset in range(0, kernel * dilation, dilation):
            shifts.setdefault(offset % stride, []).append(offset // stride)
        return shifts

    rows_by_phase = by_phase(conv.kernel_size[0], conv.dilation[0], conv.stride[0])
    cols_by_phase = by_phase(conv.kernel_size[1], conv.dilation[1], conv.stride[1])
    return [(out_height + max(shifts_y), out_width + max(shifts_x),
             [(phase_y, phase_x, shift_y, shift_x) for shift_y in shifts_y for shift_x in shifts_x])
            for phase_y, shifts_y in rows_by_phase.items()
            for phase_x, shifts_x in cols_by_phase.items()]


def _conv2d_gram_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """sum_{t,s} (p_t.p_s)(dy_t.dy_s), the patch dot products p_t.p_s from pixel Gram matrices.

    Within one stride phase every kernel offset is a shift, so p_t.p_s sums shifted windows of
    that phase's pixel Gram matrix x^T x over the offsets.
    """
    n_samples, groups = x.shape[0], conv.groups
    x = _pad_like_conv(conv, x)  # (N, C_in, Hp, Wp)
    out_height, out_width = grad_out.shape[2:]
    grads = grad_out.reshape(n_samples * groups, -1, out_height * out_width)  # (N G, C_out / G, T)
    grad_gram = torch.bmm(grads.transpose(1, 2), grads)  # (N G, T, T)
    patch_gram = torch.zeros_like(grad_gram).view(-1, out_height, out_width, out_height, out_width)
    stride_y, stride_x = conv.stride
    for rows, cols, offsets in _phase_windows(conv, out_height, out_width):
        phase_y, phase_x = offsets[0][:2]
        phase = x[:, :, phase_y::stride_y, phase_x::stride_x][:, :, :rows, :cols]
        pixels = phase.reshape(n_samples * groups, -1, rows * cols)  # (N G, C_in / G, P)
        pixel_gram = torch.bmm(pixels.transpose(1, 2), pixels).view(-1, rows, cols, rows, cols)
        for _, _, shift_y, shift_x in offsets:
            window_y = slice(shift_y, shift_y + out_height)
            window_x = slice(shift_x, shift_x + out_width)
            patch_gram += pixel_gram[:, window_y, window_x, window_y, window_x]
    return _frobenius_dots(patch_gram, grad_gram).view(n_samples, groups).sum(1)


# ----------------------------------------------------------------------------- normalisation

def _affine_sq_norms(layer: nn.Module, x: Tensor, grad_out: Tensor, mean: Tensor,
                     rstd: Tensor) -> Tensor:
    """Affine weight and bias of y = x_hat * w + b with x_hat = (x - mean) * rstd per channel.

    x, grad_out: (N, C, L); mean, rstd: broadcastable to (N, C). The weight gradient
    sum_l dy * x_hat is rstd * (sum_l dy * x - mean * sum_l dy), which needs no x_hat tensor.
    """
    x = x.to(_accumulation_dtype(x))
    grad_out = grad_out.to(x.dtype)
    grad_bias = grad_out.sum(2)  # (N, C)
    norms = []
    if _is_trainable(layer.weight):
        grad_dot_x = torch.linalg.vecdot(grad_out, x, dim=2)  # (N, C)
        norms.append(_sq_norms(rstd * (grad_dot_x - mean * grad_bias)))
    if _is_trainable(layer.bias):
        norms.append(_sq_norms(grad_bias))
    return sum(norms)


def _group_norm_capture(norm: nn.GroupNorm, args: tuple,
                        output: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The input, and the (N, G) mean and 1/std that autograd saved for backward, if it did."""
    node = output.grad_fn
    return args[0], getattr(node, "_saved_result1", None), getattr(node, "_saved_result2", None)


@register_rule(nn.GroupNorm, capture=_group_norm_capture)
def _group_norm_sq_norms(norm: nn.GroupNorm, saved: tuple[Tensor, Tensor | None, Tensor | None],
                         grad_out: Tensor) -> Tensor:
    x, mean, rstd = saved
    n_samples, channels = x.shape[:2]
    groups = norm.num_groups
    if mean is None or rstd is None or mean.shape != (n_samples, groups):
        var, mean = torch.var_mean(x.reshape(n_samples, groups, -1).to(_accumulation_dtype(x)),
                                   dim=2, correction=0)  # (N, G)
        rstd = (var + norm.eps).rsqrt()
    per_channel = channels // groups
    rstd = rstd.to(_accumulation_dtype(x)).repeat_interleave(per_channel, dim=1)  # (N, C)
    mean = mean.to(rstd.dtype).repeat_interleave(per_channel, dim=1)
    return _affine_sq_norms(norm, x.reshape(n_samples, channels, -1),
                            grad_out.reshape(n_samples, channels, -1), mean, rstd)


def _uses_batch_statistics(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and (
        module.training or module.running_mean is None)


@register_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def _batch_norm_sq_norms(norm: nn.modules.batchnorm._BatchNorm, x: Tensor,
                         grad_out: Tensor) -> Tensor:
    n_samples, channels = x.shape[:2]
    x = x.reshape(n_samples, channels, -1).to(_accumulation_dtype(x))  # (N, C, L)
    if _uses_batch_statistics(norm):  # approximate: batch statistics held fixed
        var, mean = torch.var_mean(x, dim=(0, 2), correction=0)  # (C,)
    else:
        var, mean = norm.running_var.to(x.dtype), norm.running_mean.to(x.dtype)
    rstd = (var + norm.eps).rsqrt()
    return _affine_sq_norms(norm, x, grad_out.reshape(n_samples, channels, -1), mean, rstd)


@register_rule(nn.LayerNorm)
def _layer_norm_sq_norms(norm: nn.LayerNorm, x: Tensor, grad_out: Tensor) -> Tensor:
    n_samples, features = x.shape[0], math.prod(norm.normalized_shape)
    x = x.to(_accumulation_dtype(x))
    x_hat = F.layer_norm(x, norm.normalized_shape, eps=norm.eps)
    x_hat = x_hat.reshape(n_samples, -1, features)  # (N, positions, features)
    grad_out = grad_out.reshape(n_samples, -1, features).to(x.dtype)
    norms = []
    if _is_trainable(norm.weight):
        norms.append(_sq_norms(torch.linalg.vecdot(grad_out.transpose(1, 2),
                                                   x_hat.transpose(1, 2))))  # (N, features)
    if _is_trainable(norm.bias):
        norms.append(_sq_norms(grad_out.sum(1)))
    return sum(norms)


# ----------------------------------------------------------------------------- torch.func

def _functional_sq_norms(module: nn.Module, args: tuple, kwargs: dict,
                         grad_out: Tensor) -> Tensor:
    """Per-sample gradients of the module's own trainable parameters by vmap(grad(...)).

    The module is re-run on one sample at a time; its gradient w.r.t. its parameters, contracted
    with that sample's output gradient, is that sample's parameter gradient. Tensor arguments
    whose first dimension is N are split by sample, all others are shared. Assumes the module
    treats samples independently.
    """
    n_samples = grad_out.shape[0]
    params = {name: p.detach() for name, p in _trainable_direct_params(module)}

    def batched_dims(value: object) -> int | None:
        is_batched = isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n_samples
        return 0 if is_batched else None

    args_dims = tuple(batched_dims(a) for a in args)
    kwargs_dims = {key: batched_dims(v) for key, v in kwargs.items()}

    def as_batch_of_one(value: object, dim: int | None) -> object:
        return value.unsqueeze(0) if dim == 0 else value

    def output_dot_grad(params: dict, sample_args: tuple, sample_kwargs: dict,
                        sample_grad: Tensor) -> Tensor:
        one_args = tuple(as_batch_of_one(a, d) for a, d in zip(sample_args, args_dims))
        one_kwargs = {k: as_batch_of_one(v, kwargs_dims[k]) for k, v in sample_kwargs.items()}
        output = functional_call(module, params, one_args, one_kwargs)
        return (output * sample_grad.unsqueeze(0)).sum()

    detach = lambda value: value.detach() if isinstance(value, Tensor) else value  # noqa: E731
    per_sample = vmap(grad(output_dot_grad), in_dims=(None, args_dims, kwargs_dims, 0))(
        params, tuple(map(detach, args)), {k: detach(v) for k, v in kwargs.items()},
        grad_out.detach())  # {name: (N, *param.shape)}
    return sum(_sq_norms(g) for g in per_sample.values())


# ----------------------------------------------------------------------------- hooks

class _SqNormHooks:
    """Hooks that add up every sample's squared gradient norm, layer by layer.

    A forward hook on each module with trainable direct parameters keeps its inputs and puts a
    hook on its output; that hook runs the layer's rule when backward reaches the output.
    Several forward passes (micro-batches), each followed by its own backward, are allowed:
    ``sq_norms`` lists their samples in order. Use as a context manager, or call ``remove()``.
    """

    def __init__(self, owners: dict[Tensor, tuple[str, nn.Module]]) -> None:
        self._pass_norms: list[Tensor | None] = []  # per forward pass: (n_pass,) once measured
        self._in_this_pass: set[nn.Module] = set()
        self._called: set[nn.Module] = set()  # in any pass
        self._waiting: dict[nn.Module, tuple[int, object]] = {}  # pass, what the capture kept
        self._replaying = False  # inside a torch.func re-run of a module: hooks stay quiet
        self._owners = owners
        layers = dict.fromkeys(module for _, module in owners.values())  # in model order
        self._handles = [layer.register_forward_hook(self._on_forward, with_kwargs=True)
                         for layer in layers]

    def __enter__(self) -> _SqNormHooks:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._waiting.clear()

    @property
    def sq_norms(self) -> Tensor | None:
        """(samples of all measured passes,) ||g_i||^2, or None before any backward."""
        measured = [norms for norms in self._pass_norms if norms is not None]
        return torch.cat(measured) if measured else None

    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        if self._replaying or not torch.is_grad_enabled():
            return
        if not isinstance(output, Tensor):
            raise ValueError(f"{type(module).__name__} returns {type(output).__name__}; "
                             "per-sample norms need modules with parameters to return a tensor")
        if module in self._waiting and self._waiting[module][0] == len(self._pass_norms) - 1:
            raise ValueError(
                f"{type(module).__name__} was called again before backward reached its previous "
                "call: per-sample norms of a layer shared within one forward pass are not "
                "supported (for micro-batches, run backward after each forward)")
        if module in self._in_this_pass or not self._pass_norms:
            self._start_pass()
        self._in_this_pass.add(module)
        self._called.add(module)
        if output.requires_grad:
            capture, _ = RULES.get(type(module), (None, None))
            saved = (args, kwargs) if capture is None else capture(module, args, output)
            self._waiting[module] = (len(self._pass_norms) - 1, saved)
            self._handles.append(output.register_hook(partial(self._on_output_grad, module)))

    def _start_pass(self) -> None:
        self._pass_norms.append(None)
        self._in_this_pass = set()
        self._waiting.clear()  # outputs of the previous pass that backward never reached

    def _on_output_grad(self, module: nn.Module, grad_out: Tensor) -> None:
        if module not in self._waiting:
            return  # a stale output of an earlier pass
        pass_index, saved = self._waiting.pop(module)
        with torch.no_grad():
            if grad_out.shape[0] == 0:  # no samples (a process's empty share of a DDP batch)
                norms = grad_out.new_zeros(0, dtype=_accumulation_dtype(grad_out))
            elif type(module) in RULES:
                norms = RULES[type(module)][1](module, saved, grad_out)
            else:
                self._replaying = True
                try:
                    norms = _functional_sq_norms(module, *saved, grad_out)
                finally:
                    self._replaying = False
        previous = self._pass_norms[pass_index]
        self._pass_norms[pass_index] = norms if previous is None else previous + norms

    def check_grads_seen(self, params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
        """Raise if a parameter got a gradient although its module's forward never ran."""
        for param, param_grad in zip(params, grads):
            name, module = self._owners[param]
            if module not in self._called and param_grad is not None and bool(param_grad.any()):
                raise ValueError(
                    f"parameter {name} received a gradient but {type(module).__name__}.forward "
                    "never ran; parameters used outside their module's forward (such as "
                    "nn.MultiheadAttention.out_proj) are not supported")


def _batchnorms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name or type(model).__name__, m) for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _check_batchnorm(batchnorms: list[tuple[str, nn.Module]], allow_batchnorm: bool) -> bool:
    """True if some BatchNorm uses batch statistics (allowed); ValueError if not allowed."""
    offenders = [name for name, m in batchnorms if _uses_batch_statistics(m)]
    if offenders and not allow_batchnorm:
        raise ValueError(
            f"BatchNorm in training mode ({', '.join(offenders)}): samples interact through the "
            "batch statistics, so per-sample gradients are not defined. Use GroupNorm, call "
            "model.eval(), or pass allow_batchnorm=True for an approximation that holds the "
            "batch statistics fixed")
    return bool(offenders)


def _parameter_owners(model: nn.Module) -> dict[Tensor, tuple[str, nn.Module]]:
    """Each trainable parameter -> (its name, the module that holds it directly)."""
    owners: dict[Tensor, tuple[str, nn.Module]] = {}
    for module_name, module in model.named_modules():
        for param_name, param in _trainable_direct_params(module):
            name = f"{module_name}.{param_name}".lstrip(".")
            if param in owners:
                raise ValueError(f"parameter {name} is also registered as {owners[param][0]}; "
                                 "per-sample norms of shared parameters are not supported")
            owners[param] = (name, module)
    return owners


# ----------------------------------------------------------------------------- public functions

def _norms_and_gradient(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                        inputs: Tensor, targets: Tensor, allow_batchnorm: bool,
                        ) -> tuple[Tensor, list[Tensor | None]]:
    """(N,) ||g_i||^2 and the batch gradient sum_i g_i per trainable parameter, one backward."""
    _check_batchnorm(_batchnorms(model), allow_batchnorm)
    owners = _parameter_owners(model)
    params = list(owners)
    with _SqNormHooks(owners) as hooks:
        losses = loss_fn(model(inputs), targets)
        if losses.dim() != 1:
            raise ValueError("loss_fn should return per-sample losses of shape [N] "
                             f"(reduction='none'), but got shape {list(losses.shape)}")
        grads = (list(torch.autograd.grad(losses.sum(), params, allow_unused=True))
                 if params else [])
        hooks.check_grads_seen(params, grads)
    sq_norms = hooks.sq_norms if hooks.sq_norms is not None else losses.new_zeros(len(losses))
    return sq_norms.detach(), grads


def per_sample_grad_sq_norms(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                             inputs: Tensor, targets: Tensor, *,
                             allow_batchnorm: bool = False) -> Tensor:
    """||g_i||^2 for each sample i, where g_i is the gradient of ``loss_fn(...)[i]``.

    ``loss_fn(outputs, targets)`` returns per-sample losses of shape [N]. Uses one forward and
    one backward pass and leaves ``param.grad`` untouched.

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = model.weight.fill_(1.0)
    >>> loss_fn = lambda out, y: 0.5 * (out.squeeze(1) - y) ** 2
    >>> inputs, targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), torch.zeros(2)
    >>> per_sample_grad_sq_norms(model, loss_fn, inputs, targets)  # g_i = (w.x_i) x_i
    tensor([ 1., 16.])
    """
    return _norms_and_gradient(model, loss_fn, inputs, targets, allow_batchnorm)[0]


def gradient_diversity(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                       inputs: Tensor, targets: Tensor, *, allow_batchnorm: bool = False) -> float:
    """Delta = sum_i ||g_i||^2 / ||sum_i g_i||^2 over this batch (1/N when all g_i are equal).

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(2, 1, bias=False)
    >>> loss_fn = lambda out, y: out.squeeze(1) * y
    >>> inputs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # orthogonal per-sample gradients
    >>> gradient_diversity(model, loss_fn, inputs, torch.ones(2))
    1.0
    >>> gradient_diversity(model, loss_fn, inputs.new_ones(4, 2), torch.ones(4))  # equal ones
    0.25
    """
    sq_norms, grads = _norms_and_gradient(model, loss_fn, inputs, targets, allow_batchnorm)
    grad_sq_norm = sum(g.double().square().sum() for g in grads if g is not None)
    return float(sq_norms.double().sum() / grad_sq_norm)


class DiversityMeter:
    """Running epoch estimate Delta_hat = S / (||G||^2 + EPS) along the training trajectory.

    S sums ||g_i||^2 and G sums g_i over the samples seen since ``reset()``, each at the
    iterate where it was used. G comes from ``param.grad`` of every batch (no extra work);
    S comes from per-sample norms on every ``sample_every``-th batch, the first batch after
    ``reset()`` included, and is scaled by samples seen / samples measured. Hooks exist only
    during a measured batch, so other batches cost one addition per parameter.

    ``reduction`` says how the batch loss combines per-sample losses: "mean" (then
    ``param.grad`` is sum_i g_i / B and the hooks see g_i / B; both are rescaled) or "sum".
    Weight decay applied by the optimizer is not part of ``param.grad`` and so not of g_i.

    Gradient accumulation: one ``track`` may wrap several forward/backward passes over parts
    of the batch (micro-batches), each backpropagating its share of the batch loss (with
    "mean": sum of its per-sample losses / ``batch_size``); G is read once, from the
    accumulated ``param.grad``, and S sums the norms of every pass. Several processes
    (DistributedDataParallel): each runs ``samples`` of the batch, ``param.grad`` must be the
    gradient of the whole batch's loss (DDP summing, not averaging, the processes' gradients,
    see ``divebatch.distributed``), and ``reduce`` sums S over processes in ``diversity()``.
    BatchNorm in training mode raises ``ValueError`` unless ``allow_batchnorm=True``, which makes
    the estimate approximate (``approximate`` becomes True; see the module docstring).

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(4, 2)
    >>> with DiversityMeter(model, sample_every=1) as meter:
    ...     for _ in range(3):
    ...         model.zero_grad()
    ...         with meter.track(batch_size=8):
    ...             loss = model(torch.randn(8, 4)).square().mean()
    ...             loss.backward()
    ...     delta_hat = meter.diversity()
    >>> meter.seen_batches, meter.measured_batches, 1 / 24 <= delta_hat
    (3, 3, True)
    """

    def __init__(self, model: nn.Module, *, sample_every: int = DEFAULT_SAMPLE_EVERY,
                 reduction: str = "mean", allow_batchnorm: bool = False,
                 reduce: Callable[[Tensor], Tensor] | None = None) -> None:
        if not isinstance(sample_every, int) or sample_every < 1:
            raise ValueError(f"sample_every should be an int >= 1, but got "
                             f"sample_every={sample_every!r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction should be 'mean' or 'sum', but got "
                             f"reduction={reduction!r}")
        self.model = model
        self.sample_every = sample_every
        self.reduction = reduction
        self.allow_batchnorm = allow_batchnorm
        self.reduce = reduce  # sums a tensor over processes (all-reduce); None: one process
        self._batchnorms = _batchnorms(model)
        self.approximate = _check_batchnorm(self._batchnorms, allow_batchnorm)
        self._owners = _parameter_owners(model)
        self._params = list(self._owners)
        self._hooks: _SqNormHooks | None = None  # present only inside a measured batch
        self.reset()

    def reset(self) -> None:
        """Forget S, G and the counters: call at the start of a measured epoch."""
        self.seen_batches = 0
        self.measured_batches = 0
        self.samples_seen = 0
        self.samples_measured = 0
        self._sq_norm_sum = torch.zeros((), dtype=torch.float64)  # S over measured samples
        self._grad_sum = [torch.zeros_like(p) for p in self._params]  # G, one per parameter

    @contextmanager
    def track(self, batch_size: int, *, samples: int | None = None) -> Iterator[None]:
        """Wrap the forward and backward of one batch of ``batch_size`` samples, of which this
        process runs ``samples`` (default: all of them; fewer under DDP).

        ``param.grad`` must hold only this batch's gradient (zero it before the forward).
        """
        hooks = None
        if self.seen_batches % self.sample_every == 0:
            self.approximate |= _check_batchnorm(self._batchnorms, self.allow_batchnorm)
            hooks = self._hooks = _SqNormHooks(self._owners)
        try:
            yield
            grads = [p.grad for p in self._params]
            scale = batch_size if self.reduction == "mean" else 1
            if hooks is not None:
                hooks.check_grads_seen(self._params, grads)
                self._add_sq_norms(hooks.sq_norms, batch_size,
                                   batch_size if samples is None else samples, scale)
            self._add_grad_sum(grads, scale)
            self.seen_batches += 1
            self.samples_seen += batch_size
        finally:
            self.detach()

    def _add_sq_norms(self, sq_norms: Tensor | None, batch_size: int, samples: int,
                      scale: int) -> None:
        if sq_norms is not None:
            if len(sq_norms) != samples:
                raise ValueError(f"the model's layers saw {len(sq_norms)} samples, but got "
                                 f"samples={samples}")
            self._sq_norm_sum = self._sq_norm_sum.to(sq_norms.device)
            self._sq_norm_sum += sq_norms.double().sum() * scale ** 2
        self.measured_batches += 1
        self.samples_measured += batch_size

    def _add_grad_sum(self, grads: list[Tensor | None], scale: int) -> None:
        present = [(total, g) for total, g in zip(self._grad_sum, grads) if g is not None]
        if present:
            totals, batch_grads = zip(*present)
            torch._foreach_add_(totals, batch_grads, alpha=scale)  # one call for all parameters

    def diversity(self) -> float:
        """Delta_hat since ``reset()``; NaN before any measured batch."""
        if self.samples_measured == 0:
            return math.nan
        measured = self._sq_norm_sum if self.reduce is None else self.reduce(self._sq_norm_sum)
        sq_norm_sum = float(measured) * self.samples_seen / self.samples_measured
        grad_sum_sq = sum(float(torch.linalg.vector_norm(g, dtype=torch.float64)) ** 2
                          for g in self._grad_sum)
        return sq_norm_sum / (grad_sum_sq + EPS)

    def detach(self) -> None:
        """Remove every hook this meter placed (only a measured batch has any)."""
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    def __enter__(self) -> DiversityMeter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.detach()
