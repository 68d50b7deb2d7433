"""Cost of measuring per-sample gradient norms on every batch, against a plain step and peers.

Each method does one full SGD step (forward, backward, optimizer step) on the same model,
batch and initial weights, and also obtains ||g_i||^2 for every sample of the batch:

  plain      forward + backward + step, no per-sample norms (the reference, ratio 1.00)
  divebatch  the same inside DiversityMeter(sample_every=1, keep_hooks=True).track(), as the
             trainer measures: the per-layer rules
  vmap       torch.func: vmap(grad(loss of one sample)) materialises every g_i; their mean
             is the step's gradient
  loop       one forward/backward per sample; their mean is the step's gradient
  backpack   BackPACK BatchL2Grad during the ordinary backward
  opacus     Opacus GradSampleModule per-sample gradients, squared and summed

Time: the methods run round-robin (so load changes on a shared machine hit them alike), each
timed over a block of steps; the table gives the median over rounds after warm-up, and its
ratio to plain. Memory: the peak of tensor memory during one step, including what is alive
before it (parameters, gradients, optimizer state, the batch, the meter's running sums). On
CUDA that is torch.cuda.max_memory_allocated(); on CPU the profiler's allocator events
(profile_memory=True) give every allocation and free, and their running sum gives the peak.

    python benchmarks/diversity_overhead.py --quick        # a couple of minutes on 2 CPU cores
    python benchmarks/diversity_overhead.py --device cuda   # targets of issue 14 on CUDA
    python benchmarks/diversity_overhead.py --device cuda --models resnet18 --batch-size 512

Models (--models): mlp (digits, 64-128-128-10), linear (digits, 64-10: the convex races' kind of
model, without a target), cnn (the small CNN on 3x32x32 images: the model issue 32's targets
were measured on), digits_cnn (the same CNN on digits' 1x8x8 images
laid out as the trainer lays them out: the races' model, without a target), resnet18 (GroupNorm,
3x32x32), gpt (2 blocks, width 64, 32 tokens).

backpack and opacus are optional (pip install --no-deps backpack-for-pytorch opacus einops
unfoldNd opt_einsum); a missing one prints "not installed". BackPACK skips GroupNorm parameters
silently: its rows for GroupNorm models lack those norms and are marked so.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from divebatch.config import RunConfig  # noqa: E402
from divebatch.data.problems import load_problem  # noqa: E402
from divebatch.device_options import make_optimizer  # noqa: E402
from divebatch.meter.diversity import DiversityMeter  # noqa: E402
from divebatch.models.gpt import GPT, token_losses  # noqa: E402
from divebatch.models.registry import build_model  # noqa: E402
from step_memory import peak_memory_bytes  # noqa: E402

METHODS = ("plain", "divebatch", "vmap", "loop", "backpack", "opacus")
# divebatch time ratio to plain on CPU (issue 32: one thread, CPU clock), by batch size: the
# races start at B = 32, the paper at B = 128
TARGETS = {32: {"mlp": 1.25, "cnn": 1.20},
           128: {"mlp": 1.15, "cnn": 1.15, "resnet18": 1.10, "gpt": 1.25}}
CUDA_TARGETS = {"mlp": 1.10, "cnn": 1.30, "resnet18": 1.30}  # issue 14; ResNet at B >= 512: 1.20
MEMORY_TARGET = 1.25
# the "gpt" model: nanoGPT-style, 2 blocks, tied embeddings, sequences of block_size tokens
GPT_SHAPE = dict(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=64)
BLOCK_SECONDS = 0.3  # each timed sample runs whole steps for at least about this long

Step = Callable[[], None]  # one SGD step that also computes ||g_i||^2 for every sample


def per_sample_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    if outputs.dim() == 3:  # (N, T, vocabulary) next-token logits
        return token_losses(outputs, targets)
    return F.cross_entropy(outputs, targets, reduction="none")  # (N,)


def digits_batch(batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits
    digits = load_digits()
    inputs = torch.tensor(digits.data[:batch_size] / 16.0, dtype=torch.float32)  # (B, 64)
    return inputs.to(device), torch.tensor(digits.target[:batch_size]).to(device)


def image_batch(batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """CIFAR-shaped random images: timing and memory do not depend on the pixel values."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch_size, 3, 32, 32, generator=generator)
    return inputs.to(device), torch.randint(0, 10, (batch_size,), generator=generator).to(device)


