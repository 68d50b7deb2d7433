"""Ready-made setups: teaching presets, the paper's configurations, and method variants.

A preset is data: a title, what to look at, and the RunConfig fields that differ from the
defaults. The dashboard lists them; `preset.config()` builds the RunConfig.

>>> PRESETS["convex"].config().problem
'least_squares'
>>> [label for label, _ in race_configs(PRESETS["digits_race"].config())][0]
'DiveBatch'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from divebatch.config import IMAGE_DATASETS, RunConfig, cap_follows_sgd_batch, method_uses

SYNTHETIC_PROBLEMS = ("least_squares", "logistic", "sine", "classification")
IMAGE_PROBLEMS = ("digits", *IMAGE_DATASETS)  # the Image lab's problems

# How the dashboard names a method. "sgd_large" is SGD run at batch_size = max_batch_size.
VARIANTS = {"divebatch": "DiveBatch", "adabatch": "AdaBatch",
            "sgd_small": "SGD, small batch", "sgd_large": "SGD, large batch"}


@dataclass(frozen=True)
class Preset:
    key: str
    title: str
    lesson: str                                   # what to look at once it runs
    fields: dict = field(default_factory=dict)    # RunConfig fields that differ from defaults

    def config(self) -> RunConfig:
        return RunConfig(**self.fields)


def paper_config(problem: str) -> dict:
    """The paper's setting (Chen, Wang, Sundaram 2025): ResNet-18, SGD momentum 0.9,
    weight decay 5e-4, lr 0.1 cosine, 200 epochs, B_max 2048, R = 20."""
    tiny = problem == "tiny_imagenet"
    return dict(problem=problem, model="resnet18", method="divebatch", epochs=200,
                batch_size=256 if tiny else 128, max_batch_size=2048, resize_every=20,
                delta=0.1 if problem == "cifar10" else 0.01, lr=0.1, schedule="cosine",
                momentum=0.9, weight_decay=5e-4, lr_scaling="none")


def scaled_down(problem: str) -> dict:
    """The paper's setting shrunk to finish in minutes on one GPU: 30 epochs, R = 5 and
    at most 10,000 training images."""
    return {**paper_config(problem), "epochs": 30, "resize_every": 5, "n_samples": 10_000}


_PRESETS = (
    Preset("convex", "Convex: diversity rises as the loss falls",
           "Least squares with a linear model. Near the optimum the per-sample gradients "
           "point in many directions while their mean shrinks, so the diversity Δ̂ (and "
           "Yin's bound n·Δ̂) grows and DiveBatch raises the batch size.",
           dict(problem="least_squares", n_samples=4000, dim=100, method="divebatch",
                epochs=60, batch_size=8, max_batch_size=2048, delta=0.1, resize_every=1,
                lr=0.02, momentum=0.0)),
    Preset("logistic", "Convex classification: logistic regression",
           "A logistic model on noisy labels: the batch grows slowly and steadily with the "
           "diversity.",
           dict(problem="logistic", method="divebatch", epochs=20, batch_size=16,
                max_batch_size=2048, delta=0.1, resize_every=1, lr=0.5, momentum=0.0)),
    Preset("nonconvex_mlp", "Non-convex: an MLP fits a sine",
           "A two-layer MLP on y = sin(Ax). The diversity is noisy from epoch to epoch; with "
           "R = 2 the batch only moves every second epoch and never shrinks.",
           dict(problem="sine", model="mlp", method="divebatch", epochs=40, batch_size=16,
                max_batch_size=1024, delta=0.1, resize_every=2, lr=0.05, momentum=0.9)),
    Preset("classification_race", "Race on a 4-class problem",
           "Press Race: DiveBatch, AdaBatch and SGD at the small and the large batch on the "
           "same data and seed. Compare accuracy against training time, not epochs: SGD at "
           "B0 = 16 is accurate but slow; DiveBatch starts at 16 and grows every 3 epochs as "
           "δ·n·Δ̂ rises, so it reaches the common target sooner. On this CPU the large batch "
           "is faster still: a small MLP gains a lot from fewer, bigger steps.",
           dict(problem="classification", model="mlp", method="divebatch", epochs=30,
                batch_size=16, max_batch_size=1024, delta=0.02, resize_every=3, lr=0.05,
                momentum=0.9, schedule="cosine")),
    Preset("tradeoff_race", "Race where the large batch costs accuracy",
           "Press Race and compare the ends of the accuracy curves. SGD at B_max = 512 takes "
           "16x fewer steps per epoch, each with 16x less learning rate per example (the "
           "LR / B chart), and ends about 6 points below SGD at B0 = 32. DiveBatch starts at "
           "B0 and grows every 3 epochs as δ·n·Δ̂ rises (to about 250-400): it ends within "
           "half a point of SGD at B0 and reaches SGD at B0's final accuracy minus 1 point in "
           "about 2.8x fewer optimizer steps. AdaBatch, doubling every 3 epochs, does about as "
           "well here. The common target is set by the large batch, so every run reaches it "
           "early: judge this race by the small batch's level instead.",
           dict(problem="classification", model="mlp", method="divebatch", n_samples=6000,
                val_fraction=0.5, hidden=64, epochs=20, batch_size=32, max_batch_size=512,
                delta=0.03, resize_every=3, lr=0.05, momentum=0.9, schedule="cosine")),
    Preset("convex_race", "Race where DiveBatch does not help: logistic regression",
           "Press Race and watch the batch-size chart: it stays flat at B0 = 32. On this "
           "convex problem the per-sample gradients largely agree, so the diversity Δ̂ stays "
           "small and the proposal δ·n·Δ̂ (dotted) stays below B0: DiveBatch never grows the "
           "batch. It trains exactly like SGD at B0, and pays a little extra for measuring "
           "Δ̂ in its resize epochs, so it cannot be faster. Adaptive batches help only where "
           "the gradients disagree enough for a bigger batch to be worth its cost.",
           dict(problem="logistic", model="linear", method="divebatch", n_samples=3000, dim=32,
                epochs=20, batch_size=32, max_batch_size=512, delta=0.1, resize_every=2,
                lr=0.05, momentum=0.0, schedule="cosine")),
    Preset("digits_race", "Digits race (real images, CPU friendly)",
           "Press Race: the four methods train a small CNN on scikit-learn's 8x8 digits. "
           "DiveBatch starts at B0 = 16 and grows at every resize (R = 2) as δ·n·Δ̂ rises. "
           "Every method is near 97 % within 3-4 epochs, before the batch has grown much, so "
           "here DiveBatch is at best a little sooner than SGD at B0 at the common target.",
           dict(problem="digits", model="cnn", method="divebatch", epochs=20, batch_size=16,
                max_batch_size=512, delta=0.05, resize_every=2, lr=0.05, momentum=0.9,
                schedule="cosine")),
    Preset("cifar10_small", "Paper CIFAR-10, scaled down (GPU, minutes)",
           "The paper's CIFAR-10 recipe on 10,000 images for 30 epochs with R = 5.",
           scaled_down("cifar10")),
    Preset("cifar100_small", "Paper CIFAR-100, scaled down (GPU, minutes)",
           "The paper's CIFAR-100 recipe (delta 0.01) on 10,000 images for 30 epochs.",
           scaled_down("cifar100")),
    Preset("tiny_imagenet_small", "Paper Tiny-ImageNet, scaled down (GPU, minutes)",
           "The paper's Tiny-ImageNet recipe (B0 = 256, delta 0.01) on 10,000 images for "
           "30 epochs.",
           scaled_down("tiny_imagenet")),
    Preset("cifar10_paper", "Paper CIFAR-10 (GPU, hours)",
           "The paper's full setting: ResNet-18, 200 epochs, B0 128, B_max 2048, R 20, "
           "delta 0.1.", paper_config("cifar10")),
    Preset("cifar100_paper", "Paper CIFAR-100 (GPU, hours)",
           "The paper's full setting with delta 0.01.", paper_config("cifar100")),
    Preset("tiny_imagenet_paper", "Paper Tiny-ImageNet (GPU, hours)",
           "The paper's full setting with B0 256 and delta 0.01.",
           paper_config("tiny_imagenet")),
)
PRESETS = {preset.key: preset for preset in _PRESETS}


def presets_for(problems: tuple[str, ...]) -> list[Preset]:
    """The presets whose problem is one of `problems`, in teaching order."""
    return [p for p in _PRESETS if p.fields.get("problem", RunConfig.problem) in problems]


def variant_of(config: RunConfig | dict) -> str:
    """'divebatch', 'adabatch', 'sgd_small' or 'sgd_large' (SGD at its maximum batch)."""
    values = config if isinstance(config, dict) else config.to_dict()
    if values.get("method") != "sgd":
        return values.get("method", "")
    large = values.get("batch_size") == values.get("max_batch_size")
    return "sgd_large" if large else "sgd_small"


def with_variant(config: RunConfig, variant: str, small_batch: int | None = None) -> RunConfig:
    """`config` run with one of VARIANTS; SGD large uses batch_size = max_batch_size, SGD
    small uses `small_batch` (default: config.batch_size), B_max following a larger one (SGD
    small never reads B_max: the forms grey it out)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant should be one of {', '.join(VARIANTS)}, "
                         f"but got variant={variant!r}")
    small = small_batch or config.batch_size
    if variant == "sgd_large":
        return config.replace(method="sgd", batch_size=config.max_batch_size)
    if variant == "sgd_small":
        return cap_follows_sgd_batch(config.replace(method="sgd", batch_size=small),
                                     cap_given=False)
    return config.replace(method=variant, batch_size=small)


def variant_uses(variant: str, name: str) -> bool:
    """Whether a run of `variant` reads the field `name` (SGD large: max_batch_size is its B)."""
    if variant == "sgd_large" and name == "max_batch_size":
        return True
    return method_uses(method_of_variant(variant), name)


def method_of_variant(variant: str) -> str:
    return "sgd" if variant.startswith("sgd") else variant


# Race order: the paper's baseline (SGD at the small batch) comes first in comparisons.
RACE_ORDER = ("sgd_small", "divebatch", "adabatch", "sgd_large")


def race_configs(config: RunConfig) -> list[tuple[str, RunConfig]]:
    """DiveBatch, SGD small, SGD large and AdaBatch on the same problem, seed and budget
    (the order they are started in), each labelled."""
    start_order = ("divebatch", "sgd_small", "sgd_large", "adabatch")
    return [(VARIANTS[v], with_variant(config, v)) for v in start_order]


def race_sorted(runs: list[dict]) -> list[dict]:
    """Runs ordered for a comparison table: SGD small first (the speed-up baseline)."""
    rank = {variant: i for i, variant in enumerate(RACE_ORDER)}
    return sorted(runs, key=lambda run: (rank.get(variant_of(run["config"]), 9), run["id"]))
