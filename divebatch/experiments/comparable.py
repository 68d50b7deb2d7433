"""Which runs compare: runs of one problem and dataset (`data_key`), in groups
(`group_by_data`) with short names (`group_names`); the chance level of a classification
problem and whether a target is near it. `divebatch.experiments.verdicts` re-exports them."""

from __future__ import annotations

import dataclasses

from divebatch.config import IMAGE_DATASETS, SYNTHETIC_DEFAULTS, RunConfig

# The fields that decide a problem's data, beside the problem (the seed aside: every seed
# draws from the same distribution, and the paper's comparisons average over seeds).
DATA_FIELDS = {**{name: ("n_samples", "dim", "noise", "val_fraction")
                  for name in SYNTHETIC_DEFAULTS},
               "digits": ("val_fraction",), **{name: ("n_samples",) for name in IMAGE_DATASETS}}
# Classes of each classification problem (regression problems have no accuracy); a test
# checks them against the data.
CLASSES = {"logistic": 2, "classification": 4, "digits": 10, "cifar10": 10, "cifar100": 100,
           "tiny_imagenet": 200}
# A target less than this share of the way from chance (1 / classes) to 100 % is near chance:
# 60 % on 2 classes, 40 % on 4, 28 % on 10.
NEAR_CHANCE_SHARE = 0.2
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def data_key(config: dict) -> tuple:
    """(problem, (field, value), ...): equal keys train on the same problem and data."""
    problem = config.get("problem", _DEFAULTS["problem"])
    values = []
    for name in DATA_FIELDS.get(problem, ()):
        value = config.get(name, _DEFAULTS[name])
        if name in ("n_samples", "dim") and not value and problem in SYNTHETIC_DEFAULTS:
            value = SYNTHETIC_DEFAULTS[problem][name == "dim"]  # 0 means the default
        values.append((name, value))
    return (problem, *values)


def group_by_data(runs: list[dict]) -> list[list[dict]]:
    """The runs in groups of one problem and dataset, in order of first appearance."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(data_key(run.get("config") or {}), []).append(run)
    return list(groups.values())


def group_names(groups: list[list[dict]]) -> list[str]:
    """A short name per group: its problem, and the data fields in which groups of the same
    problem differ, e.g. 'classification (noise=0.3)'."""
    keys = [data_key(group[0].get("config") or {}) for group in groups]
    names = []
    for key in keys:
        same_problem = [k for k in keys if k[0] == key[0]]
        differ = [f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                  for i, (name, value) in enumerate(key[1:], start=1)
                  if len({k[i] for k in same_problem}) > 1]
        names.append(key[0] + (f" ({', '.join(differ)})" if differ else ""))
    return names


def chance_level(problem: str | None) -> float | None:
    """Accuracy of guessing among equally likely classes; None for regression."""
    classes = CLASSES.get(problem or "")
    return 1.0 / classes if classes else None


def near_chance(target: float | None, problem: str | None) -> bool:
    chance = chance_level(problem)
    return None not in (target, chance) and target < chance + NEAR_CHANCE_SHARE * (1 - chance)
