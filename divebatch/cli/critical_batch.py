"""`python -m divebatch critical-batch RUN_ID`: measure, show, stop or resume the critical
batch size of a stored run (divebatch.experiments.critical_batch); `measure-worker` is the
background worker's entry point."""

from __future__ import annotations

import argparse
import re
import sys

from divebatch.cli.common import UsageError, format_table, get_run_or_fail, open_store, subparser

SUMMARY_COLUMNS = [("epoch", "epoch"), ("batch_size", "B used"), ("loss", "loss"),
                   ("target", "target"), ("noise_scale", "B_simple"), ("critical", "B_crit"),
                   ("residual", "fit error")]
BRANCH_COLUMNS = [("epoch", "epoch"), ("batch_size", "B"), ("lr", "lr"),
                  ("steps_to_target", "steps S(B)"), ("examples_to_target", "examples E(B)"),
                  ("seconds", "seconds")]


def add_critical_batch(sub) -> None:
    parser = subparser(sub, "critical-batch", "measure the critical batch size of a finished "
                       "run by branching from its kept checkpoints (see docs/user-guide.md)",
                       cmd_critical_batch)
    parser.add_argument("run_id", type=int)
    parser.add_argument("--at-epochs", type=_int_list, default=(), metavar="E,E",
                        help="kept checkpoints to branch from (default: every kept one)")
    parser.add_argument("--batch-sizes", type=_int_list, default=(), metavar="B,B",
                        help="batch sizes to branch to (default: B0 * 2^k up to B_max)")
    parser.add_argument("--lr-rule", default="run", choices=("run", "tuned"),
                        help="run: the run's LR rule; tuned: best of an LR grid per B")
    parser.add_argument("--budget-epochs", type=float, default=1.0,
                        help="epochs of examples the smallest batch trains to set the target")
    parser.add_argument("--decrease-fraction", type=float, default=0.5,
                        help="the target: this fraction of that reference's loss decrease")
    parser.add_argument("--repeats", type=int, default=1,
                        help="seeded branches per batch size, averaged")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--background", action="store_true",
                        help="measure in a background worker; print its id and return")
    action.add_argument("--show", action="store_true", help="print the run's latest measurement")
    action.add_argument("--stop", action="store_true", help="stop the run's running measurement")
    action.add_argument("--resume", action="store_true",
                        help="resume the run's latest stopped, failed or interrupted measurement")


def add_measure_worker(sub) -> None:
    parser = subparser(sub, "measure-worker",
                       "run a stored measurement (used by the dashboard and critical-batch "
                       "--background)", cmd_measure_worker)
    parser.add_argument("measurement_id", type=int)


# the settings' field names as this command's flags, in its error messages
FLAGS = {"epochs": "--at-epochs", "batch_sizes": "--batch-sizes", "lr_rule": "--lr-rule",
         "budget_epochs": "--budget-epochs", "decrease_fraction": "--decrease-fraction",
         "repeats": "--repeats", "run_id": "RUN_ID"}


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, but got "
                                         f"{text!r}") from None


def _as_flags(message: str) -> str:
    """A settings error worded with this command's flags: "--batch-sizes should be ..."."""
    return re.sub(r"\b(" + "|".join(FLAGS) + r")\b(?=[ =:])",
                  lambda match: FLAGS[match.group(1)], message.replace("\n", "; "))


def cmd_critical_batch(args) -> int:
    from divebatch.experiments import critical_jobs
    store = open_store(args)
    get_run_or_fail(store, args.run_id)
    critical_jobs.reap(store)
    try:
        if args.show or args.stop or args.resume:
            return _act_on_latest(store, args)
        settings = _settings(args)
        measurement_id = (critical_jobs.submit if args.background else critical_jobs.create)(
            store, args.run_id, settings)
    except ValueError as error:
        raise UsageError(_as_flags(str(error))) from None
    print(measurement_id, flush=True)
    if args.background:
        return 0
    status = _measure_with_progress(store, measurement_id)
    print(_report(store, measurement_id))
    return 0 if status == "completed" else 1


def _settings(args):
    from divebatch.experiments.critical_batch import CriticalBatchSettings
    return CriticalBatchSettings(epochs=args.at_epochs, batch_sizes=args.batch_sizes,
                                 lr_rule=args.lr_rule, budget_epochs=args.budget_epochs,
                                 decrease_fraction=args.decrease_fraction, repeats=args.repeats)


def _act_on_latest(store, args) -> int:
    from divebatch.experiments import critical_jobs
    from divebatch.runs.measurements import Measurements
    latest = Measurements(store).of_run(args.run_id, critical_jobs.KIND)
    if not latest:
        raise UsageError(f"run_id: run {args.run_id} has no critical-batch measurement; start "
                         f"one with: python -m divebatch critical-batch {args.run_id}")
    measurement_id = latest[0]["id"]
    if args.stop:
        critical_jobs.request_stop(store, measurement_id)
        print(f"measurement {measurement_id} stops at its next loss evaluation", file=sys.stderr)
    elif args.resume:
        critical_jobs.resume(store, measurement_id)
        print(f"measurement {measurement_id} resumes in a background worker", file=sys.stderr)
    else:
        print(_report(store, measurement_id))
    return 0


def _measure_with_progress(store, measurement_id: int) -> str:
    from tqdm import tqdm

    from divebatch.experiments import critical_jobs
    bar = tqdm(unit="branch", file=sys.stderr, dynamic_ncols=True)

    def update(progress: dict) -> None:
        bar.total = progress["total"]
        bar.n = progress["done"]
        bar.set_postfix({"epoch": progress["epoch"], "B": progress["batch_size"]})

    try:
        return critical_jobs.execute(store, measurement_id, on_progress=update)
    finally:
        bar.close()


def _report(store, measurement_id: int) -> str:
    from divebatch.experiments.critical_batch import summarize
    from divebatch.report.critical_batch import critical_label
    from divebatch.runs.measurements import Measurements
    measurement = Measurements(store).get(measurement_id)
    summaries = summarize(Measurements(store).rows(measurement_id))
    rows = [{**s, "critical": critical_label(s),
             "residual": (s["fit"] or {}).get("relative_residual")} for s in summaries]
    branches = [{**b, "epoch": s["epoch"]} for s in summaries for b in s["branches"]]
    head = f"measurement {measurement_id} of run {measurement['run_id']}: {measurement['status']}"
    if measurement["error"]:
        head += f" ({measurement['error']})"
    return "\n\n".join([head, format_table(rows, SUMMARY_COLUMNS),
                        format_table(branches, BRANCH_COLUMNS)])


def cmd_measure_worker(args) -> int:
    from divebatch.experiments import critical_jobs
    from divebatch.runs.processes import lower_priority
    store = open_store(args)
    lower_priority()
    try:
        status = critical_jobs.execute(store, args.measurement_id)
    except ValueError as error:  # no such measurement: nothing was started
        raise UsageError(str(error)) from None
    return 0 if status != "failed" else 1