def token_batch(batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Random token sequences of block_size tokens and their next-token targets."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, GPT_SHAPE["block_size"])
    tokens = torch.randint(0, GPT_SHAPE["vocab_size"], shape, generator=generator)
    targets = torch.randint(0, GPT_SHAPE["vocab_size"], shape, generator=generator)
    return tokens.to(device), targets.to(device)


def workload(name: str, batch_size: int, device: torch.device):
    """(model, inputs, targets) for one row group of the table."""
    torch.manual_seed(0)
    if name == "gpt":
        return GPT(**GPT_SHAPE).to(device), *token_batch(batch_size, device)
    if name in ("mlp", "linear"):
        return (build_model(name, input_shape=(64,), n_outputs=10, hidden=128).to(device),
                *digits_batch(batch_size, device))
    if name == "digits_cnn":  # the races' CNN on the trainer's own digits tensors (layout too)
        problem = load_problem(RunConfig(problem="digits", model="cnn"), device)
        batch = torch.arange(batch_size, device=device)
        return (build_model("cnn", input_shape=(1, 8, 8), n_outputs=10).to(device),
                problem.x_train[batch], problem.y_train[batch])
    model = build_model(name, input_shape=(3, 32, 32), n_outputs=10)
    return model.to(device), *image_batch(batch_size, device)


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    """The trainer's optimizer (fused on CUDA)."""
    device = next(model.parameters()).device
    return make_optimizer(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4,
                          device=device)


def time_targets(device: torch.device, resnet_batch: int, batch: int = 128) -> dict[str, float]:
    if device.type != "cuda":
        return TARGETS[32] if batch <= 32 else TARGETS[128]
    return {**CUDA_TARGETS, "resnet18": 1.20 if resnet_batch >= 512 else 1.30}


def set_mean_gradient(params: list[nn.Parameter], grads: list[Tensor]) -> None:
    """param.grad = mean over samples of the per-sample gradients (N, *param.shape)."""
    for param, per_sample in zip(params, grads):
        param.grad = per_sample.mean(0)


def sum_of_squares(per_sample: list[Tensor]) -> Tensor:  # [(N, ...)] -> (N,)
    return sum(g.flatten(1).square().sum(1) for g in per_sample)


# ----------------------------------------------------------------------------- the methods

def plain_step(model, inputs, targets) -> Step:
    optimizer = sgd(model)

    def step() -> None:
        optimizer.zero_grad()
        per_sample_loss(model(inputs), targets).mean().backward()
        optimizer.step()
    return step


def divebatch_step(model, inputs, targets) -> Step:
    """The trainer's measured step (its meter keeps its hooks between measured batches)."""
    optimizer, meter = sgd(model), DiversityMeter(model, sample_every=1, keep_hooks=True)

    def step() -> None:
        optimizer.zero_grad()
        with meter.track(len(inputs)):  # S gets sum_i ||g_i||^2, G gets sum_i g_i
            per_sample_loss(model(inputs), targets).mean().backward()
        optimizer.step()
    return step


def vmap_step(model, inputs, targets) -> Step:
    optimizer = sgd(model)
    names, params = zip(*model.named_parameters())

    def sample_loss(param_values, x, y):
        outputs = functional_call(model, dict(zip(names, param_values)), (x.unsqueeze(0),))
        return per_sample_loss(outputs, y.unsqueeze(0)).sum()

    per_sample_grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))

    def step() -> None:
        optimizer.zero_grad()
        grads = per_sample_grads(tuple(p.detach() for p in params), inputs, targets)
        sum_of_squares(list(grads))
        set_mean_gradient(list(params), list(grads))
        optimizer.step()
    return step


def loop_step(model, inputs, targets) -> Step:
    optimizer, params = sgd(model), list(model.parameters())

    def step() -> None:
        optimizer.zero_grad()
        grad_sum = [torch.zeros_like(p) for p in params]
        for i in range(len(inputs)):
            loss = per_sample_loss(model(inputs[i:i + 1]), targets[i:i + 1]).sum()
            grads = torch.autograd.grad(loss, params)
            sum_of_squares([g.unsqueeze(0) for g in grads])
            for total, g in zip(grad_sum, grads):
                total += g
        for param, total in zip(params, grad_sum):
            param.grad = total / len(inputs)
        optimizer.step()
    return step


def backpack_step(model, inputs, targets) -> Step:
    from backpack import backpack, extend
    from backpack.extensions import BatchL2Grad
    model, optimizer = extend(model), sgd(model)

    def step() -> None:
        optimizer.zero_grad()
        loss = per_sample_loss(model(inputs), targets).mean()
        with backpack(BatchL2Grad()):
            loss.backward()
        sum(p.batch_l2 for p in model.parameters() if hasattr(p, "batch_l2"))
        optimizer.step()
    return step


def opacus_step(model, inputs, targets) -> Step:
    from opacus import GradSampleModule
    wrapped = GradSampleModule(model, loss_reduction="mean")
    optimizer = sgd(wrapped)

    def step() -> None:
        wrapped.zero_grad(set_to_none=True)
        per_sample_loss(wrapped(inputs), targets).mean().backward()
        sum_of_squares([p.grad_sample for p in wrapped.parameters()])
        optimizer.step()
    return step


STEP_BUILDERS = {"plain": plain_step, "divebatch": divebatch_step, "vmap": vmap_step,
                 "loop": loop_step, "backpack": backpack_step, "opacus": opacus_step}


def installed(method: str) -> bool:
    if method not in ("backpack", "opacus"):
        return True
    try:
        __import__(method)
    except ImportError:
        return False
    return True


def note(method: str, model: nn.Module) -> str:
    has_group_norm = any(isinstance(m, nn.GroupNorm) for m in model.modules())
    return "GroupNorm params skipped" if method == "backpack" and has_group_norm else ""


