"""The small GPT, and the meter on it: per-sample norms of every parameter (tied embeddings,
position embedding on positions, causal attention, LayerNorm) against the loop oracle and
torch.func, in float64."""

import pytest
import torch
from torch.func import functional_call, grad, vmap

from divebatch.meter.diversity import DiversityMeter, per_sample_grad_sq_norms
from divebatch.models.gpt import GPT, token_losses
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, loop_oracle

VOCAB, BLOCK = 13, 8


def small_gpt():
    return GPT(VOCAB, BLOCK, n_layer=2, n_head=2, n_embd=8)


def token_batch(n, length):
    return torch.randint(0, VOCAB, (n, length)), torch.randint(0, VOCAB, (n, length))


def torch_func_sq_norms(model, inputs, targets):
    """vmap of grad of each sample's loss: every per-sample gradient materialised."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def sample_loss(params, idx, target):
        logits = functional_call(model, params, (idx.unsqueeze(0),))
        return token_losses(logits, target.unsqueeze(0)).sum()

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, inputs, targets)
    return sum(g.flatten(1).square().sum(1) for g in per_sample.values())


def test_shapes_and_tied_embeddings():
    model = small_gpt()
    assert model(torch.zeros(3, 5, dtype=torch.long)).shape == (3, 5, VOCAB)
    assert model.lm_head.weight is model.transformer.wte.weight
    with pytest.raises(ValueError, match="sequence length should be <= block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize("n,length", [(3, 5), (4, 4), (2, 8), (1, 3)])
def test_per_sample_norms_match_loop_and_torch_func(n, length):
    model, (inputs, targets) = small_gpt(), token_batch(n, length)
    expected, _ = loop_oracle(model, token_losses, inputs, targets)
    assert_close(torch_func_sq_norms(model, inputs, targets), expected)
    assert_close(per_sample_grad_sq_norms(model, token_losses, inputs, targets), expected)


def test_meter_matches_oracle_along_sgd_steps():
    data = [token_batch(4, 6), token_batch(3, 6), token_batch(5, 6)]
    oracle_model, model = small_gpt(), small_gpt()
    model.load_state_dict(oracle_model.state_dict())
    sq_norm_sum, grad_sum = 0.0, None
    oracle_sgd = torch.optim.SGD(oracle_model.parameters(), lr=0.3)
    for inputs, targets in data:
        sq_norms, grads = loop_oracle(oracle_model, token_losses, inputs, targets)
        sq_norm_sum += float(sq_norms.sum())
        grad_sum = grads if grad_sum is None else [a + b for a, b in zip(grad_sum, grads)]
        for param, g in zip(oracle_model.parameters(), grads):
            param.grad = g / len(inputs)
        oracle_sgd.step()
    meter, sgd = DiversityMeter(model), torch.optim.SGD(model.parameters(), lr=0.3)
    for inputs, targets in data:
        model.zero_grad()
        with meter.track(len(inputs)):
            token_losses(model(inputs), targets).mean().backward()
        sgd.step()
    expected = sq_norm_sum / float(sum(g.square().sum() for g in grad_sum))
    assert_close(meter.diversity(), expected)
