"""A plain Sequential of Linear layers runs its measured batches itself
(divebatch.meter.sequential): exact against the float64 loop oracle on every batch after the
checked first, for what such a model and its training loop may do; and every model that does
not qualify keeps the layer hooks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divebatch.meter.diversity import DiversityMeter
from divebatch.meter.sequential import SequentialForward
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, batch_oracle, cross_entropy, loop_oracle


def mlp(bias=True):
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8, bias=bias), nn.ReLU(inplace=True),
                         nn.Linear(8, 6, bias=bias), nn.Tanh(), nn.Linear(6, 3, bias=bias))


def oracle_diversity(model, inputs, targets, loss_fn=cross_entropy):
    sq_norms, grad_sum = loop_oracle(model, loss_fn, inputs, targets)
    return sq_norms.sum() / sum(g.square().sum() for g in grad_sum)


def measured(meter, model, inputs, targets, loss_fn=cross_entropy, passes=1, batches=3):
    """Delta_hat of the same batch, measured ``batches`` times (the first is checked), each
    with ``passes`` micro-batches; and whether each batch ran the layers itself."""
    estimates, owned, own_forward = [], [], model.__dict__.get("forward")
    for _ in range(batches):
        meter.reset()
        model.zero_grad()
        with meter.track(len(inputs)):
            for part, part_targets in zip(inputs.chunk(passes), targets.chunk(passes)):
                (loss_fn(model(part), part_targets).sum() / len(inputs)).backward()
            owned.append(isinstance(meter._hooks, SequentialForward)
                         and model.__dict__.get("forward") is not own_forward)
        estimates.append(meter.diversity())
    assert model.__dict__.get("forward") is own_forward  # the model's own forward is back
    return estimates, owned


def past_its_checked_batch():
    """The MLP, a batch, and a meter whose next measured batch runs the model's own loop."""
    model, inputs, targets = mlp(), torch.randn(5, 12), torch.randint(0, 3, (5,))
    meter = DiversityMeter(model)
    measured(meter, model, inputs, targets, batches=1)
    return model, inputs, targets, meter


def assert_exact(model, inputs, targets, own_loop=True):
    """Three measured batches of a new meter: the checked first takes the layer hooks, the
    others the model's own loop (or the hooks, for a model that does not qualify); the last
    batch's Delta_hat is the loop oracle's."""
    estimates, owned = measured(DiversityMeter(model), model, inputs, targets)
    assert owned == [False, own_loop, own_loop]
    assert_close(estimates[-1], oracle_diversity(model, inputs, targets))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("passes", [1, 2])
def test_unchecked_batches_run_the_layers_and_match_the_loop(bias, passes):
    model, inputs, targets = mlp(bias), torch.randn(6, 3, 4), torch.randint(0, 3, (6,))
    estimates, owned = measured(DiversityMeter(model), model, inputs, targets, passes=passes)
    assert owned == [False, True, True]
    for estimate in estimates:
        assert_close(estimate, oracle_diversity(model, inputs, targets))


@pytest.mark.parametrize("frozen", ["1.weight", "3.bias", "5.weight", "layer 3"])
def test_frozen_parameters_are_left_out(frozen):
    model, inputs, targets = mlp(), torch.randn(5, 12), torch.randint(0, 3, (5,))
    params = (model[3].parameters() if frozen == "layer 3"
              else [model.get_parameter(frozen)])
    for param in params:
        param.requires_grad_(False)
    assert_exact(model, inputs, targets)


def test_sequence_inputs_take_the_sequence_rule():
    model = nn.Sequential(nn.Linear(4, 5), nn.GELU(), nn.Linear(5, 3), nn.Flatten(),
                          nn.Linear(21, 2))
    inputs, targets = torch.randn(5, 7, 4), torch.randint(0, 2, (5,))
    assert_exact(model, inputs, targets)


def test_sum_reduction_and_every_other_batch():
    model, inputs, targets = mlp(), torch.randn(6, 12), torch.randint(0, 3, (6,))
    meter = DiversityMeter(model, reduction="sum")
    estimates, owned = measured(meter, model, inputs, targets,
                                loss_fn=lambda out, y: cross_entropy(out, y) * len(y))
    assert owned == [False, True, True]
    assert_close(estimates[-1], oracle_diversity(model, inputs, targets))
    meter = DiversityMeter(model, sample_every=2)
    for _ in range(4):
        model.zero_grad()
        with meter.track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()
    assert meter.measured_batches == 2  # S of 4 equal batches over ||4 G||^2
    assert_close(meter.diversity(), oracle_diversity(model, inputs, targets) / 4)


