"""The guided tour's last two steps, after its run has ended: a race of the four methods on
the same setup and seed (the lab's Race), whose verdict the tour reads, then a critical-batch
measurement of the race's DiveBatch run, whose chart it reads.

Their moments are the race's end (every run of it ended) and the measurement's (completed);
the words carry the race's and the measurement's own numbers. `sequel_action` says what the
tour must start next, `sequel_steps` which of the two steps are reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from divebatch.presets import variant_of
from divebatch.report.critical_batch import critical_label, measured_points
from divebatch.report.target_table import labelled_rows
from divebatch.report.tour import STEPS, Step
from divebatch.runs.store import ACTIVE_STATUSES
from divebatch.words import and_list

RACE_KEYS = ("race", "critical")  # the steps that show the race's runs on the charts
NOT_MEASURABLE = -1  # the tour state's measurement id when none could be started


@dataclass(frozen=True)
class Sequel:
    race: list[dict] = field(default_factory=list)  # the race's runs (store rows); [] before
    records: dict[int, list[dict]] = field(default_factory=dict)  # run id -> its records
    measurement: dict | None = None  # the measurement of the race's DiveBatch run, if any
    summaries: list[dict] = field(default_factory=list)  # its rows, summarized

    @property
    def race_ended(self) -> bool:
        return bool(self.race) and all(run["status"] not in ACTIVE_STATUSES
                                       for run in self.race)

    @property
    def measured_run(self) -> dict | None:
        """The race's DiveBatch run, once it completed (the one to measure)."""
        return next((run for run in self.race if variant_of(run["config"]) == "divebatch"
                     and run["status"] == "completed"), None)


def sequel_action(run_finished: bool, sequel: Sequel) -> str | None:
    """What the tour starts next: "race" once its run has ended, "measure" once the race
    has ended with a completed DiveBatch run, else None (started, or nothing to start)."""
    if not run_finished:
        return None
    if not sequel.race:
        return "race"
    if sequel.race_ended and sequel.measurement is None and sequel.measured_run:
        return "measure"
    return None


def sequel_ended(sequel: Sequel) -> bool:
    """Nothing more will come: the race ended, and its measurement ended or cannot be."""
    if not sequel.race_ended:
        return False
    if sequel.measurement is None:
        return sequel.measured_run is None
    return sequel.measurement["status"] not in ACTIVE_STATUSES


def sequel_steps(sequel: Sequel) -> list[Step]:
    """The race step once the race has ended with two runs or more to compare, then the
    critical-batch step once the measurement completed."""
    compared = [run for run in sequel.race if sequel.records.get(run["id"])]
    if not sequel.race_ended or len(compared) < 2:
        return []
    rows, common = labelled_rows(compared, sequel.records)
    last_epoch = max(int(records[-1]["epoch"]) for records in sequel.records.values()
                     if records)
    steps = [Step("race", *STEPS["race"], last_epoch, _race_text(compared, rows, common))]
    measurement = sequel.measurement
    if measurement and measurement["status"] == "completed" and sequel.summaries:
        steps.append(Step("critical", *STEPS["critical"], last_epoch,
                          _critical_text(sequel.summaries),
                          "The chart is outlined under the race's charts."))
    return steps


def _race_text(runs: list[dict], rows: list[dict], common: float | None) -> str:
    config = runs[0]["config"]
    accuracy = any(row["final_acc"] is not None for row in rows)
    level = (f"{100 * common:.1f} % validation accuracy" if accuracy
             else f"a validation loss of {common:.4g}") if common is not None else "a target"
    text = (f"The same setup and seed raced SGD at B0 = {config['batch_size']}, SGD at "
            f"B_max = {config['max_batch_size']} and AdaBatch to {level}.")
    reached = [row for row in rows if row["time_to_common"] is not None]
    dive = next((row for row, run in zip(rows, _sorted_like(runs, rows))
                 if variant_of(run["config"]) == "divebatch"), None)
    if not reached:
        return text + " No run reached it."
    first = min(reached, key=lambda row: row["time_to_common"])
    text += (f" {first['method']} was first, in {_seconds(first['time_to_common'])} of "
             f"training")
    if dive is None or dive is first:
        return text + "." + (_first_epoch(dive) if dive else "")
    if dive["time_to_common"] is None:
        return text + "; DiveBatch never reached it."
    ratio = dive["time_to_common"] / first["time_to_common"]
    return text + (f"; DiveBatch took {_seconds(dive['time_to_common'])} "
                   f"({ratio:.1f}x as long).") + _first_epoch(dive)


def _first_epoch(dive: dict) -> str:
    """A race DiveBatch ended in its first epoch times one epoch's cost, not the method."""
    if dive.get("epochs_to_common") != 1:
        return ""
    measuring = dive.get("measure_to_common")
    return (" That was its first epoch"  # short: the card fits a 720-pixel window
            + (f" ({_seconds(measuring)} measuring diversity)" if measuring else "")
            + ": too easy a target to tell the methods apart.")


def _sorted_like(runs: list[dict], rows: list[dict]) -> list[dict]:
    """The runs in the rows' order (labelled_rows sorts them for the race)."""
    by_id = {run["id"]: run for run in runs}
    return [by_id[row["id"]] for row in rows]


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:,.0f} s"


def _critical_text(summaries: list[dict]) -> str:
    """Two short sentences (the card is narrow): the measured critical batch size at each
    checkpoint, and the noise scale B_simple beside it."""
    sizes = sorted({branch["batch_size"] for s in summaries for branch in s["branches"]})
    readings: dict[str, list[int]] = {}
    for summary in summaries:
        readings.setdefault(critical_label(summary) or "no fit", []).append(summary["epoch"])
    said = "; ".join(_reading(label, epochs) for label, epochs in readings.items())
    text = (f"Branches at B = {sizes[0]} to {sizes[-1]} measured where a bigger batch stops "
            f"cutting the steps: {said}.")
    scales = {s["epoch"]: s["noise_scale"] for s in summaries if s.get("noise_scale")}
    point = next((p for p in measured_points(summaries) if p["epoch"] in scales), None)
    if point is not None:
        text += (f" B_simple, which DiveBatch follows, read {scales[point['epoch']]:,.0f} at "
                 f"epoch {point['epoch']}: {_against(scales[point['epoch']], point)}.")
    elif scales:
        text += (" B_simple, which DiveBatch follows, read " + ", ".join(
            f"{value:,.0f} at epoch {epoch}" for epoch, value in scales.items()) + ".")
    return text


def _reading(label: str, epochs: list[int]) -> str:
    at = f"epoch{'s' if len(epochs) > 1 else ''} {and_list(epochs)}"
    if label == "no decrease":
        return f"at {at} no batch lowered the loss"
    return f"{label} at {at}"


def _against(scale: float, point: dict) -> str:
    """How B_simple compares with the measured critical batch size `point`."""
    value = point["value"]
    if point["bound"] == "below" and scale > value or scale > 2 * value:
        return "far above it"
    if point["bound"] == "above" and scale < value or scale < value / 2:
        return "far below it"
    return "close to it"
