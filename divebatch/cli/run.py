"""Single runs and the stored results: run, presets, list, show, export, compare, worker, download.

Each `add_X(subparsers)` declares one subcommand and points at its handler."""

from __future__ import annotations

import argparse
import math
import sys

from divebatch.experiments import analysis, verdicts
from divebatch.cli.common import (UsageError, add_config_flags, check_data_flags_apply,
                                  check_method_flags_apply, check_runnable, config_from_args,
                                  format_table, get_run_or_fail, open_store, reap_if_writable,
                                  subparser)
from divebatch.report import animation_settings
from divebatch.report.exports import records_csv, records_json
from divebatch.report.tables import COMPARE_COLUMNS, LIST_COLUMNS
from divebatch.runs.store import STATUSES

def add_run(sub) -> None:
    parser = subparser(sub, "run", "train one run in the foreground and store it", cmd_run)
    add_config_flags(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_run(args) -> int:
    from divebatch.training import distributed
    from divebatch.runs.worker import execute_run
    from divebatch.cli.progress import EpochProgress
    config = config_from_args(args)
    check_data_flags_apply(args, config)
    check_method_flags_apply(args, config)
    check_runnable(config, args)
    if distributed.launched():  # under torchrun: rank 0 stores and prints, the others train
        config = config.replace(nproc=distributed.world_size())
        if not distributed.is_main_process():
            from divebatch.training.trainer import train
            train(config)
            return 0
    elif config.nproc > 1:
        return run_on_processes(args, config)
    store = open_store(args)
    # created running (never queued, so no background worker takes it too)
    run_id = store.create_run(config.to_dict(), name=config.name, status="running")
    print(run_id, flush=True)
    with EpochProgress(config.epochs, enabled=not args.quiet) as progress:
        execute_run(store, run_id, on_epoch=progress.update)
    run = store.get_run(run_id)
    records = store.records(run_id)
    print(f"status={run['status']} epochs={len(records)}"
          + (f" ({run['error']})" if run["error"] else ""), file=sys.stderr)
    print(run_id, flush=True)
    return 0 if run["status"] in ("completed", "stopped") else 1


def run_on_processes(args, config) -> int:
    """`run --nproc N` outside torchrun: the same run under `torchrun --standalone`."""
    import subprocess
    import tempfile
    from pathlib import Path
    from divebatch.runs.processes import launch_command
    store = open_store(args)
    with tempfile.TemporaryDirectory() as folder:
        config_file = Path(folder) / "config.json"
        config_file.write_text(config.to_json(), encoding="utf-8")
        run_args = ["--db", str(store.path), "run", "--config", str(config_file)]
        return subprocess.call(launch_command(config.nproc, run_args
                                              + (["--quiet"] if args.quiet else [])))


def add_presets(sub) -> None:
    subparser(sub, "presets", "list the named presets usable with `run --preset NAME`",
              cmd_presets)


def cmd_presets(args) -> int:
    from divebatch.presets import PRESETS
    for key, preset in PRESETS.items():
        print(f"{key:22s} {preset.title}")
    return 0


def add_list(sub) -> None:
    parser = subparser(sub, "list", "list stored runs, newest first", cmd_list)
    parser.add_argument("--status", choices=STATUSES, help="only runs with this status")
    parser.add_argument("--limit", type=int, default=50,
                        help="at most this many, an int >= 0 (default 50)")


def cmd_list(args) -> int:
    if args.limit < 0:
        raise UsageError(f"--limit should be an int >= 0, but got --limit={args.limit}")
    store = open_store(args, writes=False)
    reap_if_writable(store)  # a worker that died shows as interrupted, not running
    runs = store.list_runs(status=args.status, limit=args.limit)
    records = store.records_many([r["id"] for r in runs])
    rows = [analysis.summarize(run, records.get(run["id"], [])) for run in runs]
    print(format_table(rows, LIST_COLUMNS) if rows else _no_runs_line(store, args))
    return 0


def _no_runs_line(store, args) -> str:
    """Why `list` shows nothing: an empty store, or filters that no stored run matches."""
    if not store.list_runs(limit=1):
        return "no runs stored yet"
    filters = ([f"--status {args.status}"] if args.status else []) \
        + ([f"--limit {args.limit}"] if args.limit == 0 else [])
    return f"no runs match {' '.join(filters)} (the store holds other runs)"


def add_show(sub) -> None:
    parser = subparser(sub, "show", "a run's config, status and epoch records", cmd_show)
    parser.add_argument("run_id", type=int)


def cmd_show(args) -> int:
    store = open_store(args, writes=False)
    reap_if_writable(store)
    run = get_run_or_fail(store, args.run_id)
    records = store.records(args.run_id)
    print(f"run {run['id']} {run['name']!s} status={run['status']}"
          + (f" error={run['error']}" if run["error"] else ""))
    for key, value in sorted(run["config"].items()):
        print(f"  {key} = {value!r}")
    columns = [(k, k) for k in ("epoch", "samples_seen", "train_time", "batch_size", "lr",
                                "diversity", "train_loss", "val_loss", "val_acc")]
    print(format_table(records, columns) if records else "no epochs recorded")
    for event in store.events(args.run_id):
        print(f"  event epoch={event['epoch']} {event['kind']}: {event['message']}")
    return 0


def add_export(sub) -> None:
    parser = subparser(sub, "export", "a run's epoch records as CSV or JSON, or a race of runs "
                                      "as an animated GIF or MP4 of its charts", cmd_export)
    parser.add_argument("run_ids", type=int, nargs="+", metavar="run_id",
                        help="the run (csv, json), or the runs to race (gif, mp4)")
    parser.add_argument("--format", choices=("csv", "json", *animation_settings.FORMATS),
                        default="csv")
    parser.add_argument("--output", "-o", help="file to write (default: standard output for "
                                                "csv and json, divebatch-race-IDS.FORMAT for "
                                                "gif and mp4)")
    speeds = animation_settings.SPEEDS
    parser.add_argument("--speed", choices=tuple(speeds),
                        help=f"gif, mp4: epochs per second "
                             f"({', '.join(f'{k} {v}' for k, v in speeds.items())}; "
                             f"default {animation_settings.DEFAULT_SPEED})")
    parser.add_argument("--x-axis", default="samples_seen",
                        help="gif, mp4: the charts' x axis: samples_seen, step, epoch or "
                             "train_time (default samples_seen)")
    parser.add_argument("--log-y", action=argparse.BooleanOptionalAction, default=True,
                        help="gif, mp4: log-scale y on every chart but accuracy (default on)")


def cmd_export(args) -> int:
    store = open_store(args, writes=False)
    runs = [get_run_or_fail(store, run_id) for run_id in args.run_ids]
    if args.format in animation_settings.FORMATS:
        return _export_animation(store, args)
    if len(runs) > 1 or args.speed:
        raise UsageError(f"--format {args.format} exports one run's records, but got "
                         + (f"{len(runs)} run ids" if len(runs) > 1 else "--speed")
                         + f"; --format {' or '.join(animation_settings.FORMATS)} animates a race")
    run_id = args.run_ids[0]
    records = store.records(run_id)
    text = (records_csv(records) if args.format == "csv"
            else records_json(runs[0], records, store.events(run_id)))
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        except OSError as error:
            raise UsageError(f"--output: cannot write {args.output}: {error.strerror}")
    else:
        sys.stdout.write(text)
    return 0


def _export_animation(store, args) -> int:
    """The race as a GIF or MP4 file; its path on standard output."""
    from divebatch.report import animation
    from divebatch.report.figures import ChartOptions
    output = args.output or animation.file_name(args.run_ids, args.format)
    try:
        options = ChartOptions(x_axis=args.x_axis, log_y=args.log_y)
    except ValueError as error:
        raise UsageError(f"--x-axis: {error}") from None
    try:
        race = animation.build_race(animation.load_runs(store, args.run_ids), options)
        animation.export(race, output, args.format,
                         args.speed or animation_settings.DEFAULT_SPEED)
    except animation.AnimationError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"--output: cannot write {output}: {error.strerror or error}") \
            from None
    print(output)
    return 0


