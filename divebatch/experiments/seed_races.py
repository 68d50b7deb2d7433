"""A preset's race judged seed by seed: final accuracy, time to the race's common target, time
and optimizer steps to the small batch's level (SGD at B0's final accuracy - 1 point), and the
checks the race presets were chosen by, as markdown tables (benchmarks/preset_table.py prints
them; docs/reproduction.md shows them)."""

from __future__ import annotations

from divebatch.presets import RACE_ORDER, VARIANTS
from divebatch.experiments import analysis
from divebatch.experiments.seed_stats import mean_se

STABLE_POINTS = 3.0  # a preset is stable when no run ends more than this below its best


def judge(records: dict[str, list[dict]], batch_size: int) -> dict[str, dict]:
    """Per variant: final, drop, time to common, speed-up; DiveBatch's batch sizes; time and
    optimizer steps to the small batch's level (SGD at B0's final accuracy - 1 point)."""
    runs = [{"id": i, "config": {"method": v}} for i, v in enumerate(records)]
    rows, common = analysis.compare(runs, dict(enumerate(records.values())))
    level = analysis.own_target(records["sgd_small"])
    out = {}
    for variant, row in zip(records, rows):
        sizes = [r["batch_size"] for r in records[variant]]
        out[variant] = {**row, "common": common, "sizes": sorted(set(sizes)),
                        "starts_at_b0": sizes[0] == batch_size, "level": level,
                        **to_level(records[variant], level)}
    base = out["sgd_small"]
    for row in out.values():
        row["level_speedup"] = _ratio(base["time_to_level"], row["time_to_level"])
        row["level_step_ratio"] = _ratio(base["steps_to_level"], row["steps_to_level"])
    return out


def to_level(records: list[dict], level: float | None) -> dict:
    """Training seconds and optimizer steps until the first epoch at `level` (None if never)."""
    epoch, seconds = analysis.time_to_value(records, level)
    steps = None if epoch is None else next(r["step"] for r in records if r["epoch"] == epoch)
    return {"epochs_to_level": epoch, "time_to_level": seconds, "steps_to_level": steps}


def _ratio(base: float | None, own: float | None) -> float | None:
    return base / own if base and own else None


def fmt(values, scale=1.0, suffix="", digits=2) -> str:
    mean, se = mean_se(None if v is None else v * scale for v in values)
    if mean is None:
        return "not reached"
    reached = sum(v is not None for v in values)
    text = f"{mean:.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}") + suffix
    return text if reached == len(values) else f"{text} ({reached}/{len(values)} reached)"


def table(judged: list[dict[str, dict]]) -> str:
    lines = ["| method | final accuracy % | time to common target (s) | epochs to it | "
             "speed-up vs SGD at B0 |", "| --- | --- | --- | --- | --- |"]
    for variant in RACE_ORDER:
        rows = [seed[variant] for seed in judged]
        lines.append(f"| {VARIANTS[variant]} | {fmt([r['final_acc'] for r in rows], 100)} | "
                     f"{fmt([r['time_to_common'] for r in rows])} | "
                     f"{fmt([r['epochs_to_common'] for r in rows], digits=1)} | "
                     f"{fmt([r['speedup'] for r in rows], suffix='x')} |")
    return "\n".join(lines)


def level_table(judged: list[dict[str, dict]]) -> str:
    """Who reached the small batch's level (SGD at B0's final - 1 point), and how soon."""
    lines = ["| method | final - SGD at B0's final (points) | time to SGD at B0's final - 1 pt "
             "(s) | optimizer steps to it | speed-up in time | speed-up in steps |",
             "| --- | --- | --- | --- | --- | --- |"]
    for variant in RACE_ORDER:
        rows = [seed[variant] for seed in judged]
        gap = [100 * (r["final_acc"] - s["sgd_small"]["final_acc"])
               for r, s in zip(rows, judged)]
        lines.append(f"| {VARIANTS[variant]} | {fmt(gap)} | "
                     f"{fmt([r['time_to_level'] for r in rows])} | "
                     f"{fmt([r['steps_to_level'] for r in rows], digits=0)} | "
                     f"{fmt([r['level_speedup'] for r in rows], suffix='x')} | "
                     f"{fmt([r['level_step_ratio'] for r in rows], suffix='x')} |")
    return "\n".join(lines)


def trade_off(judged: list[dict[str, dict]]) -> str:
    """The plain trade-off check: SGD at B_max ends >= 3 points below SGD at B0; DiveBatch
    ends within 1 point of it and reaches its level >= 1.5x sooner (means over seeds)."""
    def gap(variant):
        return mean_se(100 * (s[variant]["final_acc"] - s["sgd_small"]["final_acc"])
                       for s in judged)[0]
    large, dive = gap("sgd_large"), gap("divebatch")
    speedup = mean_se(s["divebatch"]["level_speedup"] for s in judged)[0]
    reached = sum(s["divebatch"]["time_to_level"] is not None for s in judged)
    ok = large <= -3.0 and dive >= -1.0 and (speedup or 0) >= 1.5 and reached == len(judged)
    return (f"trade-off: SGD at B_max {large:+.2f} points, DiveBatch {dive:+.2f} points vs "
            f"SGD at B0; DiveBatch reached SGD at B0's final - 1 pt in {reached}/{len(judged)} "
            f"seeds, {speedup or 0:.2f}x sooner ({'MEETS' if ok else 'misses'} the bar: "
            f"<= -3, >= -1, >= 1.5x)")


def checks(judged: list[dict[str, dict]]) -> list[str]:
    drops = [r["drop_points"] or 0.0 for seed in judged for r in seed.values()]
    dive = [seed["divebatch"] for seed in judged]
    faster = sum((r["speedup"] or 0) > 1.0 for r in dive)
    sizes = [len(r["sizes"]) for r in dive]
    return [f"stable: largest drop below a run's best = {max(drops):.1f} points "
            f"({'ok' if max(drops) <= STABLE_POINTS else 'FAILS'}, limit {STABLE_POINTS:g})",
            f"DiveBatch distinct batch sizes per seed: {sizes}, starting at B0 in "
            f"{sum(r['starts_at_b0'] for r in dive)}/{len(dive)} seeds; "
            f"sizes of the first seed: {dive[0]['sizes']}",
            f"DiveBatch reached the common target sooner than SGD at B0 in {faster}/{len(dive)} "
            f"seeds; common targets: {[round(100 * r['common'], 1) for r in dive]} %"]
