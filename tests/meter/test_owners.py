"""Which modules hold each parameter (``divebatch.meter.owners``). Failure class 5 of issue 26:
a bias held by a module and by its submodule (RoBERTa's and BERT's LM head: ``lm_head.bias`` is
``lm_head.decoder.bias``) is exact; a direct use besides the submodule's is refused with a
message that says so. Models refused as a whole (TorchScript, BatchNorm without running
statistics) are named with the reason."""

import pytest
import torch
from torch import nn

from divebatch.meter.diversity import DiversityMeter, per_sample_grad_sq_norms
from divebatch.meter.owners import parameter_owners
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, cross_entropy, loop_oracle


class LMHead(nn.Module):
    def __init__(self, dim, vocab, direct_use=False):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.decoder = nn.Linear(dim, vocab)
        self.bias = nn.Parameter(torch.randn(vocab))
        self.decoder.bias = self.bias
        self.direct_use = direct_use

    def forward(self, h):
        logits = self.decoder(torch.tanh(self.dense(h)))
        return logits + self.bias if self.direct_use else logits


class TiedLM(nn.Module):
    """Token embedding tied to the head's decoder weight, and the head's tied bias."""

    def __init__(self, direct_use=False, vocab=7, dim=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lm_head = LMHead(dim, vocab, direct_use)
        self.lm_head.decoder.weight = self.embed.weight

    def forward(self, x):  # (N, T) -> (N, vocab)
        return self.lm_head(self.embed(x).mean(1))


def token_batch(n=5):
    return torch.randint(0, 7, (n, 3)), torch.randint(0, 7, (n,))


def test_the_submodule_holds_a_bias_shared_with_its_parent():
    model = TiedLM()
    owners = parameter_owners(model)
    assert [o.path for o in owners[model.lm_head.bias]] == ["lm_head.decoder"]
    assert [o.path for o in owners[model.embed.weight]] == ["embed", "lm_head.decoder"]


def test_tied_bias_and_weight_match_loop():
    model, (inputs, targets) = TiedLM(), token_batch()
    expected, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)
    with DiversityMeter(model) as meter:
        with meter.track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()
        assert_close(meter.diversity(),
                     expected.sum() / sum(g.square().sum() for g in grad_sum))


def test_a_direct_use_besides_the_submodule_is_refused_as_such():
    model, (inputs, targets) = TiedLM(direct_use=True), token_batch()
    with pytest.raises(ValueError, match=r"lm_head\.decoder\.bias: .*does not come from the "
                                         r"calls of lm_head\.decoder"):
        per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)


def test_a_tied_embedding_is_still_checked_by_its_capture():
    model, (inputs, targets) = TiedLM(), token_batch()
    model.embed.scale_grad_by_freq = True
    with pytest.raises(ValueError, match=r"embed \(Embedding\): scale_grad_by_freq"):
        per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)


class Containers(nn.Module):
    """Weights kept in a ParameterList and a ParameterDict, used by the module holding them
    (research code's custom layers), and a Linear that also holds a ParameterList."""

    def __init__(self):
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(4, 4) / 2) for _ in range(2)])
        self.gains = nn.ParameterDict({"out": nn.Parameter(torch.randn(3))})
        self.head = nn.Linear(4, 3)
        self.head.extra = nn.ParameterList([nn.Parameter(torch.randn(3))])
        self.head.forward = lambda x: nn.functional.linear(x, self.head.weight, self.head.bias) \
            * self.head.extra[0]

    def forward(self, x):
        for weight in self.weights:
            x = torch.tanh(x @ weight)
        return self.head(x) * self.gains["out"]


def test_parameter_containers_belong_to_the_module_that_holds_them():
    model = Containers()
    held = {o.param_path: o.path for owners in parameter_owners(model).values() for o in owners}
    assert held == {"weights.0": "", "weights.1": "", "gains.out": "", "head.weight": "head",
                    "head.bias": "head", "head.extra.0": "head"}
    inputs, targets = torch.randn(5, 4), torch.randint(0, 3, (5,))
    expected, _ = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)


@pytest.mark.parametrize("script", [torch.jit.script,
                                    lambda model: torch.jit.trace(model, torch.randn(2, 4))])
def test_a_torchscript_model_is_refused_by_name(script):
    """A ScriptModule takes no Python hooks (register_forward_pre_hook raised RuntimeError)."""
    model = script(nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)))
    for measure in (lambda: DiversityMeter(model),
                    lambda: per_sample_grad_sq_norms(model, cross_entropy, torch.randn(5, 4),
                                                     torch.randint(0, 3, (5,)))):
        with pytest.raises(ValueError, match=r"^the model \(\w+\) is a TorchScript module"):
            measure()


def test_batchnorm_without_running_statistics_is_refused_in_eval_mode_too_and_says_why():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False),
                          nn.Flatten(), nn.Linear(64, 5)).eval()
    inputs, targets = torch.randn(5, 3, 6, 6), torch.randint(0, 5, (5,))
    with pytest.raises(ValueError, match=r"^BatchNorm without running statistics \(1; "
                                         r"track_running_stats=False .* even in eval mode\)"):
        per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)
