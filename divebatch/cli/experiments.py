"""`sweep` and `reproduce`: the CLI side of divebatch.experiments.sweeps and
divebatch.experiments.reproduce."""

from __future__ import annotations

import sys

from divebatch.cli.common import (UsageError, add_config_flags, add_db_flag,
                                  check_data_flags_apply, check_method_flags_apply,
                                  check_runnable, config_from_args, flag_name, format_table,
                                  open_store)

SWEEP_COLUMNS = [("label", "cell"), ("seeds", "seeds"), ("speedup", "speed-up"),
                 ("final", "final {metric}"), ("time_to_target", "train s to own-1pt"),
                 ("samples_to_target", "examples to own-1pt"),
                 ("final_batch_size", "final B")]


def add_sweep(sub) -> None:
    parser = sub.add_parser(
        "sweep", conflict_handler="resolve",  # the grid flags below replace single-value ones
        help="a grid over delta, max batch size, resize interval and seeds, each DiveBatch "
             "cell against fixed-batch SGD at --batch-size (same seed)",
        description="Run a grid of DiveBatch runs and a fixed-batch SGD baseline per seed, "
                    "then print each cell's speed-up (training time to within 1 point of "
                    "own final accuracy, baseline over cell), final accuracy and examples "
                    "seen, as mean ± standard error over seeds. Finished runs of the same "
                    "sweep are reused: run the same command again to resume.")
    add_db_flag(parser)
    add_config_flags(parser)
    parser.add_argument("--delta", type=float, nargs="+", default=[0.1],
                        help="DiveBatch delta values (default 0.1)")
    parser.add_argument("--max-batch-size", type=int, nargs="+", default=[1024],
                        help="B_max values (default 1024)")
    parser.add_argument("--resize-every", type=int, nargs="+", default=[1],
                        help="resize intervals R in epochs (default 1)")
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="seeds; every cell and the baseline run once per seed")
    add_execution_flags(parser)
    parser.set_defaults(handler=cmd_sweep)


