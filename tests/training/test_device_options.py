"""The trainer's device choices: fused optimizer, non-blocking copies, compiled forward, and a
training step that never waits for the device (the CUDA tests run where there is one)."""

import math

import pytest
import torch
from torch import nn

from divebatch import device_options
from divebatch.training import trainer as trainer_module
from divebatch.config import RunConfig
from divebatch.device_options import make_optimizer, to_device
from divebatch.training.trainer import Trainer, train
from tests.helpers.dataset_files import make_cifar10_python

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero")


def cifar_trainer(tmp_path, **overrides) -> Trainer:
    make_cifar10_python(tmp_path)  # 100 training images of random pixels
    config = dict(problem="cifar10", model="cnn", data_dir=str(tmp_path), epochs=1,
                  batch_size=25, method="sgd", device="cpu", lr=0.01)
    return Trainer(RunConfig(**{**config, **overrides}))


def run_steps(trainer: Trainer, measure: bool, steps: int = 2,
              order: torch.Tensor | None = None) -> list[torch.Tensor]:
    problem, batch = trainer.problem, trainer.scheduler.batch_size
    order = torch.randperm(problem.n_train).to(trainer.device) if order is None else order
    return [trainer._train_step(problem.x_train[order[i * batch:(i + 1) * batch]],
                                problem.y_train[order[i * batch:(i + 1) * batch]], measure)
            for i in range(steps)]


def test_optimizer_is_fused_only_on_cuda():
    params = [nn.Parameter(torch.zeros(3))]
    cpu = make_optimizer(params, lr=0.1, momentum=0.9, weight_decay=0.0,
                         device=torch.device("cpu"))
    assert not cpu.defaults["fused"]
    if torch.cuda.is_available():
        cuda_params = [nn.Parameter(torch.zeros(3, device="cuda"))]
        cuda = make_optimizer(cuda_params, lr=0.1, momentum=0.9, weight_decay=0.0,
                              device=torch.device("cuda"))
        assert cuda.defaults["fused"]


def test_to_device_keeps_values():
    tensor = torch.arange(6).view(2, 3)
    assert torch.equal(to_device(tensor, torch.device("cpu")), tensor)


def test_step_reads_nothing_back_from_the_device(tmp_path, monkeypatch):
    """No .item(), bool(), float(), nonzero... in a step, measured or not: the loss sum stays
    a device tensor until the epoch ends."""
    trainer = cifar_trainer(tmp_path)
    run_steps(trainer, measure=True, steps=1)  # lazy state (momentum buffers) made outside

    def forbidden(*args, **kwargs):
        raise AssertionError("a training step read a tensor back to the host")
    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    losses = run_steps(trainer, measure=True) + run_steps(trainer, measure=False)
    monkeypatch.undo()
    assert all(loss.dim() == 0 and loss.dtype == torch.float64 for loss in losses)
    assert all(math.isfinite(float(loss)) for loss in losses)


def test_compiled_forward_serves_only_unmeasured_batches(monkeypatch):
    """The compiled model (a counting stand-in here: compiling takes minutes on this CPU) runs
    the unmeasured batches; measured ones stay eager, so diversity is unchanged."""
    calls = []

    class Counting(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            calls.append(len(x))
            return self.model(x)

    def stand_in(model, compile_forward):
        return Counting(model) if compile_forward else model
    monkeypatch.setattr(trainer_module, "plain_forward_model", stand_in)
    config = dict(problem="digits", model="cnn", n_samples=0, epochs=1, batch_size=360,
                  max_batch_size=360, method="divebatch", resize_every=1, measure_every=2,
                  diversity_every_epoch=False, device="cpu", seed=1)
    eager = train(RunConfig(**config))
    with_stand_in = train(RunConfig(**config, compile_forward=True))
    assert len(calls) == 2  # 4 batches of 1437 images: the 2nd and the 4th
    for plain, routed in zip(eager.records, with_stand_in.records):
        assert (routed.diversity, routed.train_loss) == (plain.diversity, plain.train_loss)


def test_compile_is_off_by_default_and_precision_is_float32():
    config = RunConfig()
    assert not (config.compile_forward or config.amp or config.channels_last)
    model = nn.Linear(2, 2)
    assert device_options.plain_forward_model(model, False) is model


@needs_cuda
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_step_never_synchronizes(tmp_path, amp):
    trainer = cifar_trainer(tmp_path, device="cuda", model="resnet18", amp=amp,
                            channels_last=amp)
    assert trainer.optimizer.defaults["fused"]
    run_steps(trainer, measure=True, steps=1)  # warm-up: cuDNN plans, momentum buffers
    run_steps(trainer, measure=False, steps=1)
    order = torch.randperm(trainer.problem.n_train).to(trainer.device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = (run_steps(trainer, measure=True, order=order)
                  + run_steps(trainer, measure=False, order=order))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(math.isfinite(float(loss)) for loss in losses)


@needs_cuda
def test_cuda_compiled_forward_keeps_measured_diversity():
    config = dict(problem="digits", model="cnn", epochs=2, batch_size=64, method="sgd",
                  measure_every=2, device="cuda", seed=0)
    eager = train(RunConfig(**config))
    compiled = train(RunConfig(**config, compile_forward=True))
    assert compiled.status == "completed"
    for plain, fast in zip(eager.records, compiled.records):
        assert fast.diversity == pytest.approx(plain.diversity, rel=1e-3)
        assert fast.train_loss == pytest.approx(plain.train_loss, rel=1e-3)
