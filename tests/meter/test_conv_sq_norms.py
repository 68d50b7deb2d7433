"""The Conv2d rule's fused path: the meter's batch weight gradients against plain autograd.

Per-sample norms of every Conv2d case are checked against the loop oracle in test_diversity.py;
here the question is whether a DiversityMeter that freezes conv weights for the forward and
writes their gradient from the per-sample ones leaves exactly the gradient autograd would have,
and whether each path, and each device's choice among them, agrees with the loop.
"""

import pytest
import torch
from torch import nn

from divebatch.meter import hooks as sq_norm_hooks, kernels
from divebatch.meter.rules import conv as conv_sq_norms
from divebatch.meter.diversity import DiversityMeter, per_sample_grad_sq_norms
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import (CONV_CASES, assert_close, conv_model, conv_without_bias,
                                   cross_entropy, image_batch, loop_oracle,
                                   weight_sq_norms_by_loop)


@pytest.fixture
def fused_calls(monkeypatch):
    """Count calls of the fused rule; the cost model always prefers the explicit path."""
    monkeypatch.setattr(kernels, "gram_is_cheaper", lambda gram, explicit: False)
    calls = []
    fused_rule = conv_sq_norms.conv2d_fused_sq_norms

    def counting(conv, x, grad_out):
        calls.append(conv)
        return fused_rule(conv, x, grad_out)
    monkeypatch.setitem(sq_norm_hooks.FUSED_RULES, nn.Conv2d,
                        (conv_sq_norms.fuses_weight_grad, counting))
    return calls


def plain_gradients(model, inputs, targets):
    model.zero_grad()
    cross_entropy(model(inputs), targets).mean().backward()
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


def metered_gradients(model, inputs, targets, **meter_kwargs):
    model.zero_grad()
    meter = DiversityMeter(model, **meter_kwargs)
    with meter.track(len(inputs)):
        cross_entropy(model(inputs), targets).mean().backward()
    return [p.grad.clone() for p in model.parameters()], meter


@pytest.mark.parametrize("case", CONV_CASES)
def test_fused_gradients_and_diversity_match_autograd_and_oracle(case, fused_calls):
    model, (inputs, targets) = conv_model(**CONV_CASES[case]), image_batch()
    expected_grads = plain_gradients(model, inputs, targets)
    grads, meter = metered_gradients(model, inputs, targets)
    assert fused_calls == [model[3], model[0]]  # in backward's order
    for got, expected in zip(grads, expected_grads):
        assert_close(got, expected)
    sq_norms, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(meter.diversity(), sq_norms.sum() / sum(g.square().sum() for g in grad_sum))
    assert all(p.requires_grad for p in model.parameters())


def test_no_fusion_when_turned_off(fused_calls):
    model, (inputs, targets) = conv_model(kernel_size=3, padding=1), image_batch()
    expected_grads = plain_gradients(model, inputs, targets)
    grads, _ = metered_gradients(model, inputs, targets, fuse_weight_grads=False)
    assert fused_calls == []
    for got, expected in zip(grads, expected_grads):
        assert_close(got, expected)


def test_fused_micro_batches_and_chunks_accumulate(fused_calls, monkeypatch):
    monkeypatch.setattr(kernels, "TEMP_BUDGET", 0)  # one sample per chunk
    monkeypatch.setattr(kernels, "MIN_TEMP_ELEMENTS", 0)
    model, (inputs, targets) = conv_model(kernel_size=3, stride=2, padding=1), image_batch(6)
    expected_grads = plain_gradients(model, inputs, targets)
    model.zero_grad(set_to_none=False)  # the fused rule adds into an existing gradient
    meter = DiversityMeter(model)
    with meter.track(6):
        for part in (slice(0, 4), slice(4, 6)):
            (cross_entropy(model(inputs[part]), targets[part]).sum() / 6).backward()
    assert len(fused_calls) == 4  # two convolutions, two micro-batches
    for got, expected in zip([p.grad for p in model.parameters()], expected_grads):
        assert_close(got, expected)