class ScaleGradient(nn.Module):
    """A layer without parameters that scales the gradient flowing back into its input with a
    hook on that input (the previous Linear's output): the Linear's gradient includes it."""

    def forward(self, x):
        if x.requires_grad:
            x.register_hook(lambda grad: 3 * grad)
        return x


def test_a_later_layer_hooking_a_linear_output_is_seen():
    model = nn.Sequential(nn.Linear(4, 6), ScaleGradient(), nn.Tanh(), nn.Linear(6, 3))
    inputs, targets = torch.randn(5, 4), torch.randint(0, 3, (5,))
    assert_exact(model, inputs, targets)


def test_kept_hooks_leave_the_forward_alone_between_batches():
    model, inputs, targets = mlp(), torch.randn(5, 12), torch.randint(0, 3, (5,))
    meter = DiversityMeter(model, keep_hooks=True)
    for _ in range(3):
        model.zero_grad()
        with meter.track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()
        assert "forward" not in model.__dict__
        with torch.no_grad():  # an evaluation between batches
            model(inputs)
    assert meter.measured_batches == 3


def test_a_failing_batch_gives_the_forward_back():
    model, inputs, targets, meter = past_its_checked_batch()
    with pytest.raises(RuntimeError, match="boom"):
        with meter.track(len(inputs)):
            model(inputs)
            raise RuntimeError("boom")
    assert "forward" not in model.__dict__
    assert_close(measured(meter, model, inputs, targets, batches=1)[0][0],
                 oracle_diversity(model, inputs, targets))


def test_a_second_call_before_backward_is_refused():
    model, inputs, targets, meter = past_its_checked_batch()
    model.zero_grad()
    with pytest.raises(ValueError, match=r"1 \(Linear\) was called again before backward"):
        with meter.track(len(inputs)):
            first, second = model(inputs), model(inputs)
            cross_entropy(first + second, targets).mean().backward()


def test_a_call_without_gradients_inside_the_batch_is_not_measured():
    model, inputs, targets, meter = past_its_checked_batch()
    meter.reset()
    model.zero_grad()
    with meter.track(len(inputs)):
        with torch.no_grad():
            model(inputs)
        cross_entropy(model(inputs), targets).mean().backward()
    assert_close(meter.diversity(), oracle_diversity(model, inputs, targets))


def test_a_flattened_batch_is_refused():
    model = nn.Sequential(nn.Flatten(0, 1), nn.Linear(4, 3))
    meter = DiversityMeter(model)
    with pytest.raises(ValueError, match=r"1 \(Linear\): its output has shape \[10, 3\]"):
        with meter.track(5):
            model(torch.randn(5, 2, 4)).square().sum().backward()


class Doubled(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


def hooked_layer(model):
    model[1].register_forward_hook(lambda module, args, output: 2 * output)


def replaced_forward(model):
    model.forward = lambda x: nn.Sequential.forward(model, x)


def global_hook(model):
    handle = nn.modules.module.register_module_forward_hook(lambda *args: None)
    model.handles = [handle]


@pytest.mark.parametrize("change", [hooked_layer, replaced_forward, global_hook])
def test_what_changes_a_layers_computation_keeps_the_hooks(change):
    model, inputs, targets = mlp(), torch.randn(5, 12), torch.randint(0, 3, (5,))
    change(model)
    try:
        assert_exact(model, inputs, targets, own_loop=False)
    finally:
        for handle in getattr(model, "handles", []):
            handle.remove()


@pytest.mark.parametrize("build", [
    lambda: nn.Sequential(nn.Linear(4, 6), nn.Tanh(), Doubled(6, 3)),  # computing otherwise
    lambda: nn.Sequential(nn.Sequential(nn.Linear(4, 6), nn.Tanh()), nn.Linear(6, 3)),  # nested
    lambda: nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 3)),  # another trains
], ids=["subclass", "nested", "layernorm"])
def test_models_that_do_not_qualify_keep_the_hooks(build):
    model, inputs, targets = build(), torch.randn(5, 4), torch.randint(0, 3, (5,))
    assert_exact(model, inputs, targets, own_loop=False)


