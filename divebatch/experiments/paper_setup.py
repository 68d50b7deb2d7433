"""The paper's setup at a scale this machine can run: the methods compared, our benchmarks
at three scales, and the paper's own numbers.

DiveBatch against SGD at the small batch B_0, SGD at the large batch B_max and AdaBatch, each
with and without linear LR scaling, on benchmarks that run anywhere (synthetic convex,
synthetic non-convex, scikit-learn's digits) and on scaled-down CIFAR-10/100 and
Tiny-ImageNet where their files and a GPU are present (`availability`).

>>> method_config(BENCHMARKS["convex"].scales["tiny"], "sgd_large_linear", 0).batch_size
128
"""

from __future__ import annotations

from dataclasses import dataclass, field

from divebatch.config import RunConfig

SCALES = ("tiny", "quick", "full")  # tiny: a smoke test in seconds, numbers meaningless
DEFAULT_SEEDS = {"tiny": 1, "quick": 3, "full": 5}

# DESIGN.md section 1: time to within 1 point of own final accuracy (s), final accuracy (%),
# no LR rescaling; ResNet-18, B_0 = 128 (Tiny-ImageNet 256), B_max = 2048, 200 epochs.
PAPER = {
    "CIFAR-10": {"sgd_small": (3189, 95.5), "adabatch": (1361, 94.9), "divebatch": (638, 93.8)},
    "CIFAR-100": {"sgd_small": (2808, 74.9), "adabatch": (1263, 73.0),
                  "divebatch": (1192, 71.8)},
    "Tiny-ImageNet": {"sgd_small": (9703, 55.5), "adabatch": (7146, 53.7),
                      "divebatch": (6478, 51.7)},
}
PAPER_BASELINE = {"CIFAR-10": "SGD B=128", "CIFAR-100": "SGD B=128",
                  "Tiny-ImageNet": "SGD B=256"}

METHODS = {  # key -> label; "_linear": LR multiplied by B_new / B_old on every batch change
    "sgd_small": "SGD, small batch B0", "sgd_large": "SGD, large batch B_max",
    "sgd_large_linear": "SGD, large batch, linear LR", "adabatch": "AdaBatch",
    "adabatch_linear": "AdaBatch, linear LR", "divebatch": "DiveBatch",
    "divebatch_linear": "DiveBatch, linear LR"}

# Shared by every benchmark: the paper's delta, cosine schedule, and diversity measured only
# where the method needs it (the runs are timed).
COMMON = dict(delta=0.1, schedule="cosine", diversity_every_epoch=False)


@dataclass(frozen=True)
class Benchmark:
    key: str
    title: str
    paper: str | None                    # the paper's dataset it is, if any
    scales: dict = field(default_factory=dict)  # scale -> RunConfig fields
    needs_gpu: bool = False


def _scales(problem: str, sizes: dict, **fields) -> dict:
    """tiny / quick / full settings: B_max / B_0 = 16 as in the paper (2048 / 128) and R
    about a tenth of the epochs (paper: 20 of 200). `sizes`: per-scale problem sizes."""
    schedule = {"tiny": dict(epochs=3, batch_size=8, max_batch_size=128, resize_every=1),
                "quick": dict(epochs=20, batch_size=32, max_batch_size=512, resize_every=2),
                "full": dict(epochs=50, batch_size=32, max_batch_size=512, resize_every=5)}
    return {scale: {**COMMON, "problem": problem, **steps, **fields, **sizes.get(scale, {})}
            for scale, steps in schedule.items()}


def _image(problem: str) -> dict:
    """The paper's recipe (ResNet-18, B_0 128 or 256, B_max 2048) on fewer images and
    epochs: `presets.scaled_down` for full, a third of it for quick."""
    from divebatch.presets import scaled_down
    full = {**scaled_down(problem), "diversity_every_epoch": False}
    quick = {**full, "epochs": 10, "resize_every": 2, "n_samples": 5000}
    return {"tiny": quick, "quick": quick, "full": full}


SYNTHETIC_SIZES = {"tiny": {"n_samples": 300, "dim": 8}, "quick": {"n_samples": 3000},
                   "full": {"n_samples": 12000}}

BENCHMARKS = {b.key: b for b in (
    Benchmark("convex", "synthetic convex: logistic regression", None,
              _scales("logistic", SYNTHETIC_SIZES, dim=32, lr=0.05, momentum=0.0)),
    Benchmark("nonconvex", "synthetic non-convex: 4-class MLP", None,
              _scales("classification", SYNTHETIC_SIZES, model="mlp", hidden=64, lr=0.05,
                      momentum=0.9)),
    Benchmark("digits", "digits 8x8, small CNN", None,
              _scales("digits", {}, model="cnn", lr=0.05, momentum=0.9)),
    Benchmark("cifar10", "CIFAR-10, ResNet-18 scaled down", "CIFAR-10", _image("cifar10"),
              needs_gpu=True),
    Benchmark("cifar100", "CIFAR-100, ResNet-18 scaled down", "CIFAR-100",
              _image("cifar100"), needs_gpu=True),
    Benchmark("tiny_imagenet", "Tiny-ImageNet, ResNet-18 scaled down", "Tiny-ImageNet",
              _image("tiny_imagenet"), needs_gpu=True),
)}
DEFAULT_BENCHMARKS = tuple(BENCHMARKS)


def method_config(fields: dict, method: str, seed: int) -> RunConfig:
    """The benchmark's fields run with one of METHODS."""
    values = {**fields, "seed": seed, "lr_scaling": "none"}
    small, large = fields["batch_size"], fields["max_batch_size"]
    if method == "sgd_small":
        values |= {"method": "sgd"}
    elif method.startswith("sgd_large"):
        values |= {"method": "sgd", "batch_size": large}
        if method.endswith("_linear"):
            values["lr"] = fields.get("lr", RunConfig.lr) * large / small
    else:
        values |= {"method": method.removesuffix("_linear"),
                   "lr_scaling": "linear" if method.endswith("_linear") else "none"}
    values["name"] = f"{METHODS[method]} seed={seed}"
    return RunConfig.from_dict(values)


def availability(benchmark: Benchmark, scale: str) -> str | None:
    """None when the benchmark can run here, else a one-line note saying why not."""
    if benchmark.needs_gpu:
        import torch
        if not torch.cuda.is_available():
            return "needs a CUDA GPU to finish in reasonable time, and this machine has none"
    from divebatch.data.problems import check_available
    try:
        check_available(RunConfig.from_dict(benchmark.scales[scale]))
    except ValueError as error:
        return str(error)
    return None


def paper_speedup(dataset: str, method: str) -> float:
    return PAPER[dataset]["sgd_small"][0] / PAPER[dataset][method][0]


def paper_change(dataset: str, method: str) -> float:
    """Final accuracy minus SGD small batch's, in points."""
    return PAPER[dataset][method][1] - PAPER[dataset]["sgd_small"][1]