@pytest.mark.parametrize("case", CONV_CASES)
def test_fused_grouped_convolution_one_sample_at_a_time(case, fused_calls, monkeypatch):
    """The CPU's grouped weight-gradient convolution in chunks of one sample (its cache
    budget): the same weight gradient and diversity."""
    monkeypatch.setattr(conv_sq_norms, "GROUPED_CONV_CHUNK_ELEMENTS", 1)
    model, (inputs, targets) = conv_model(**CONV_CASES[case]), image_batch()
    expected_grads = plain_gradients(model, inputs, targets)
    grads, meter = metered_gradients(model, inputs, targets)
    for got, expected in zip(grads, expected_grads):
        assert_close(got, expected)
    sq_norms, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(meter.diversity(), sq_norms.sum() / sum(g.square().sum() for g in grad_sum))


def test_grouped_convolution_chunks_hold_its_cache_budget(monkeypatch):
    """Inputs, output gradients and weight gradients of a chunk within the budget: 2016
    elements per sample here (576 + 288 + 1152), so 3 samples in 6048; the windows path (an
    RGB stem) keeps its memory budget's one chunk."""
    monkeypatch.setattr(conv_sq_norms, "GROUPED_CONV_CHUNK_ELEMENTS", 3 * 2016 + 5)
    conv, stem = nn.Conv2d(16, 8, 3, padding=1), nn.Conv2d(3, 8, 3, padding=1)
    x, grad_out = torch.randn(10, 16, 6, 6), torch.randn(10, 8, 6, 6)
    chunks = conv_sq_norms._explicit_chunks(conv, x, grad_out)
    assert [len(part) for part, _ in chunks] == [3, 3, 3, 1]
    assert [len(part) for part, _ in conv_sq_norms._explicit_chunks(
        stem, x[:, :3], grad_out)] == [10]
    expected = weight_sq_norms_by_loop(conv, x, grad_out) + grad_out.sum((2, 3)).square().sum(1)
    monkeypatch.setattr(kernels, "gram_is_cheaper", lambda gram, explicit: False)
    with torch.no_grad():
        assert_close(conv_sq_norms._conv2d_sq_norms(conv, x, grad_out), expected)


def test_failed_forward_unfreezes_the_weight(fused_calls):
    model, (inputs, _) = conv_model(kernel_size=3, padding=1), image_batch()
    model[4].register_forward_hook(lambda *args: (_ for _ in ()).throw(RuntimeError("boom")))
    meter = DiversityMeter(model)
    with pytest.raises(RuntimeError, match="boom"), meter.track(len(inputs)):
        model(inputs)
    assert all(p.requires_grad for p in model.parameters())



def bias_free_stems():
    """A first convolution without bias on an input that needs no gradient: autograd would not
    record its output once its weight is frozen, so the meter taps it (divebatch.meter.tap);
    an in-place ReLU after it (as in VGG) must still work, and so must a stem that is the
    only trainable layer."""
    torch.manual_seed(0)
    vgg_like = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                             nn.Conv2d(4, 4, 3, bias=False), nn.Flatten(), nn.Linear(64, 5))
    only_stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.GroupNorm(2, 4),
                              nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(144, 5))
    for param in only_stem[1:].parameters():
        param.requires_grad_(False)
    return {"vgg_like": vgg_like, "only_stem": only_stem}


