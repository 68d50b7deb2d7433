"""What the hooks see: keyword calls, tied weights, and every refusal, which must name the module
(and, for a parameter, its name) in its message."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from divebatch.meter.diversity import DiversityMeter, gradient_diversity, per_sample_grad_sq_norms
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, cross_entropy, loop_oracle


class KeywordCall(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(input=torch.tanh(self.fc(input=x)))


def test_keyword_arguments_match_loop():
    model, inputs, targets = KeywordCall(), torch.randn(5, 4), torch.randint(0, 3, (5,))
    expected, _ = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)


class TiedHead(nn.Module):
    """Embedding -> mean over tokens -> output layer; ``tie``: how the output layer reuses the
    embedding's weight ("module": an nn.Linear holding the same Parameter, "functional":
    F.linear(h, emb.weight))."""

    def __init__(self, tie, bias=False):
        super().__init__()
        self.tie = tie
        self.emb = nn.Embedding(7, 4)
        self.mix = nn.Linear(4, 4)
        self.head = nn.Linear(4, 7, bias=bias)
        if tie == "module":
            self.head.weight = self.emb.weight
        else:
            self.head.requires_grad_(False)

    def forward(self, idx):  # (N, T) -> (N, 7)
        h = torch.tanh(self.mix(self.emb(idx).mean(1)))
        return self.head(h) if self.tie == "module" else F.linear(h, self.emb.weight)


def token_batch(n=5):
    return torch.randint(0, 7, (n, 3)), torch.randint(0, 7, (n,))


@pytest.mark.parametrize("bias", [False, True])
def test_tied_weights_held_by_two_modules_match_loop(bias):
    model, (inputs, targets) = TiedHead("module", bias=bias), token_batch()
    expected, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)
    assert_close(gradient_diversity(model, cross_entropy, inputs, targets),
                 expected.sum() / sum(g.square().sum() for g in grad_sum))


def test_weight_used_outside_its_module_is_refused_by_name():
    model, (inputs, targets) = TiedHead("functional"), token_batch()
    with pytest.raises(ValueError, match=r"^parameter emb\.weight: .* does not come from the "
                                         r"calls of emb"):
        per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)


def test_meter_checks_its_first_measured_batch_only():
    model, (inputs, targets) = TiedHead("functional"), token_batch()
    meter = DiversityMeter(model)
    with pytest.raises(ValueError, match=r"parameter emb\.weight: .*F\.linear"):
        with meter.track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()
    model = TiedHead("module")
    meter = DiversityMeter(model)
    for _ in range(2):
        model.zero_grad()
        with meter.track(len(inputs)):
            assert (meter._hooks.checks, meter.measured_batches) in ((True, 0), (False, 1))
            cross_entropy(model(inputs), targets).mean().backward()


def test_unchecked_batches_take_the_direct_path_with_the_same_result(monkeypatch):
    """After the checked first batch, plain Linear calls take the hooks' direct path; the
    estimate of the same batch at the same weights is unchanged. (The Sequential is nested: a
    plain one runs its layers itself, tests/meter/test_sequential.py.)"""
    from divebatch.meter import hooks as sq_norm_hooks
    direct = []
    on_direct_call = sq_norm_hooks.SqNormHooks._on_direct_call

    def counting(self, module, *call):
        direct.append(module)
        on_direct_call(self, module, *call)
    monkeypatch.setattr(sq_norm_hooks.SqNormHooks, "_on_direct_call", counting)
    layers = nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 3))
    model = nn.Sequential(layers)
    inputs, targets = torch.randn(5, 4), torch.randint(0, 3, (5,))
    meter, estimates, direct_per_batch = DiversityMeter(model), [], []
    for _ in range(2):
        meter.reset()
        model.zero_grad()
        with meter.track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()
        estimates.append(meter.diversity())
        direct_per_batch.append(list(direct))
        direct.clear()
    assert direct_per_batch == [[], [layers[0], layers[2]]]
    assert_close(estimates[1], estimates[0])


class CalledTwiceLater(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.twice = False

    def forward(self, x):
        hidden = self.fc(x)
        return self.fc(hidden) if self.twice else hidden


def test_layer_called_twice_is_refused_on_the_direct_path_too():
    model, inputs, targets = CalledTwiceLater(), torch.randn(5, 4), torch.randint(0, 4, (5,))
    meter = DiversityMeter(model)
    with meter.track(len(inputs)):  # the checked first batch
        cross_entropy(model(inputs), targets).mean().backward()
    model.twice = True
    with pytest.raises(ValueError, match=r"^fc \(Linear\) was called again before backward"):
        with meter.track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()


class QueryTokens(nn.Module):
    """A Linear called on learned queries, not on the batch (its output has no batch dim)."""

    def __init__(self):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(3, 4))
        self.proj = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):  # (N, 4)
        return self.head(x + self.proj(self.queries).sum(0))


def test_output_without_the_batch_dimension_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^proj \(Linear\): its output has shape \[3, 4\], "
                                         r"whose first dimension is not the batch \(5 samples\)"):
        per_sample_grad_sq_norms(QueryTokens(), cross_entropy, torch.randn(5, 4),
                                 torch.randint(0, 2, (5,)))


class Checkpointed(nn.Module):
    def __init__(self, use_reentrant, norm=None):
        super().__init__()
        self.use_reentrant = use_reentrant
        self.body = nn.Sequential(nn.Linear(4, 4), *([norm] if norm else []), nn.Tanh())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(checkpoint(self.body, x, use_reentrant=self.use_reentrant))


@pytest.mark.parametrize("norm", [None, lambda: nn.LayerNorm(4), lambda: nn.GroupNorm(2, 4)])
def test_non_reentrant_checkpointing_is_refused_by_name(norm):
    """A norm's rule reads autograd's saved statistics, which under checkpointing would
    recompute the block inside the forward (the refusal then blamed a 'shared layer')."""
    with pytest.raises(ValueError, match=r"^body\.0 \(Linear\) ran its forward during the "
                                         r"backward pass: activation checkpointing"):
        per_sample_grad_sq_norms(Checkpointed(False, norm=norm and norm()), cross_entropy,
                                 torch.randn(3, 4), torch.randint(0, 2, (3,)))


def test_reentrant_checkpointing_is_refused_by_name():
    model, inputs, targets = Checkpointed(True), torch.randn(3, 4, requires_grad=True), \
        torch.randint(0, 2, (3,))
    with pytest.raises(ValueError, match=r"^body\.0 \(Linear\) ran with gradients disabled "
                                         r"inside the model's forward \(.*reentrant"):
        per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)
    with pytest.raises(ValueError, match=r"^body\.0 \(Linear\) ran its forward during the "
                                         r"backward pass"):
        with DiversityMeter(model).track(3):
            cross_entropy(model(inputs), targets).mean().backward()


class CheckpointAfterALayer(nn.Module):
    """A reentrant checkpoint whose input comes from a trainable layer: on the way to that
    layer's parameters torch.autograd.grad meets the checkpoint and refuses it (a RuntimeError
    came out of per_sample_grad_sq_norms)."""

    def __init__(self):
        super().__init__()
        self.stem, self.body, self.head = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        hidden = checkpoint(self.body, torch.tanh(self.stem(x)), use_reentrant=True)
        return self.head(torch.tanh(hidden))


def test_reentrant_checkpointing_after_a_trainable_layer_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^body \(Linear\) ran with gradients disabled "
                                         r"inside the model's forward \(.*reentrant"):
        per_sample_grad_sq_norms(CheckpointAfterALayer(), cross_entropy, torch.randn(3, 4),
                                 torch.randint(0, 2, (3,)))


class NoGradStem(nn.Module):
    """A trainable feature extractor run under torch.no_grad() inside the forward."""

    def __init__(self):
        super().__init__()
        self.stem, self.head = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        with torch.no_grad():
            features = torch.tanh(self.stem(x))
        return self.head(features)


def test_a_layer_run_without_grad_is_refused_with_both_causes_and_freezing_then_measures():
    model, inputs, targets = NoGradStem(), torch.randn(5, 4), torch.randint(0, 2, (5,))
    with pytest.raises(ValueError, match=r"^stem \(Linear\) ran with gradients disabled .*"
                                         r"torch\.no_grad\(\).*freeze it"):
        per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)
    model.stem.requires_grad_(False)  # what the message says to do
    expected, _ = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)


@pytest.mark.parametrize("layer", [nn.LSTM, nn.GRU, nn.RNN])
def test_recurrent_layers_are_refused_by_name(layer):
    model = nn.Sequential(nn.Linear(3, 4))
    model.add_module("rnn", layer(4, 4, batch_first=True))
    with pytest.raises(ValueError, match=rf"^rnn \({layer.__name__}\): recurrent layers"):
        DiversityMeter(model)
    model.rnn.requires_grad_(False)  # frozen: nothing to measure there
    DiversityMeter(model)


def test_parameter_used_without_its_module_running_is_refused_by_name():
    class OutProjOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(4, 2)
            self.other = nn.Linear(4, 4)

        def forward(self, x):
            return F.linear(self.other(x), self.inner.weight, self.inner.bias)

    with pytest.raises(ValueError, match=r"parameter inner\.weight received a gradient but "
                                         r"inner \(Linear\)\.forward never ran"):
        per_sample_grad_sq_norms(OutProjOnly(), cross_entropy, torch.randn(3, 4),
                                 torch.randint(0, 2, (3,)))


def test_batch_gradient_check_leaves_batchnorm_statistics_alone():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2))
    reference = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2))
    reference.load_state_dict(model.state_dict())
    inputs, targets = torch.randn(5, 4), torch.randint(0, 2, (5,))
    cross_entropy(reference(inputs), targets).mean().backward()
    with DiversityMeter(model, allow_batchnorm=True).track(5):
        cross_entropy(model(inputs), targets).mean().backward()
    assert torch.equal(model[1].running_mean, reference[1].running_mean)
    assert model[1].num_batches_tracked == 1


def test_batch_gradient_check_on_channels_last_group_norm():
    """The check re-runs GroupNorm, whose CPU parameter-only backward crashes on channels-last
    inputs unless they are made contiguous first."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(36, 2))
    model = model.to(memory_format=torch.channels_last)
    inputs = torch.randn(3, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 2, (3,))
    expected, _ = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)