def add_compare(sub) -> None:
    parser = subparser(sub, "compare", "the paper's time-to-target table for several runs "
                                       "(the first run is the speed-up baseline)", cmd_compare)
    parser.add_argument("run_ids", type=int, nargs="+")
    parser.add_argument("--target", type=float,
                        help="common target: an accuracy as a fraction > 0 and <= 1 for "
                             "classification runs, a validation loss > 0 for regression runs "
                             "(default: from the runs' best values)")


def cmd_compare(args) -> int:
    store = open_store(args, writes=False)
    runs = [get_run_or_fail(store, run_id) for run_id in args.run_ids]
    records = store.records_many(args.run_ids)
    groups = verdicts.group_by_data(runs)
    for group in groups:
        _check_target(args.target, group, records)
    named = [(name, *analysis.compare(group, records, args.target))
             for name, group in zip(verdicts.group_names(groups), groups)]
    rows = [row for _, group_rows, _ in named for row in group_rows]
    for row in rows:
        row["speedup_own_shown"] = None if row["speedup_own"] is None else \
            f"{row['speedup_own']:.3g}x" + (" (see note)" if row["speedup_own_flag"] else "")
    columns = COMPARE_COLUMNS if len(named) == 1 else \
        COMPARE_COLUMNS[:1] + [("problem", "problem")] + COMPARE_COLUMNS[1:]
    print(format_table(rows, columns))
    for name, group_rows, common in named:
        print(("" if len(named) == 1 else f"{name}: ") + _target_line(group_rows, common, args))
    line = verdicts.groups_verdict(named)
    if line:
        print(line)
    return 0