@pytest.mark.parametrize("name", ["vgg_like", "only_stem"])
def test_a_bias_free_stem_is_fused_through_a_tap(name, fused_calls):
    model, (inputs, targets) = bias_free_stems()[name], image_batch()
    expected_grads = plain_gradients(model, inputs, targets)
    sq_norms, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)
    meter = DiversityMeter(model, keep_hooks=True)  # the checked batch, then kept hooks
    for _ in range(3):
        model.zero_grad()
        with meter.track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()
        for param, expected in zip(model.parameters(), expected_grads):
            if expected is None:
                assert param.grad is None
            else:
                assert_close(param.grad, expected)
    assert fused_calls.count(model[0]) == 3
    three_batches = 3 * sq_norms.sum() / sum((3 * g).square().sum() for g in grad_sum)
    assert_close(meter.diversity(), three_batches)
    meter.detach()
    assert model[0].weight.requires_grad and model[0](inputs).requires_grad


def test_a_stem_on_a_channels_last_input_is_not_tapped(fused_calls):
    """A one-channel batch with channel stride 1 (as digits come) makes the stem's output
    channels-last; tapped, GroupNorm's backward crashed the process in the weighted check
    (torch 2.13, CPU). Such a stem is measured unfused; the checked batch runs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.GroupNorm(2, 4),
                          nn.ReLU(), nn.Flatten(), nn.Linear(256, 5))
    inputs = torch.randn(5, 8, 8, 1).permute(0, 3, 1, 2)  # strides (64, 1, 8, 1)
    targets = torch.randint(0, 5, (5,))
    expected_grads = plain_gradients(model, inputs, targets)
    grads, meter = metered_gradients(model, inputs, targets)
    assert fused_calls == []
    for got, expected in zip(grads, expected_grads):
        assert_close(got, expected)
    sq_norms, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(meter.diversity(), sq_norms.sum() / sum(g.square().sum() for g in grad_sum))

class TiedConvs(nn.Module):
    """Two convolutions sharing one weight, on features and on their mirror (after a stem, so
    that their input needs a gradient, as fusing requires)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 1)
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.b.weight = self.a.weight
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        x = torch.tanh(self.stem(x))
        return self.head((self.a(x) + self.b(x.flip(3))).mean((2, 3)))


def test_a_tied_weight_is_measured_unfused(fused_calls):
    """A conv weight tied to another's is measured after backward from both of its modules
    (divebatch.meter.shared_params), never fused: fusing it crashed the meter in backward."""
    model, (inputs, targets) = TiedConvs(), image_batch()
    expected_grads = plain_gradients(model, inputs, targets)
    grads, meter = metered_gradients(model, inputs, targets)
    assert fused_calls == [model.stem]  # the pair is tied
    for got, expected in zip(grads, expected_grads):
        assert_close(got, expected)
    sq_norms, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(meter.diversity(), sq_norms.sum() / sum(g.square().sum() for g in grad_sum))


@pytest.mark.parametrize("case", CONV_CASES)
def test_output_size_matches_the_convolution(case):
    conv = nn.Conv2d(4, 8, **CONV_CASES[case])
    for height, width in ((6, 6), (7, 5)):
        output = conv(torch.zeros(1, 4, height, width))
        assert conv_sq_norms._output_size(conv, height, width) == tuple(output.shape[2:])


