"""The README's preset tables: a preset's race (four methods, same data and seed) over several
seeds, as mean ± standard error of each method's final accuracy, time to the race's common
target and speed-up over SGD at B0, plus the checks the presets were chosen by.

    OMP_NUM_THREADS=1 python3 benchmarks/preset_table.py digits_race --seeds 0 1 2 3 4
    python3 benchmarks/preset_table.py classification_race --seeds 0 --set delta=0.02 lr=0.05

Each seed's race is judged on its own (its common target: the lowest best accuracy among its
four runs minus 1 point). The chart-only diversity probe is off here: it is excluded from
training time anyway (tests/training/test_trainer.py), so the table equals what the Lab's race measures.
Prints a markdown table and the checks; --json keeps every run's records.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divebatch.config import RunConfig  # noqa: E402
from divebatch.experiments.seed_races import checks, judge, level_table, table, trade_off  # noqa: E402
from divebatch.presets import PRESETS, RACE_ORDER, VARIANTS, with_variant  # noqa: E402
from divebatch.training.trainer import train  # noqa: E402


def race(config: RunConfig) -> dict[str, list[dict]]:
    """{variant: records} for the four methods, baseline (SGD at B0) first."""
    return {variant: [r.to_dict() for r in train(with_variant(config, variant)).records]
            for variant in RACE_ORDER}


def parse_sets(pairs: list[str], base: RunConfig) -> dict:
    fields = base.to_dict()
    out = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        if key not in fields:
            raise SystemExit(f"--set: unknown RunConfig field {key!r}")
        out[key] = type(fields[key])(text) if not isinstance(fields[key], bool) \
            else text.lower() in ("1", "true", "yes")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="RunConfig fields to override (candidate configs)")
    parser.add_argument("--json", help="write every run's records here (after each seed)")
    parser.add_argument("--from-json", nargs="+", metavar="FILE",
                        help="tabulate the records --json runs kept instead of training")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = PRESETS[args.preset].config()
    base = base.replace(diversity_every_epoch=False, device="cpu",
                        **parse_sets(args.set, base))
    saved = {seed: runs for name in args.from_json or []
             for seed, runs in json.loads(Path(name).read_text())["runs"].items()}
    judged, kept = [], {}
    for seed in args.seeds:
        records = saved[str(seed)] if saved else race(base.replace(seed=seed))
        judged.append(judge(records, base.batch_size))
        kept[seed] = records
        if args.json:
            Path(args.json).write_text(json.dumps({"config": base.to_dict(), "runs": kept}))
        print(f"seed {seed}: " + ", ".join(
            f"{VARIANTS[v]} final {100 * (r['final_acc'] or 0):.1f} % "
            f"t_common {r['time_to_common'] or float('nan'):.2f} s"
            for v, r in judged[-1].items()), file=sys.stderr, flush=True)
    print(table(judged))
    print()
    print(level_table(judged))
    print("\n".join([*checks(judged), trade_off(judged)]))


if __name__ == "__main__":
    main()
