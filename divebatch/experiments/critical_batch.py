"""The measured critical batch size of a stored run, at several points of its training.

From each kept checkpoint (`RunConfig.keep_checkpoints`), branch short continuations at batch
sizes B0 * 2^k up to B_max (`experiments.branching`), each with the run's LR rule, and count
the steps S(B) and examples E(B) = S(B) * B each needs to reach the same loss decrease:

1. the *reference*: the smallest batch trains `budget_epochs` epochs' worth of examples from
   the checkpoint; the training loss it settles at (on the fixed evaluation subset: the mean
   of its last quarter of evaluations) is the target; where that is not below the
   checkpoint's loss (the smallest batch is at its noise floor), the epoch has no target;
2. every batch size trains from the same checkpoint until it reaches that target, for at most
   `max_steps_factor` times the reference's steps (a larger batch should need fewer steps;
   one that does not reach it by then counts as not reaching it);
3. McCandlish's model S = S_min (1 + B_crit / B) is fitted to the S(B) that reached it
   (`critical_fit`): the critical batch size is B_crit = E_min / S_min, the batch size at which
   a branch needs twice the minimal steps and twice the minimal examples.

`lr_rule="tuned"` tries each batch size at the run's rule times each of TUNED_LR_FACTORS and
keeps the fewest steps (McCandlish's protocol, which tunes the step size per batch size; it
costs up to that many times more, less where a slower LR is abandoned once it cannot win).
Beside it, the gradient noise scale B_simple = m * Delta - 1 of the evaluation subset's m
per-sample gradients at the checkpoint (the meter's two sums).

Branches are seeded from (run seed, epoch, batch size, LR factor): a measurement repeats
exactly on one device. The work is a list of rows, one per (epoch, batch size), so a stopped
measurement resumes where it stopped (`rows` done are skipped).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

from divebatch.config import RunConfig
from divebatch.experiments.branching import BranchPoint, branch_seed
from divebatch.experiments.critical_fit import (batch_size_grid, fit_critical_batch,
                                                noise_scale, steps_to_target)

LR_RULES = ("run", "tuned")
TUNED_LR_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
START = 0  # the row "batch size" of a checkpoint's own facts (loss, noise scale, target)


@dataclass
class CriticalBatchSettings:
    epochs: tuple[int, ...] = ()        # checkpoints to branch from; () = every kept one
    batch_sizes: tuple[int, ...] = ()   # () = B0 * 2^k up to B_max (the run's)
    lr_rule: str = "run"                # run: the run's lr_scaling; tuned: best of a grid
    budget_epochs: float = 1.0          # examples the reference trains, in epochs
    decrease_fraction: float = 0.5      # the target: this fraction of the reference's decrease
    min_decrease: float = 0.01          # a reference lowers the loss if by this fraction of it
    max_steps_factor: float = 2.0       # a branch's step limit, times the reference's steps
    eval_points: int = 32               # loss evaluations over the reference's budget
    repeats: int = 1                    # branches per (batch size, LR), differently seeded;
                                        # S(B) is their mean (each must reach the target)
    eval_samples: int = 2048            # training samples the loss is evaluated on

    def to_dict(self) -> dict:
        return {**asdict(self), "epochs": list(self.epochs),
                "batch_sizes": list(self.batch_sizes)}

    @classmethod
    def from_dict(cls, values: dict) -> "CriticalBatchSettings":
        return cls(**{**values, "epochs": tuple(values.get("epochs", ())),
                      "batch_sizes": tuple(values.get("batch_sizes", ()))})


def check_settings(settings: CriticalBatchSettings, config: RunConfig,
                   kept: list[int], n_train: int | None) -> None:
    """ValueError with one line naming the first bad field and its allowed values."""
    if not kept:
        raise ValueError("epochs: the run kept no checkpoint to branch from (keep_checkpoints "
                         "was 0, or it ended before its first one); train it again with "
                         "--keep-checkpoints >= 1")
    missing = [epoch for epoch in settings.epochs if epoch not in kept]
    if missing:
        raise ValueError(f"epochs should be among the kept checkpoints "
                         f"{', '.join(map(str, kept))}, but got epochs={missing[0]}")
    largest = min(config.max_batch_size, n_train or config.max_batch_size)
    bad = [b for b in settings.batch_sizes if not 1 <= b <= largest]
    if bad:
        samples = " and its training samples" if largest != config.max_batch_size else ""
        raise ValueError(f"batch_sizes should be ints >= 1 and <= {largest} (B_max of the run"
                         f"{samples}), but got batch_sizes={bad[0]}")
    if settings.lr_rule not in LR_RULES:
        raise ValueError(f"lr_rule should be one of {', '.join(LR_RULES)}, but got "
                         f"lr_rule={settings.lr_rule!r}")
    if not 0.0 <= settings.min_decrease < 1.0:
        raise ValueError(f"min_decrease should be a float >= 0 and < 1, but got "
                         f"min_decrease={settings.min_decrease}")
    if not 0.0 < settings.decrease_fraction <= 1.0:
        raise ValueError(f"decrease_fraction should be a float > 0 and <= 1, but got "
                         f"decrease_fraction={settings.decrease_fraction}")
    for name, low in (("budget_epochs", 0.0), ("max_steps_factor", 1.0)):
        if not getattr(settings, name) > low:
            raise ValueError(f"{name} should be a float > {low:g}, but got "
                             f"{name}={getattr(settings, name)}")
    for name in ("eval_points", "eval_samples", "repeats"):
        if not getattr(settings, name) >= 1:
            raise ValueError(f"{name} should be an int >= 1, but got "
                             f"{name}={getattr(settings, name)}")


def planned_batch_sizes(settings: CriticalBatchSettings, config: RunConfig,
                        n_train: int | None = None) -> list[int]:
    """The batch sizes branched to, smallest first."""
    if settings.batch_sizes:
        return sorted(set(settings.batch_sizes))
    smallest = min(config.batch_size, config.max_batch_size)
    largest = min(config.max_batch_size, n_train or config.max_batch_size)
    return batch_size_grid(smallest, max(smallest, largest))


def planned_epochs(settings: CriticalBatchSettings, kept: list[int]) -> list[int]:
    return sorted(set(settings.epochs or kept))


@dataclass
class CheckpointWork:
    """The rows still to measure at one checkpoint, and how to store each as it is done."""
    point: BranchPoint
    settings: CriticalBatchSettings
    sizes: list[int]
    done: dict[int, dict] = field(default_factory=dict)  # batch size (START too) -> row
    on_row: Callable[[int, dict], None] = lambda batch_size, row: None
    should_stop: Callable[[], bool] = lambda: False

    def run(self) -> bool:
        """Measure the missing rows; False if stopped before the end."""
        start = self.done.get(START) or self._start()
        if start is None:
            return False
        if start["target"] is None:
            return True  # the loss did not fall: nothing to branch to
        for batch_size in self.sizes:
            if batch_size not in self.done:
                row = self._measure(batch_size, start)
                if row is None:
                    return False
                self._store(batch_size, row)
        return True

    def _store(self, batch_size: int, row: dict) -> None:
        self.done[batch_size] = row
        self.on_row(batch_size, row)

    def _start(self) -> dict | None:
        """The checkpoint's facts and the reference branch that sets the target: the
        smallest batch size whose budget lowers the loss (smaller ones, at their noise floor
        with this LR, are stored as never reaching it)."""
        point, settings = self.point, self.settings
        budget = settings.budget_epochs * point.n_train
        diversity = point.diversity()
        floored = []
        for size in self.sizes:
            reference_steps = max(1, math.ceil(budget / size))
            reference = point.branch(size, lr_factor=1.0, max_steps=reference_steps,
                                     target=-math.inf, eval_every=budget / settings.eval_points,
                                     seed=self._seed(size, 1.0), should_stop=self.should_stop)
            if reference is None:
                return None
            start_loss, end_loss = reference.curve[0][1], _settled_loss(reference.curve)
            fell = math.isfinite(end_loss) and end_loss < start_loss * (1 - settings.min_decrease)
            if fell:
                break
            floored.append(reference)
        row = {"epoch": point.epoch, "loss": start_loss, "diversity": diversity,
               "noise_scale": noise_scale(len(point.eval_indices), diversity),
               "eval_samples": len(point.eval_indices), "batch_size": point.batch_size,
               "lr": point.group_lrs[0], "n_train": point.n_train,
               "target": start_loss - settings.decrease_fraction * (start_loss - end_loss)
               if fell else None, "reference_batch": size if fell else None,
               "reference_steps": reference_steps, "budget_examples": budget}
        self._store(START, row)
        for branch in floored:
            self._store(branch.batch_size, {**_branch_row(branch, -math.inf, branch.seconds),
                                            "floor": True})
        if fell and settings.lr_rule == "run" and settings.repeats == 1:
            self._store(size, _branch_row(reference, row["target"], reference.seconds))
        return row

    def _measure(self, batch_size: int, start: dict) -> dict | None:
        """The branch at `batch_size` (with the run's rule, or the best of the LR grid)."""
        settings = self.settings
        limit = math.ceil(settings.max_steps_factor * start["reference_steps"])
        factors = TUNED_LR_FACTORS if settings.lr_rule == "tuned" else (1.0,)
        best, seconds, tried = None, 0.0, []
        for factor in factors:
            steps_cap = limit if best is None else min(limit, math.ceil(best[0]))
            branches = []
            for repeat in range(settings.repeats):
                branch = self.point.branch(
                    batch_size, lr_factor=factor, max_steps=steps_cap, target=start["target"],
                    eval_every=start["budget_examples"] / settings.eval_points,
                    seed=self._seed(batch_size, factor, repeat), should_stop=self.should_stop)
                if branch is None:
                    return None
                seconds += branch.seconds
                branches.append(branch)
            steps = _mean_steps(branches, start["target"])
            tried.append({"lr_factor": factor, "steps_to_target": steps,
                          "diverged": any(branch.diverged for branch in branches)})
            if steps is not None and (best is None or steps < best[0]):
                best = (steps, branches[0])
        chosen_steps, chosen = best if best else (None, branches[0])
        return {**_branch_row(chosen, start["target"], seconds, chosen_steps), "tried": tried}

    def _seed(self, batch_size: int, lr_factor: float, repeat: int = 0) -> int:
        return branch_seed(self.point.config.seed, self.point.epoch, batch_size,
                           round(lr_factor * 1000), repeat)


def _settled_loss(curve: list[tuple[int, float]]) -> float:
    """The level a reference branch settles at: the mean loss of the last quarter of its
    evaluations (at least the last one), less noisy than the last evaluation alone."""
    losses = [loss for _, loss in curve[1:]]
    tail = losses[-max(1, len(losses) // 4):]
    return sum(tail) / len(tail)


def _mean_steps(branches: list, target: float) -> float | None:
    """Mean steps to the target of repeated branches; None if one did not reach it."""
    steps = [steps_to_target(branch.curve, target) for branch in branches]
    return None if None in steps else sum(steps) / len(steps)


def _branch_row(branch, target: float, seconds: float, steps: float | None = None) -> dict:
    """A stored branch: its steps to the target (`steps` when given: a mean over repeats),
    examples, LR and loss curve (the first repeat's)."""
    steps = steps_to_target(branch.curve, target) if steps is None else steps
    return {"batch_size": branch.batch_size, "lr": branch.lr, "lr_factor": branch.lr_factor,
            "steps_to_target": steps,
            "examples_to_target": None if steps is None else steps * branch.batch_size,
            "steps": branch.steps, "diverged": branch.diverged, "seconds": seconds,
            "curve": [list(point) for point in branch.curve]}


def summarize(rows: list[dict]) -> list[dict]:
    """Per checkpoint epoch: its facts (loss, noise scale, target), the branches' S(B) and
    E(B), and McCandlish's fit (`fit`: CriticalFit as a dict, None with < 2 reaching
    branches; `critical_batch`: its B_crit). `rows` as stored: dicts with epoch,
    batch_size (START for the checkpoint's facts) and data."""
    by_epoch: dict[int, dict] = {}
    for row in rows:
        entry = by_epoch.setdefault(row["epoch"], {"epoch": row["epoch"], "start": None,
                                                   "branches": []})
        if row["batch_size"] == START:
            entry["start"] = row["data"]
        else:
            entry["branches"].append(row["data"])
    summaries = []
    for epoch in sorted(by_epoch):
        entry = by_epoch[epoch]
        branches = sorted(entry["branches"], key=lambda data: data["batch_size"])
        fit = fit_critical_batch([b["batch_size"] for b in branches],
                                 [b["steps_to_target"] for b in branches])
        start = entry["start"] or {}
        summaries.append({"epoch": epoch, **{k: start.get(k) for k in
                                             ("loss", "target", "noise_scale", "diversity",
                                              "batch_size", "lr", "n_train")},
                          "branches": branches, "fit": fit.to_dict() if fit else None,
                          "critical_batch": fit.critical_batch if fit else None,
                          "bound": fit.bound if fit else None})
    return summaries