def test_fusion_needs_a_trainable_weight_and_a_shared_dtype(fused_calls):
    conv = nn.Conv2d(3, 4, 3, bias=False)
    x = torch.randn(2, 3, 6, 6)
    assert conv_sq_norms.fuses_weight_grad(conv, x)
    assert conv_sq_norms.fuses_weight_grad(conv, x.requires_grad_())
    assert not conv_sq_norms.fuses_weight_grad(conv, x.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # an input autocast has not cast yet
        assert not conv_sq_norms.fuses_weight_grad(conv, x)
    channels_last = x.detach().contiguous(memory_format=torch.channels_last)
    assert not conv_sq_norms.fuses_weight_grad(conv, channels_last)  # it would be tapped
    assert conv_sq_norms.fuses_weight_grad(conv, channels_last.requires_grad_())
    conv.weight.requires_grad_(False)
    assert not conv_sq_norms.fuses_weight_grad(conv, x)



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_stem_is_tapped_only_on_a_cpu(fused_calls):
    conv = nn.Conv2d(3, 4, 3, bias=False, device="cuda")
    x = torch.randn(2, 3, 6, 6, device="cuda")
    assert not conv_sq_norms.fuses_weight_grad(conv, x)  # not measured on a GPU


def explicit_by_bmm(conv, x, grad_out):
    return conv_sq_norms._large_sq_norms(
        conv_sq_norms._per_sample_weight_grads_by_bmm(conv, x, grad_out))


def explicit_by_conv(conv, x, grad_out):
    return conv_sq_norms._large_sq_norms(
        conv_sq_norms._per_sample_weight_grads_by_conv(conv, x, grad_out))


def explicit_by_windows(conv, x, grad_out):
    return conv_sq_norms._large_sq_norms(
        conv_sq_norms._per_sample_weight_grads_by_windows(conv, x, grad_out))


WEIGHT_PATHS = {"explicit_by_conv": explicit_by_conv, "explicit_by_bmm": explicit_by_bmm,
                "explicit_by_windows": explicit_by_windows,
                "pixel_gram": conv_sq_norms._conv2d_gram_sq_norms,
                "unfold_gram": conv_sq_norms._conv2d_unfold_gram_sq_norms}


@pytest.mark.parametrize("path", WEIGHT_PATHS)
@pytest.mark.parametrize("case", CONV_CASES)
def test_every_weight_path_matches_the_loop(case, path):
    conv = conv_without_bias(case)
    x = torch.randn(5, 4, 7, 6)
    grad_out = torch.randn_like(conv(x))
    expected = weight_sq_norms_by_loop(conv, x, grad_out)
    with torch.no_grad():
        assert_close(WEIGHT_PATHS[path](conv, x, grad_out), expected)


@pytest.mark.parametrize("case", CONV_CASES)
def test_per_sample_weight_grads_agree_between_conv_bmm_and_windows(case):
    conv = conv_without_bias(case)
    x = torch.randn(3, 4, 7, 6)
    grad_out = torch.randn_like(conv(x))
    with torch.no_grad():
        by_conv = conv_sq_norms._per_sample_weight_grads_by_conv(conv, x, grad_out)
        by_bmm = conv_sq_norms._per_sample_weight_grads_by_bmm(conv, x, grad_out)
        by_windows = conv_sq_norms._per_sample_weight_grads_by_windows(conv, x, grad_out)
    assert by_bmm.shape == by_conv.shape == by_windows.shape == (3, *conv.weight.shape)
    assert_close(by_bmm, by_conv)
    assert_close(by_windows, by_conv)


def test_short_patches_take_the_windows_on_a_cpu(monkeypatch):
    """An RGB stem (27 per patch) takes the stacked windows, a wider layer the grouped
    weight-gradient convolution; both inside the fused rule too."""
    taken = []
    for name in ("_per_sample_weight_grads_by_windows", "_per_sample_weight_grads_by_conv"):
        way = getattr(conv_sq_norms, name)
        monkeypatch.setattr(conv_sq_norms, name,
                            lambda *args, way=way, name=name: taken.append(name) or way(*args))
    for channels in (3, 4):
        conv = nn.Conv2d(channels, 5, 3, padding=1)
        x = torch.randn(2, channels, 5, 5)
        with torch.no_grad():
            conv_sq_norms._conv2d_per_sample_weight_grads(conv, x, torch.randn(2, 5, 5, 5))
    assert taken == ["_per_sample_weight_grads_by_windows", "_per_sample_weight_grads_by_conv"]


@pytest.fixture
def cuda_choices(monkeypatch):
    """Make CPU tensors take every choice CUDA tensors take (paths and cost constants)."""
    monkeypatch.setattr(conv_sq_norms, "_uses_batched_matmul", lambda device: True)
    monkeypatch.setattr(conv_sq_norms, "_device_costs",
                        lambda device: conv_sq_norms.DEVICE_COSTS["cuda"])


@pytest.mark.parametrize("case", CONV_CASES)
def test_cuda_choices_match_the_oracle_on_cpu(case, cuda_choices):
    model, (inputs, targets) = conv_model(**CONV_CASES[case]), image_batch()
    expected, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)
    _, meter = metered_gradients(model, inputs, targets)  # fused where the model allows
    assert_close(meter.diversity(), expected.sum() / sum(g.square().sum() for g in grad_sum))


