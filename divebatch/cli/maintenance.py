"""`python -m divebatch resume RUN_ID` and `python -m divebatch prune`: keeping runs going and
keeping the store small."""

from __future__ import annotations

import sys
import time

from divebatch.cli.common import UsageError, get_run_or_fail, open_store, subparser
from divebatch.runs.store import FINISHED_STATUSES

FOLLOW_POLL_S = 0.5  # seconds between store reads while `resume --wait` follows a run


def add_resume(sub) -> None:
    parser = subparser(sub, "resume", "continue an interrupted, failed or stopped run from its "
                                      "last checkpoint in a background worker (which leaves "
                                      "once the queue is empty)", cmd_resume)
    parser.add_argument("run_id", type=int)
    parser.add_argument("--wait", action="store_true",
                        help="follow the run until it ends (exit 0 if it completes)")


def cmd_resume(args) -> int:
    from divebatch.runs import queue, warm_pool
    store = open_store(args)
    get_run_or_fail(store, args.run_id)
    try:
        with warm_pool.leaving_when_idle():  # the worker leaves once the queue is empty
            epoch = queue.resume(store, args.run_id)
    except ValueError as error:
        raise UsageError(str(error).replace("\n", "; ")) from None
    print(args.run_id, flush=True)
    print(f"run {args.run_id} " + (f"continues after epoch {epoch}" if epoch
                                   else "starts again from epoch 1 (no checkpoint)"),
          file=sys.stderr)
    if not args.wait:
        return 0
    status = follow(store, args.run_id)
    print(f"status={status} epochs={len(store.records(args.run_id))}", file=sys.stderr)
    print(args.run_id, flush=True)
    return 0 if status in ("completed", "stopped") else 1


def follow(store, run_id: int) -> str:
    """Wait until the run has ended (reaping its worker if it dies); its final status."""
    from divebatch.runs.queue import reap
    while True:
        reap(store)
        status = store.get_run(run_id)["status"]
        if status in FINISHED_STATUSES:
            return status
        time.sleep(FOLLOW_POLL_S)


def add_prune(sub) -> None:
    parser = subparser(sub, "prune", "delete old finished runs (with their checkpoints and "
                                     "logs) and compact the store", cmd_prune)
    parser.add_argument("--keep", type=int, metavar="N",
                        help="spare the newest N of the matching runs, an int >= 0 (0: spare "
                             "none; default: spare none, with --older-than or --status)")
    parser.add_argument("--older-than", type=float, metavar="DAYS",
                        help="only runs created more than DAYS days ago")
    parser.add_argument("--status", action="append", choices=FINISHED_STATUSES,
                        help="only runs with this status (repeatable; default: every "
                             "finished run; queued and running runs are never deleted)")


def cmd_prune(args) -> int:
    from divebatch.runs.queue import reap
    from divebatch.runs.worker import remove_run_files
    if args.keep is not None and args.keep < 0:
        raise UsageError(f"--keep should be an int >= 0, but got --keep={args.keep}")
    if args.older_than is not None and not args.older_than >= 0:
        raise UsageError(f"--older-than should be days >= 0, but got "
                         f"--older-than={args.older_than}")
    if args.older_than is None and args.keep is None and not args.status:
        raise UsageError("prune needs --keep N, --older-than DAYS or --status to say which "
                         "runs to delete")
    store = open_store(args)
    reap(store)
    older_than = None if args.older_than is None else args.older_than * 86400.0
    deleted = store.delete_runs(status=args.status, older_than=older_than,
                                keep=args.keep or 0)
    remove_run_files(store, deleted)
    store.vacuum()
    size = store.path.stat().st_size / 1e6
    print(f"deleted {len(deleted)} runs; {store.path} is now {size:.2f} MB")
    return 0