def test_tied_linears_keep_the_hooks():
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    model = nn.Sequential(first, nn.Tanh(), second, nn.Tanh(), nn.Linear(4, 3))
    inputs, targets = torch.randn(5, 4), torch.randint(0, 3, (5,))
    assert_exact(model, inputs, targets, own_loop=False)


def test_a_hook_added_later_moves_the_next_batch_to_the_hooks():
    model, inputs, targets = mlp(), torch.randn(5, 12), torch.randint(0, 3, (5,))
    meter = DiversityMeter(model, keep_hooks=True)
    assert measured(meter, model, inputs, targets, batches=2)[1] == [False, True]
    handle = model[3].register_forward_hook(lambda module, args, output: F.relu(output))
    estimates, owned = measured(meter, model, inputs, targets, batches=2)
    handle.remove()
    assert owned == [False, False]
    hooked = nn.Sequential(*model[:4], nn.ReLU(), *model[4:])
    assert_close(estimates[-1], oracle_diversity(hooked, inputs, targets))


def test_under_autocast_both_paths_sum_alike():
    """Backward inside a bf16 autocast block: the rules run with autocast off on either path,
    so the checked batch (layer hooks) and the next (the Sequential's own loop) agree to float32
    rounding, not bf16's (the sequence rule's batched products would run in bf16)."""
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3)).float()
    inputs, targets = torch.randn(5, 4, 6).float(), torch.randint(0, 3, (5,))
    meter, estimates = DiversityMeter(model), []
    for _ in range(2):
        meter.reset()
        model.zero_grad()
        with meter.track(len(inputs)):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                cross_entropy(model(inputs).float(), targets).mean().backward()
        estimates.append(meter.diversity())
    assert estimates[1] == pytest.approx(estimates[0], rel=1e-5)


def test_a_backward_that_builds_a_graph_leaves_the_norms_out_of_it():
    """backward(create_graph=True) runs the output hooks with gradients on: the rules build
    no graph (their norms would otherwise hold the batch's graph)."""
    model, inputs, targets, meter = past_its_checked_batch()
    meter.reset()
    model.zero_grad()
    with meter.track(len(inputs)):
        cross_entropy(model(inputs), targets).mean().backward(create_graph=True)
    pending_norms = meter.running_sums[3 + len(list(model.parameters())):]  # S, C, C, G, ...
    assert pending_norms and not any(norms.requires_grad for norms in pending_norms)
    assert_close(meter.diversity(), oracle_diversity(model, inputs, targets))
    for param in model.parameters():
        param.grad = None  # the graph create_graph kept


def test_dropout_between_the_layers_is_measured_with_the_batchs_own_masks():
    """The oracle differentiates each sample's loss of the same forward (batch_oracle), its
    dropout masks drawn from the same seed as the meter's batch."""
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    inputs, targets = torch.randn(6, 12), torch.randint(0, 3, (6,))
    meter, estimates = DiversityMeter(model), []
    for _ in range(2):
        meter.reset()
        model.zero_grad()
        torch.manual_seed(1)
        with meter.track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()
        estimates.append(meter.diversity())
    torch.manual_seed(1)
    sq_norms, grad_sum = batch_oracle(model, cross_entropy, inputs, targets)
    expected = sq_norms.sum() / sum(g.square().sum() for g in grad_sum)
    assert_close(estimates[0], expected)
    assert_close(estimates[1], expected)


class SequentialMLP(nn.Sequential):
    """A Sequential subclass that only builds its layers, as torchvision.ops.MLP does: its
    forward is Sequential's, so it qualifies."""

    def __init__(self, sizes):
        layers = []
        for d_in, d_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(d_in, d_out), nn.ReLU(inplace=True), nn.Dropout(0.0)]
        super().__init__(*layers[:-2])


def test_a_sequential_subclass_that_only_builds_its_layers_qualifies():
    model = SequentialMLP([12, 8, 8, 3])
    inputs, targets = torch.randn(5, 12), torch.randint(0, 3, (5,))
    assert_exact(model, inputs, targets)
