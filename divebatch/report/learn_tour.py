"""The guided tour of the Learn page: the lab tour's ideas on the page's own toy problem,
one figure of the page at a time, each step's moment found on the page's gradient-descent
path (the first step whose diversity rose while the loss fell, the first that grew the
batch, the one that reached B_max), never a fixed step. A step the path never reaches is
left out. Its last step sends the reader to the lab's tour on a real run.

Its state in the store is the lab tour's kind: the step shown, stamped at each step change
(`tour.moved_to`), and the time the tour started (`started_at`, which tells one tour from
the next); it is over for a page that took no part in it as the lab's is (`is_over`).
"""

from __future__ import annotations

from dataclasses import dataclass

from divebatch.report.learn import PointSummary
from divebatch.report.learn_noise import NoiseScales
from divebatch.report import tour
from divebatch.report.tour import Step

PAGE = "learn"  # the tour's key in the store, and the prefix of the page's chart keys
# key: (title, the figure it outlines, by its key after "learn_")
STEPS = {
    "pulls": ("Each sample pulls its own way", "contour"),
    "rises": ("Diversity rises as the loss falls", "path_chart"),
    "grows": ("The bound crosses the batch size: the batch grows", "batch_chart"),
    "cap": ("The cap at B_max", "batch_chart"),
    "critical": ("Where a bigger batch stops being free", "critical_chart"),
}


def started() -> dict:
    """The state of a new tour: on its first step, stamped with the time it started."""
    return tour.moved_to({"started_at": tour.clock()}, 0)


def shown_index(state: dict, steps: list[Step]) -> int:
    """The step a page with `steps` shows for `state` (its last if the index is past it)."""
    return min(int(state["index"]), len(steps) - 1)


def is_over(state: dict, steps: list[Step]) -> bool:
    """Whether the tour of `state` is over for a page with `steps` that took no part in it:
    the page would show its last step (the lab's tour link, Next disabled), or the tour has
    not moved for tour.STALE_AFTER_S (`tour.is_over`)."""
    return tour.is_over(state, tour.at_last_step(steps, shown_index(state, steps), True))


@dataclass(frozen=True)
class Rule:
    """DiveBatch's rule as the page sets it, and the batch sizes it gave along the path
    (one per step of it, as learn.batch_sizes_along returns them)."""
    delta: float
    b_old: int
    b_max: int
    batches: list[int]


def learn_steps(point: PointSummary, n: int, along: dict[str, list[float]],
                rule: Rule | None, scales: NoiseScales) -> list[Step]:
    """The tour's steps for the page's numbers: `point` at w, `along` the path's step,
    diversity, yin_bound and loss lists, `rule` None when the page's rule is invalid (its
    two steps are left out)."""
    steps = [_step("pulls", 0, _pulls_text(point, n), "At w, on the outlined plot.")]
    rises = _rises_at(along)
    if rises is not None:
        steps.append(_step("rises", rises, _rises_text(along, rises), _on_path(rises)))
    grows = _grows_at(rule) if rule else None
    if grows is not None:
        steps.append(_step("grows", grows, _grows_text(along, rule, n, grows), _on_path(grows)))
        cap = next((i for i, b in enumerate(rule.batches) if i >= grows and b >= rule.b_max),
                   None)
        if cap is not None:
            steps.append(_step("cap", cap, _cap_text(rule, cap), _on_path(cap)))
    steps.append(_step("critical", 0, _critical_text(scales),
                       "At w, on the outlined chart."))
    return steps


def _step(key: str, moment: int, text: str, caption: str) -> Step:
    title, element = STEPS[key]
    return Step(key, title, element, moment, text, caption)


def _on_path(moment: int) -> str:
    return f"Step {moment} of gradient descent, on the outlined chart."


def _rises_at(along: dict) -> int | None:
    """The first step whose diversity is above the start's while the loss is below it."""
    first_diversity, first_loss = along["diversity"][0], along["loss"][0]
    return next((step for step, diversity, loss in zip(along["step"], along["diversity"],
                                                        along["loss"])
                 if diversity > first_diversity and loss < first_loss), None)


def _grows_at(rule: Rule) -> int | None:
    return next((i for i, b in enumerate(rule.batches) if b > rule.b_old), None)


def _pulls_text(point: PointSummary, n: int) -> str:
    return (f"The {n} thin arrows are the samples' own pulls on w; their disagreement is the "
            f"diversity Δ = {point.diversity:.3g} (1/n = {1 / n:.3g} if all agreed). Yin's "
            f"bound n·Δ = {point.yin_bound:.3g}: batches up to about that size still pay.")


def _rises_text(along: dict, step: int) -> str:
    return (f"Along gradient descent from w, by step {step} the loss fell from "
            f"{along['loss'][0]:.3g} to {along['loss'][step]:.3g} and Δ rose from "
            f"{along['diversity'][0]:.3g} to {along['diversity'][step]:.3g}: near the optimum "
            f"the mean pull shrinks, the single ones do not.")


def _grows_text(along: dict, rule: Rule, n: int, step: int) -> str:
    proposal = rule.delta * n * along["diversity"][step]
    before = rule.batches[step - 1] if step else rule.b_old
    return (f"At step {step}, δ·n·Δ = {rule.delta:g} × {n} × {along['diversity'][step]:.3g} "
            f"= {proposal:.3g} passed the batch size {before}, so the rule grew it to "
            f"{rule.batches[step]}. It never shrinks.")


def _cap_text(rule: Rule, step: int) -> str:
    return (f"At step {step} the batch reached B_max = {rule.b_max}; the bound may keep "
            f"rising, but the batch stays there.")


def _critical_text(scales: NoiseScales) -> str:
    return (f"At w the critical batch size is B_noise = {scales.b_noise:.3g} (B_simple = "
            f"{scales.b_simple:.3g}): below it a doubled batch nearly halves the steps, above "
            f"it the steps hardly fall. The Synthetic lab's tour shows all this on a real run.")