def add_execution_flags(parser) -> None:
    parser.add_argument("--background", action="store_true",
                        help="queue the runs for background workers and return at once "
                             "(default: train them here, one after the other)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="torch CPU threads for the runs trained here (default 1: these "
                             "models are too small to gain from more, and spinning threads "
                             "on a busy machine distort the timings; 0 = torch's default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_flags(parser)


def add_ray_flags(parser) -> None:
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local: this machine's workers (default); ray: one Ray task per "
                             'run on a Ray cluster (pip install "divebatch[ray]")')
    parser.add_argument("--address", default=None,
                        help="with --backend ray: local (default: a cluster started for this "
                             "command), auto (the running cluster), HOST:PORT of a head node "
                             "or ray://HOST:PORT")
    parser.add_argument("--gpus-per-run", type=float, default=None, metavar="N",
                        help="with --backend ray: GPUs per run, fractions share a GPU "
                             "(default 0)")
    parser.add_argument("--cpus-per-run", type=float, default=None, metavar="N",
                        help="with --backend ray: CPUs per run (default 1)")


def ray_backend_from_args(args):
    """None for --backend local, else a RayBackend; UsageError on misplaced or bad flags."""
    from divebatch.runs.ray_backend import RayBackend, RayBackendError, RayOptions, import_ray
    given = {name: getattr(args, name) for name in ("address", "gpus_per_run", "cpus_per_run")
             if getattr(args, name) is not None}
    if args.backend == "local":
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(f"{flags} should be used with --backend ray, but got "
                             f"--backend local")
        return None
    try:
        backend = RayBackend(RayOptions(**given, threads=args.threads))
        import_ray()  # before any note or progress bar: Ray may not be installed
    except RayBackendError as error:
        raise UsageError(str(error)) from None
    return backend


def check_execution_flags(args) -> None:
    """--threads and the Ray flags, checked before anything is printed or trained."""
    if args.threads < 0:
        raise UsageError(f"--threads should be an int >= 0, but got --threads={args.threads}")
    ray_backend_from_args(args)


def check_report_folder(folder: str) -> None:
    """The report's folder exists (made now if need be) and takes new files: checked before
    the runs train, not after."""
    import tempfile
    from pathlib import Path
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(f"--output: cannot write the report to {folder}: "
                         f"{error.strerror or error}") from None


def set_threads(threads: int) -> None:
    if threads:
        import torch
        torch.set_num_threads(threads)


def sweep_spec(args):
    from divebatch.experiments.sweeps import SWEEP_DEFAULTS, SweepSpec
    if getattr(args, "method", "divebatch") != "divebatch":
        raise UsageError(f"--method should be divebatch in a sweep (the SGD baseline is "
                         f"added for you), but got --method={args.method}")
    grid = {name: getattr(args, name) for name in ("delta", "max_batch_size",
                                                   "resize_every", "seed")}
    for name in grid:
        delattr(args, name)  # config_from_args must not see the lists
    args.max_batch_size = max(grid["max_batch_size"])  # shared settings: against the largest
    config = config_from_args(args)
    check_data_flags_apply(args, config)
    check_method_flags_apply(args, config)
    base = {**SWEEP_DEFAULTS, **config.to_dict()}
    spec = SweepSpec(base=base, deltas=tuple(grid["delta"]),
                     max_batch_sizes=tuple(grid["max_batch_size"]),
                     resize_everys=tuple(grid["resize_every"]), seeds=tuple(grid["seed"]))
    try:
        spec.validate(name_of=flag_name)
    except ValueError as error:
        raise UsageError(str(error).replace("\n", "; ")) from None
    return spec


def cmd_sweep(args) -> int:
    from divebatch.experiments import sweeps, verdicts
    if not hasattr(args, "diversity_every_epoch"):
        args.diversity_every_epoch = False  # sweeps time runs: measure only where needed
    spec = sweep_spec(args)
    check_execution_flags(args)
    check_runnable(spec.baseline_config(spec.seeds[0]), args)
    store = open_store(args)
    cells, seeds = len(spec.cells()), len(spec.seeds)
    print(f"sweep {spec.group}: {cells} cell{'s' * (cells != 1)} x {seeds} "
          f"seed{'s' * (seeds != 1)} + {seeds} baseline run{'s' * (seeds != 1)}",
          file=sys.stderr)
    status = run_group(args, store, spec, sweeps, "to see the table (it waits for nothing "
                                                  "and reuses finished runs)")
    if status is None:
        return 0
    result = sweeps.results(store, spec)
    columns = [(key, title.format(metric="acc" if result.metric == "accuracy" else "val loss"))
               for key, title in SWEEP_COLUMNS]
    print(format_table(sweep_table_rows(result), columns))
    line = verdicts.sweep_verdict(result)
    if line:
        print(line)
    counts = result.progress
    print(f"{spec.group}: {counts['finished']} of {counts['total']} runs finished"
          + (f", {counts['running'] + counts['queued']} still in the background queue"
             if counts["running"] + counts["queued"] else "")
          + f"; speed-up = same-seed SGD baseline's training time to within 1 point of its "
            f"own final {result.metric} over the cell's", file=sys.stderr)
    return status


def run_with_progress(store, group, planned, run, quiet: bool) -> int:
    """Call `run(on_run_done)` under a progress bar; 130 after Ctrl-C, else 0."""
    from tqdm import tqdm
    from divebatch.runs import groups
    todo = groups.missing_in_store(store, group, planned)
    reused = len(planned) - len(todo)
    if reused:
        print(f"reusing {reused} finished or running runs of {group}", file=sys.stderr)
    with tqdm(total=len(todo), unit="run", file=sys.stderr, disable=quiet or not todo,
              dynamic_ncols=True) as bar:
        def done(planned_run, run):
            bar.set_postfix_str(f"{planned_run.config.name.removeprefix(group + ' ')}: "
                                f"{run['status']}", refresh=False)
            bar.update(1)
        try:
            run(done)
        except KeyboardInterrupt:
            print("\nstopped: finished runs are kept; run the same command again to resume",
                  file=sys.stderr)
            return 130
    return 0


def sweep_table_rows(result) -> list[dict]:
    from divebatch.experiments.verdicts import format_mean_se, format_speedup
    accuracy = result.metric == "accuracy"
    rows = []
    for cell in result.cells:
        rows.append({
            "label": cell["label"],
            "seeds": f"{cell['finished']}/{cell['planned']}"
                     + (f" ({cell['diverged']} diverged)" if cell["diverged"] else ""),
            "speedup": format_speedup(cell),
            "final": format_mean_se(cell["final"], cell["final_se"],
                                    scale=100 if accuracy else 1, suffix=" %" if accuracy else ""),
            "time_to_target": format_mean_se(cell["time_to_target"],
                                             cell["time_to_target_se"]),
            "samples_to_target": format_mean_se(cell["samples_to_target"],
                                                cell["samples_to_target_se"], digits=4),
            "final_batch_size": format_mean_se(cell["final_batch_size"], None, digits=5),
        })
    return rows


def add_reproduce(sub) -> None:
    from divebatch.experiments.paper_setup import BENCHMARKS, SCALES
    parser = sub.add_parser(
        "reproduce", help="the paper's comparison at a scale this machine can run, beside "
                          "the paper's published numbers, with a Markdown + HTML report",
        description="DiveBatch against SGD at the small and the large batch and AdaBatch, "
                    "with and without linear LR scaling, on synthetic convex, synthetic "
                    "non-convex and digits problems (and scaled-down CIFAR-10/100 and "
                    "Tiny-ImageNet where their files and a GPU are present), several seeds "
                    "each; prints our speed-ups and accuracy changes beside the paper's and "
                    "writes a report. Finished runs are reused: run it again to resume.")
    add_db_flag(parser)
    parser.add_argument("--quick", action="store_true",
                        help="the quick scale (--scale quick): minutes on 2 CPU cores")
    parser.add_argument("--scale", choices=SCALES,
                        help="full (default; tens of minutes on a CPU), quick, or tiny (a "
                             "smoke test in seconds whose numbers mean nothing)")
    parser.add_argument("--benchmarks", nargs="+", choices=list(BENCHMARKS),
                        default=list(BENCHMARKS), metavar="NAME",
                        help=f"some of {', '.join(BENCHMARKS)} (default: all; image ones "
                             f"are skipped with a note where data or a GPU is missing)")
    parser.add_argument("--seeds", type=int, metavar="N",
                        help="seeds 0..N-1 (default: 1 tiny, 3 quick, 5 full)")
    parser.add_argument("--output", default="reports", metavar="DIR",
                        help="folder for reproduce.md and reproduce.html (default reports/)")
    add_execution_flags(parser)
    parser.set_defaults(handler=cmd_reproduce)


def run_group(args, store, spec, experiment, then: str) -> int | None:
    """Run a sweep's or reproduction's planned runs (`experiment`: the sweeps or reproduce
    module). With --background they are queued for workers: prints the group's name and
    returns None, as there is nothing to tabulate yet. Otherwise they run here with a progress
    bar, and the exit status is returned."""
    from divebatch.runs import warm_pool
    from divebatch.runs.ray_backend import RayBackendError
    backend = ray_backend_from_args(args)
    try:
        if args.background:
            with warm_pool.leaving_when_idle():  # workers leave once the queue is empty
                ids = experiment.launch(store, spec, backend=backend)
            print(f"queued {len(ids)} runs; run the same command without --background "
                  f"{then}", file=sys.stderr)
            print(spec.group)
            return None
        set_threads(args.threads)
        return run_with_progress(store, spec.group, spec.plan(), lambda done: (
            experiment.run_here(store, spec, on_run_done=done, backend=backend)), args.quiet)
    except RayBackendError as error:
        raise UsageError(str(error)) from None


def cmd_reproduce(args) -> int:
    from divebatch.experiments import claims, paper_setup, reproduce
    from divebatch.report import reproduce_report
    if args.quick and args.scale is not None:  # both name the scale: refuse, never guess
        raise UsageError(f"--quick is not allowed with --scale (--quick is --scale quick), but "
                         f"got --quick --scale {args.scale}")
    scale = "quick" if args.quick else args.scale or "full"
    seeds = args.seeds if args.seeds is not None else paper_setup.DEFAULT_SEEDS[scale]
    if seeds < 1:
        raise UsageError(f"--seeds should be an int >= 1, but got --seeds={seeds}")
    spec = reproduce.ReproSpec(scale=scale, benchmarks=tuple(args.benchmarks),
                               seeds=tuple(range(seeds)))
    check_execution_flags(args)
    if not args.background:  # the report is written by the run that trains
        check_report_folder(args.output)
    store = open_store(args)
    for note in reproduce_report.skipped_notes(spec.skipped()):
        print(f"skipped: {note}", file=sys.stderr)
    if not spec.runnable():
        raise UsageError("none of the chosen benchmarks can run here (see the notes above)")
    status = run_group(args, store, spec, reproduce, "later for the table and the report")
    if status is None:
        return 0
    result = reproduce.results(store, spec)
    print(format_table(reproduce_report.side_by_side(result),
                       reproduce_report.SIDE_BY_SIDE_COLUMNS))
    print()
    for finding in claims.findings(result):
        print(claims.finding_line(finding))
    for key in result.benchmarks():
        print("why: " + reproduce_report.why_line(result, key))
    print()
    print(format_table(reproduce_report.detail(result), reproduce_report.DETAIL_COLUMNS))
    try:
        paths = reproduce_report.write_report(store, result, args.output)
    except OSError as error:
        raise UsageError(f"--output: cannot write the report to {args.output}: "
                         f"{error.strerror}") from None
    print(f"report: {', '.join(map(str, paths))}", file=sys.stderr)
    return status


def add_ray_driver(sub) -> None:
    """The background process that `--backend ray --background` and the dashboard start."""
    parser = sub.add_parser("ray-driver", help="(internal) train claimed runs on Ray, writing "
                                               "their records into the store")
    add_db_flag(parser)
    parser.add_argument("run_ids", type=int, nargs="+", metavar="RUN_ID")
    parser.add_argument("--address", default="local")
    parser.add_argument("--gpus-per-run", type=float, default=0.0)
    parser.add_argument("--cpus-per-run", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.set_defaults(handler=cmd_ray_driver)


def cmd_ray_driver(args) -> int:
    from divebatch.runs import ray_backend
    store = open_store(args)
    options = ray_backend.RayOptions(args.address, args.gpus_per_run, args.cpus_per_run,
                                     args.threads)
    try:
        options.validate()
        ray_backend.drive(store, args.run_ids, options)
    except ray_backend.RayBackendError as error:  # nobody reads our exit status: tell the runs
        ray_backend.fail_runs(store, args.run_ids, str(error))
        raise UsageError(str(error)) from None
    return 0