def _check_target(target: float | None, runs: list[dict], records: dict) -> None:
    """--target is a fraction of accuracy for runs that measure it (classification), else a
    validation loss: UsageError naming the range that fits these runs."""
    if target is None:
        return
    problem = runs[0]["config"].get("problem")
    if any(analysis.uses_accuracy(records.get(run["id"], [])) for run in runs):
        if not 0 < target <= 1:  # NaN is refused too
            raise UsageError(f"--target should be a fraction > 0 and <= 1 for accuracy ({problem} "
                             f"runs measure accuracy), but got --target={target}")
    elif not (target > 0 and math.isfinite(target)):
        raise UsageError(f"--target should be a validation loss > 0 and finite ({problem} runs "
                         f"measure no accuracy), but got --target={target}")


def _target_line(rows: list[dict], common: float | None, args) -> str:
    measure = "accuracy" if any(row["final_acc"] is not None for row in rows) \
        else "validation loss"
    origin = ("--target" if args.target is not None
              else "lowest best among the runs, less 1 point" if measure == "accuracy"
              else "highest best among the runs, plus 5 %")
    own = ("the paper's metric, first epoch within 1 point of the run's own final accuracy"
           if measure == "accuracy" else
           f"first epoch with a validation loss at most the run's own final one plus "
           f"{100 * analysis.LOSS_TOLERANCE:g} % (analysis.own_target)")
    return (f"common target: {'none' if common is None else f'{common:.4g}'} {measure} "
            f"({origin}); speed-up: the first run's training time to it over each run's "
            f"(evaluation excluded); own-1pt: {own}; next B: the batch size the schedule set "
            f"after the last epoch")


def add_worker(sub) -> None:
    parser = subparser(sub, "worker", "train a stored queued run, or (--warm) wait for queued "
                                      "runs and train them (used by the dashboard)", cmd_worker)
    parser.add_argument("run_id", type=int, help="the run, or with --warm the worker's id")
    parser.add_argument("--warm", action="store_true",
                        help="a warm worker: RUN_ID is its row in the store's workers table")


def cmd_worker(args) -> int:
    from divebatch.training import distributed
    from divebatch.runs.processes import lower_priority
    from divebatch.runs.queue import dispatch
    from divebatch.runs.worker import execute_run, follow_run
    store = open_store(args)
    lower_priority()
    if args.warm:
        from divebatch.runs.warm_worker import serve
        serve(store, args.run_id)
        return 0
    get_run_or_fail(store, args.run_id)
    if not distributed.is_main_process():  # rank > 0 of a run on several processes
        follow_run(store, args.run_id)
        return 0
    result = execute_run(store, args.run_id)
    dispatch(store)  # hand the freed slot to the next queued run
    # under torchrun a failing rank 0 must exit non-zero so that the launcher stops the others
    return 1 if result is None and distributed.launched() else 0


def add_download(sub) -> None:
    parser = subparser(sub, "download", "download a dataset from its official location and "
                                        "verify its checksum", cmd_download)
    parser.add_argument("dataset", choices=("cifar10", "cifar100", "tiny_imagenet"))
    parser.add_argument("--data-dir", default="", help="target folder (default: "
                                                       "$DIVEBATCH_DATA or data/)")


def cmd_download(args) -> int:
    from tqdm import tqdm
    from divebatch.data.images import DatasetError, download
    bars = []  # the bar appears with the first bytes: an offline machine sees the error alone

    def progress(done, total):
        if not bars:
            bars.append(tqdm(unit="B", unit_scale=True, file=sys.stderr, desc=args.dataset))
        bars[0].total = total
        bars[0].update(done - bars[0].n)
    try:
        path = download(args.dataset, args.data_dir or None, progress)
    except DatasetError as error:
        raise UsageError(str(error)) from None
    finally:
        for bar in bars:
            bar.close()
    print(path)
    return 0
