"""Per-sample squared norms for the layers of sequence models: embeddings and attention.

- ``nn.Embedding``: sample i's weight gradient has one row per distinct index of that sample,
  the sum of the output gradients at its positions; rows are summed by sorting (sample, index)
  keys, so no (N, vocabulary, dim) tensor is formed. A position embedding called on positions
  (``wpe(arange(T))``) is expanded over the batch by the hooks (``divebatch.meter.hooks``),
  so it arrives here like any other batch of indices.
- ``nn.EmbeddingBag`` on a 2-D input (one bag per sample): torch.func. With ``offsets`` the bags
  are not the samples: refused.
- ``nn.MultiheadAttention``: its parameters are linear maps (query, key and value projections,
  ``out_proj``). The attention between them is recomputed by torch's own
  ``F.multi_head_attention_forward`` on the projected inputs with identity projections, which
  gives the gradients at the projections' outputs; the Linear rule does the rest. Its output
  is (L, N, E) unless ``batch_first``.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from divebatch.meter.functional import functional_sq_norms
from divebatch.meter.kernels import accumulation_dtype, is_trainable, sq_norms
from divebatch.meter.rules.linear import linear_sq_norms, linear_weight_sq_norms
from divebatch.meter.rules.registry import UnsupportedCall, register_rule


# ----------------------------------------------------------------------------- Embedding

def _refuse_sparse(embedding: nn.Embedding | nn.EmbeddingBag) -> None:
    if embedding.sparse:
        raise UnsupportedCall("sparse=True makes its weight's gradient a sparse tensor, which "
                              "the meter's sums and checks do not take; construct the embedding "
                              "with sparse=False (the default)")


def _embedding_capture(embedding: nn.Embedding, args: tuple, kwargs: dict,
                       output: Tensor) -> Tensor:
    _refuse_sparse(embedding)
    if embedding.scale_grad_by_freq:
        raise UnsupportedCall("scale_grad_by_freq=True scales each row's gradient by its "
                              "count in the whole batch, so samples interact; construct the "
                              "embedding without it")
    return args[0]


@register_rule(nn.Embedding, capture=_embedding_capture, params=("weight",))
def _embedding_sq_norms(embedding: nn.Embedding, indices: Tensor, grad_out: Tensor) -> Tensor:
    n_samples, dim = indices.shape[0], grad_out.shape[-1]
    indices = indices.reshape(n_samples, -1)
    grads = grad_out.reshape(n_samples, -1, dim).to(accumulation_dtype(grad_out))
    if embedding.padding_idx is not None:  # the padding row gets no gradient
        grads = grads * (indices != embedding.padding_idx).unsqueeze(-1)
    sample = torch.arange(n_samples, device=indices.device).unsqueeze(1)
    keys = (sample * embedding.num_embeddings + indices).flatten()
    rows, row_of_position = torch.unique(keys, return_inverse=True)
    row_grads = grads.new_zeros(len(rows), dim).index_add_(0, row_of_position,
                                                           grads.reshape(-1, dim))
    norms = grads.new_zeros(n_samples)
    return norms.index_add_(0, rows // embedding.num_embeddings, sq_norms(row_grads))


def embedding_per_sample_grads(embedding: nn.Embedding, indices: Tensor,
                               grad_out: Tensor) -> Tensor:
    """(N, num_embeddings, dim): every sample's weight gradient, formed explicitly."""
    n_samples, dim = indices.shape[0], grad_out.shape[-1]
    indices = indices.reshape(n_samples, -1)
    grads = grad_out.reshape(n_samples, -1, dim).to(accumulation_dtype(grad_out))
    if embedding.padding_idx is not None:
        grads = grads * (indices != embedding.padding_idx).unsqueeze(-1)
    sample = torch.arange(n_samples, device=indices.device).unsqueeze(1)
    flat = grads.new_zeros(n_samples * embedding.num_embeddings, dim)
    flat.index_add_(0, (sample * embedding.num_embeddings + indices).flatten(),
                    grads.reshape(-1, dim))
    return flat.view(n_samples, embedding.num_embeddings, dim)


# ----------------------------------------------------------------------------- EmbeddingBag

def _embedding_bag_capture(bag: nn.EmbeddingBag, args: tuple, kwargs: dict,
                           output: Tensor) -> tuple[tuple, dict]:
    _refuse_sparse(bag)
    offsets = args[1] if len(args) > 1 else kwargs.get("offsets")
    if offsets is not None or args[0].dim() != 2:
        raise UnsupportedCall("EmbeddingBag called with offsets (a 1-D input): its bags are "
                              "not the samples of the batch, so the rows of its output are not "
                              "per-sample; pass a 2-D input (samples, bag size), one bag per "
                              "sample, without offsets")
    return args, kwargs


