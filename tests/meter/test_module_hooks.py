"""Models that hook their own layers, as third-party code does (gradient monitors, input
scaling, output rewrites): the meter takes each layer call as its forward saw it (the arguments
after the forward pre-hooks, the output before the forward hooks) and the output gradient after
every hook that changes it, on the checked first batch and on the direct path after it.

Oracle: the float64 loop over single samples, with the same hooks in place (every hook here
scales by a constant, so a sample alone sees what it sees in the batch)."""

import pytest
import torch
from torch import nn

from divebatch.meter.diversity import DiversityMeter
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, cross_entropy, loop_oracle

# torch warns that a full backward hook on a layer whose input needs no gradient (the first)
# fires with the output gradient only: what these tests want
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning")


class Scale(nn.Module):
    """A layer without a rule of its own (re-run through torch.func)."""

    def __init__(self, features):
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, features))

    def forward(self, x):
        return x * self.gain


def vectors():
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), Scale(6), nn.Tanh(), nn.Linear(6, 3))
    return model, torch.randn(5, 4)


def images():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 3, 3),
                          nn.Tanh(), nn.Flatten(), nn.Linear(3 * 2 * 2, 3))
    return model, torch.randn(5, 2, 4, 4)


def triple_the_output_gradient(module, args, output):
    output.register_hook(lambda grad: grad * 3)


HOOKS = {
    "forward pre-hook scaling the input":
        lambda layer: layer.register_forward_pre_hook(lambda module, args: (args[0] * 2,)),
    "forward hook replacing the output":
        lambda layer: layer.register_forward_hook(lambda module, args, output: output * 2),
    "forward hook hooking the output's gradient":
        lambda layer: layer.register_forward_hook(triple_the_output_gradient),
    "full backward pre-hook scaling the output gradient":
        lambda layer: layer.register_full_backward_pre_hook(
            lambda module, grad_output: (grad_output[0] * 2,)),
    "full backward hook scaling the input gradient":
        lambda layer: layer.register_full_backward_hook(
            lambda module, grad_input, grad_output: tuple(
                None if g is None else g * 2 for g in grad_input)),
}

LAYERS = {"Linear": (vectors, 0), "a layer without a rule": (vectors, 2),
          "Linear after it": (vectors, 4), "first Conv2d": (images, 0),
          "second Conv2d": (images, 2)}


def assert_meter_matches_loop(model, inputs, loss_fn=cross_entropy):
    targets = torch.randint(0, 3, (len(inputs),))
    sq_norms, grad_sum = loop_oracle(model, loss_fn, inputs, targets)
    expected = sq_norms.sum() / sum(g.square().sum() for g in grad_sum)
    meter, checked = DiversityMeter(model, keep_hooks=True), []
    for _ in range(3):
        meter.reset()
        model.zero_grad()
        with meter.track(len(inputs)):
            checked.append(meter._hooks.checks)
            loss_fn(model(inputs), targets).mean().backward()
        assert_close(meter.diversity(), expected)
    assert checked == [True, False, False]


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("layer", LAYERS)
def test_a_hooked_layer_matches_loop(layer, hook):
    build, index = LAYERS[layer]
    model, inputs = build()
    HOOKS[hook](model[index])
    assert_meter_matches_loop(model, inputs)


class ScaledOutputGradient(nn.Module):
    """Hooks a Linear layer's output in its own forward: the hook triples the gradient reaching
    the layer, so the layer's own gradients triple too."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        hidden = self.fc(x)
        if hidden.requires_grad:
            hidden.register_hook(lambda grad: grad * 3)
        return self.head(torch.tanh(hidden))


def test_a_gradient_hook_placed_in_the_models_forward_matches_loop():
    assert_meter_matches_loop(ScaledOutputGradient(), torch.randn(5, 4))


def test_a_gradient_hook_the_caller_puts_on_the_models_output_matches_loop():
    def loss_through_hook(outputs, targets):
        outputs.register_hook(lambda grad: grad * 3)
        return cross_entropy(outputs, targets)

    model, inputs = vectors()
    assert_meter_matches_loop(model, inputs, loss_through_hook)


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.att = nn.MultiheadAttention(4, 2, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, idx):
        h = self.emb(idx)
        attended, _ = self.att(h, h, h)
        return self.head(attended.mean(1))


def normalised(norm):
    def build():
        if norm == "layer":
            return (nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 3)),
                    torch.randn(5, 4))
        return (nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Tanh(),
                              nn.Flatten(), nn.Linear(64, 3)), torch.randn(5, 2, 4, 4))
    return build


def tokens():
    return Tokens(), torch.randint(0, 7, (5, 3))


def scale_output(module, args, output):
    return (output[0] * 2, output[1]) if isinstance(output, tuple) else output * 2


def keyword_pre_hook(model):
    model[0].register_forward_pre_hook(
        lambda module, args, kwargs: ((args[0] * 2,), kwargs), with_kwargs=True)


def keyword_forward_hook(model):
    model[0].register_forward_hook(
        lambda module, args, kwargs, output: output * 2, with_kwargs=True)


def always_called_forward_hook(model):
    model[0].register_forward_hook(scale_output, always_call=True)


def backward_pre_hook_on_the_model(model):
    model.register_full_backward_pre_hook(lambda module, grad_output: (grad_output[0] * 2,))


def output_replaced(name):
    return lambda model: getattr(model, name).register_forward_hook(scale_output)


MORE_CASES = {
    "keyword pre-hook scaling a Linear's input": (vectors, keyword_pre_hook),
    "keyword forward hook replacing a Linear's output": (vectors, keyword_forward_hook),
    "always-called forward hook replacing a Linear's output":
        (vectors, always_called_forward_hook),
    "full backward pre-hook on the whole model": (vectors, backward_pre_hook_on_the_model),
    "LayerNorm's output replaced": (normalised("layer"), output_replaced("1")),
    "GroupNorm's output replaced": (normalised("group"), output_replaced("1")),
    "Embedding's output replaced": (tokens, output_replaced("emb")),
    "attention's output replaced": (tokens, output_replaced("att")),
}


@pytest.mark.parametrize("case", MORE_CASES)
def test_more_hooked_layers_match_loop(case):
    build, place_hook = MORE_CASES[case]
    model, inputs = build()
    place_hook(model)
    assert_meter_matches_loop(model, inputs)