# ----------------------------------------------------------------------------- measuring

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_block(step: Step, steps: int, device: torch.device, clock: Callable[[], float]) -> float:
    """Seconds per step over ``steps`` consecutive steps."""
    synchronize(device)
    started = clock()
    for _ in range(steps):
        step()
    synchronize(device)
    return (clock() - started) / steps


def measure(name: str, batch_size: int, methods: list[str], rounds: int,
            device: torch.device, clock: Callable[[], float]) -> list[dict]:
    base_model, inputs, targets = workload(name, batch_size, device)
    steps, models, rows = {}, {}, []
    for method in methods:
        if not installed(method):
            rows.append(dict(model=name, method=method, note="not installed"))
            continue
        models[method] = copy.deepcopy(base_model)
        steps[method] = STEP_BUILDERS[method](models[method], inputs, targets)
    step_counts = {}
    for method, step in steps.items():  # warm-up, and steps per timed block
        seconds = time_block(step, 1, device, clock)
        step_counts[method] = max(1, round(BLOCK_SECONDS / seconds))
    samples = {method: [] for method in steps}
    for _ in range(rounds):
        for method, step in steps.items():
            samples[method].append(time_block(step, step_counts[method], device, clock))
    memory = {method: peak_memory_bytes(step, models[method], inputs, targets, device)
              for method, step in steps.items()}
    plain_time, plain_memory = statistics.median(samples["plain"]), memory["plain"]
    for method in steps:
        seconds = statistics.median(samples[method])
        rows.append(dict(model=name, method=method, ms=1000 * seconds,
                         time_ratio=seconds / plain_time, mib=memory[method] / 2 ** 20,
                         memory_ratio=memory[method] / plain_memory,
                         note=note(method, models[method])))
    return rows


def markdown_table(rows: list[dict], batch_sizes: dict[str, int]) -> str:
    lines = ["| model | batch | method | ms / step | time vs plain | peak MiB | memory vs plain "
             "| note |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        if "ms" not in row:
            lines.append(f"| {row['model']} | {batch_sizes[row['model']]} | {row['method']} "
                         f"| | | | | {row['note']} |")
            continue
        lines.append(f"| {row['model']} | {batch_sizes[row['model']]} | {row['method']} "
                     f"| {row['ms']:.1f} | {row['time_ratio']:.2f}x | {row['mib']:.1f} "
                     f"| {row['memory_ratio']:.2f}x | {row['note']} |")
    return "\n".join(lines)


def verdicts(rows: list[dict], targets: dict[str, float]) -> list[str]:
    """One line per model: divebatch against the time and memory targets and the peers."""
    lines = []
    for name, target in targets.items():
        ours = next((r for r in rows if r["model"] == name and r["method"] == "divebatch"
                     and "ms" in r), None)
        if ours is None:
            continue
        peers = [r for r in rows if r["model"] == name and "ms" in r
                 and r["method"] not in ("plain", "divebatch")]
        slower = all(r["ms"] > ours["ms"] for r in peers)
        lines.append(
            f"{name}: time {ours['time_ratio']:.2f}x (target <= {target:.2f}x: "
            f"{'met' if ours['time_ratio'] <= target else 'MISSED'}), memory "
            f"{ours['memory_ratio']:.2f}x (target <= {MEMORY_TARGET:.2f}x: "
            f"{'met' if ours['memory_ratio'] <= MEMORY_TARGET else 'MISSED'}), faster than "
            f"{'every peer' if slower else 'NOT every peer'} ({len(peers)} measured)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--quick", action="store_true",
                        help="3 rounds, ResNet-18 at batch 32: a couple of minutes on 2 cores")
    parser.add_argument("--models", default="mlp,cnn,resnet18",
                        help="of mlp, cnn, digits_cnn, resnet18, gpt")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3/7)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time, robust to other processes on a "
                             "shared machine (use with --threads 1)")
    parser.add_argument("--resnet-batch-size", type=int, default=None,
                        help="default 32 with --quick, else --batch-size")
    args = parser.parse_args()
    device = torch.device(args.device if args.device != "auto"
                          else "cuda" if torch.cuda.is_available() else "cpu")
    rounds = args.rounds or (3 if args.quick else 7)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    resnet_batch = args.resnet_batch_size or (32 if args.quick else args.batch_size)
    methods = ["plain", *(m for m in args.methods.split(",") if m != "plain")]
    names = args.models.split(",")
    batch_sizes = {name: resnet_batch if name == "resnet18" else args.batch_size
                   for name in names}
    warnings.filterwarnings("ignore")  # peers' deprecation chatter
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{rounds} rounds, {args.clock} clock", flush=True)
    rows = []
    for name in names:
        rows += measure(name, batch_sizes[name], methods, rounds, device, clock)
        print(f"{name} done", file=sys.stderr, flush=True)
    print(markdown_table(rows, batch_sizes))
    print("\n".join(verdicts(rows, time_targets(device, resnet_batch, args.batch_size))))


if __name__ == "__main__":
    main()