@register_rule(nn.EmbeddingBag, capture=_embedding_bag_capture, params=("weight",))
def _embedding_bag_sq_norms(bag: nn.EmbeddingBag, saved: tuple[tuple, dict],
                            grad_out: Tensor) -> Tensor:
    return functional_sq_norms(bag, *saved, grad_out)


# ----------------------------------------------------------------------------- attention

MHA_ARGUMENTS = inspect.signature(nn.MultiheadAttention.forward)
MHA_PARAMS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
              "bias_k", "bias_v")


def _attention_capture(mha: nn.MultiheadAttention, args: tuple, kwargs: dict,
                       output: Tensor) -> dict:
    call = MHA_ARGUMENTS.bind(mha, *args, **kwargs)
    call.apply_defaults()
    arguments = dict(call.arguments)
    if mha.bias_k is not None or mha.add_zero_attn:
        raise UnsupportedCall("add_bias_kv and add_zero_attn are not supported; construct "
                              "nn.MultiheadAttention without them")
    if mha.training and mha.dropout > 0:
        raise UnsupportedCall(f"attention dropout ({mha.dropout}) in training mode draws a "
                              "mask the rule cannot replay; use dropout=0 on measured batches "
                              "(or call .eval())")
    if arguments["query"].dim() != 3:
        raise UnsupportedCall("an unbatched (2-D) query has no batch dimension")
    return {name: arguments[name] for name in ("query", "key", "value", "key_padding_mask",
                                                "attn_mask", "is_causal")}


def _projections(mha: nn.MultiheadAttention) -> list[tuple[Tensor, Tensor | None]]:
    """(weight, bias) of the query, key and value projections: views of the packed ones."""
    dim = mha.embed_dim
    biases = ([None] * 3 if mha.in_proj_bias is None
              else [mha.in_proj_bias[i * dim:(i + 1) * dim] for i in range(3)])
    if mha.in_proj_weight is not None:
        weights = [mha.in_proj_weight[i * dim:(i + 1) * dim] for i in range(3)]
    else:
        weights = [mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight]
    return list(zip(weights, biases))


def _batch_first(mha: nn.MultiheadAttention, tensor: Tensor) -> Tensor:
    return tensor if mha.batch_first else tensor.transpose(0, 1)


@register_rule(nn.MultiheadAttention, capture=_attention_capture, params=MHA_PARAMS)
def _attention_sq_norms(mha: nn.MultiheadAttention, call: dict, grad_out: Tensor) -> Tensor:
    """grad_out: the gradient of the attention output (the first of the returned pair)."""
    inputs = [_batch_first(mha, call[name]).detach() for name in ("query", "key", "value")]
    with torch.enable_grad():
        projected = [F.linear(x, w.detach(), None if b is None else b.detach()).requires_grad_()
                     for x, (w, b) in zip(inputs, _projections(mha))]
        context = _attention_core(mha, projected, call)  # (N, L, E)
        context_grad = _batch_first(mha, grad_out) @ mha.out_proj.weight.detach()
        projected_grads = torch.autograd.grad(context, projected, context_grad)
    norms = linear_sq_norms(mha.out_proj, context.detach(), _batch_first(mha, grad_out))
    for x, (weight, bias), grad in zip(inputs, _projections(mha), projected_grads):
        norms = norms + _projection_sq_norms(x, grad, is_trainable(weight),
                                             bias is not None and is_trainable(bias))
    return norms


def _attention_core(mha: nn.MultiheadAttention, projected: list[Tensor], call: dict) -> Tensor:
    """softmax(q k^T / sqrt(d) + masks) v per head, on already projected (N, L, E) inputs."""
    dim = mha.embed_dim
    identity = torch.eye(dim, dtype=projected[0].dtype, device=projected[0].device)
    query, key, value = (t.transpose(0, 1) for t in projected)  # (L, N, E) as torch expects
    context, _ = F.multi_head_attention_forward(
        query, key, value, dim, mha.num_heads, None, None, None, None, False, 0.0, identity,
        None, training=False, key_padding_mask=call["key_padding_mask"], need_weights=False,
        attn_mask=call["attn_mask"], use_separate_proj_weight=True, q_proj_weight=identity,
        k_proj_weight=identity, v_proj_weight=identity, is_causal=call["is_causal"])
    return context.transpose(0, 1)


def _projection_sq_norms(x: Tensor, grad: Tensor, weight: bool, bias: bool) -> Tensor:
    """The Linear rule for one slice (rows) of a packed projection weight and bias."""
    x = x.to(accumulation_dtype(x))
    grad = grad.to(x.dtype)
    norms = x.new_zeros(x.shape[0])
    if weight:
        norms = norms + linear_weight_sq_norms(x, grad)
    if bias:
        norms = norms + sq_norms(grad.sum(1))
    return norms