def two_backward_passes(model, inputs, targets):
    outputs = model(inputs)
    cross_entropy(outputs, targets).mean().backward(retain_graph=True)
    outputs.square().sum(1).mean().backward()


def gradient_penalty(model, inputs, targets):
    inputs = inputs.clone().requires_grad_()
    losses = cross_entropy(model(inputs), targets)
    (grad_inputs,) = torch.autograd.grad(losses.sum(), inputs, create_graph=True)
    (losses + grad_inputs.square().sum(1)).mean().backward()


@pytest.mark.parametrize("backward", [two_backward_passes, gradient_penalty])
def test_more_than_one_backward_over_one_forward_is_refused_naming_the_cause(backward):
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    inputs, targets = torch.randn(5, 4), torch.randint(0, 3, (5,))
    meter = DiversityMeter(model)
    with pytest.raises(ValueError, match=r"^2 \(Linear\) and 0 \(Linear\): their outputs received "
                                         r"gradients from more than one backward pass"):
        with meter.track(len(inputs)):
            backward(model, inputs, targets)


def test_a_gradient_taken_before_backward_over_the_same_forward_is_measured_exactly():
    """torch.autograd.grad(loss, params) (to log a gradient norm, say) and then loss.backward():
    the second backward gives the same gradient, and the meter stays exact."""
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    inputs, targets = torch.randn(5, 4), torch.randint(0, 3, (5,))
    sq_norms, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)
    meter = DiversityMeter(model, keep_hooks=True)
    for _ in range(2):
        meter.reset()
        model.zero_grad()
        with meter.track(len(inputs)):
            loss = cross_entropy(model(inputs), targets).mean()
            torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
            loss.backward()
        assert_close(meter.diversity(), sq_norms.sum() / sum(g.square().sum() for g in grad_sum))


def compiled_wrapper(model):
    return model, torch.compile(model, backend="eager"), r"^the model \(OptimizedModule\)"


def compiled_in_place(model):
    model.compile(backend="eager")
    return model, model, r"^the model \(Sequential\)"


def compiled_block(model):
    model[2] = torch.compile(model[2], backend="eager")
    return model, model, r"^2 \(OptimizedModule\)"


@pytest.mark.parametrize("compile_", [compiled_wrapper, compiled_in_place, compiled_block])
def test_a_compiled_model_is_refused_by_name(compile_):
    """Hooks added to a torch.compile'd module do not run in its compiled code: the meter
    would see no layer call (it used to say each parameter was 'used outside its module')."""
    _, model, name = compile_(nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)))
    with pytest.raises(ValueError, match=name + r" is compiled with torch\.compile"):
        DiversityMeter(model)
    with pytest.raises(ValueError, match=r"is compiled with torch\.compile"):
        per_sample_grad_sq_norms(model, cross_entropy, torch.randn(5, 4),
                                 torch.randint(0, 3, (5,)))