def test_fused_bmm_path_writes_the_autograd_gradient(cuda_choices, fused_calls):
    model, (inputs, targets) = conv_model(kernel_size=3, stride=2, padding=1), image_batch()
    expected_grads = plain_gradients(model, inputs, targets)
    grads, _ = metered_gradients(model, inputs, targets)
    assert fused_calls == [model[3], model[0]]
    for got, expected in zip(grads, expected_grads):
        assert_close(got, expected)


RESNET18_CIFAR_CONVS = [  # (channels, output side) of the 3x3 convs of each stage, B = 128
    (64, 32), (128, 16), (256, 8), (512, 4)]


def resnet_costs(device):
    return [conv_sq_norms._weight_costs(nn.Conv2d(c, c, 3, padding=1), 128, c, side, side,
                                        device=torch.device(device))
            for c, side in RESNET18_CIFAR_CONVS]


def test_path_choice_per_device_on_resnet18():
    """CUDA: the batched explicit product on large images, the unfold Gram on small ones, never
    the many-operation pixel Gram; grouped convolutions are only a CPU way."""
    assert not conv_sq_norms._uses_batched_matmul(torch.device("cpu"))
    assert conv_sq_norms._uses_batched_matmul(torch.device("cuda"))
    assert [c.choice() for c in resnet_costs("cuda")] == [
        "explicit", "explicit", "unfold_gram", "unfold_gram"]
    assert [c.choice() for c in resnet_costs("cpu")] == [  # the CPU calibration, unchanged
        "explicit", "pixel_gram", "pixel_gram", "pixel_gram"]


def test_unknown_devices_use_the_cpu_costs():
    assert conv_sq_norms._device_costs(torch.device("mps")) == conv_sq_norms.DEVICE_COSTS["cpu"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", CONV_CASES)
def test_cuda_norms_match_the_oracle_with_tf32_off(case, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model, (inputs, targets) = conv_model(**CONV_CASES[case]), image_batch(16)
    expected, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)  # CPU float64
    model, inputs, targets = model.float().cuda(), inputs.float().cuda(), targets.cuda()
    got = per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)
    assert got.device.type == "cuda" and got.dtype == torch.float32
    assert float(((got.cpu().double() - expected).abs().max()) / expected.abs().max()) < 1e-5
    _, meter = metered_gradients(model, inputs, targets)
    expected_diversity = expected.sum() / sum(g.square().sum() for g in grad_sum)
    assert meter.diversity() == pytest.approx(float(expected_diversity), rel=1e-5)


def test_cost_model_picks_unfold_on_small_images_and_pixel_gram_on_larger():
    conv = nn.Conv2d(64, 64, 3, stride=2, padding=1)
    small = conv_sq_norms._weight_costs(conv, 64, 64, 2, 2)  # digits CNN: 4x4 input
    larger = conv_sq_norms._weight_costs(conv, 128, 64, 8, 8)  # CIFAR CNN: 16x16 input
    assert small.unfold_gram < small.pixel_gram < small.explicit
    assert larger.pixel_gram < larger.unfold_gram < larger.explicit


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_splits_resnet18_stage_one_into_fewer_chunks():
    x = torch.zeros(128, 64, 32, 32)  # the input of a 64-channel 3x3 conv at B = 128
    per_sample = 701_000  # patches, padded input and weight gradient of the bmm path
    assert len(kernels.sample_chunks((x,), per_sample)) == 5
    assert len(kernels.sample_chunks((x.cuda(),), per_sample)) == 3
