"""The lines that say why queued runs wait: how many worker slots are busy, and, when paused
runs hold them, which runs and what frees them (a paused run keeps its worker, and so its
slot, until it is resumed and ends, or is stopped); and the sidebar's line about the workers.

>>> running = [{"id": 5, "status": "running", "worker_pid": 77, "config": {},
...             "info": {"background": True}}]
>>> paused = paused_holders(running, {5: {"epoch": 1, "paused": True}})
>>> paused
{5: 1}
>>> queued_note([6], busy=1, slots=1, paused=paused)[1]
'Queued: #6. Its worker slot is held by #5, paused after epoch 1: Resume #5 to let it \
finish, or Stop it to free the slot now.'
>>> workers_line(busy=1, slots=1, queued=1, paused=paused)
'Workers: 1 of 1 slot(s) busy (#5 paused, holding its slot), 1 run(s) queued'
"""

from __future__ import annotations

from divebatch.runs import capacity
from divebatch.words import and_list


def paused_holders(running: list[dict], progress: dict[int, dict | None]) -> dict[int, int]:
    """{run id: the epoch it is paused after} of the background runs that hold worker slots
    only because they are paused: every run of their worker process is paused (a worker
    that interleaves a race trains the others while one is paused). `progress`: each running
    run's live progress row (None if it has none); runs from the command line hold no slot."""
    by_worker: dict[int, list[dict]] = {}
    for run in running:
        if run["info"].get("background") and run["worker_pid"]:
            by_worker.setdefault(run["worker_pid"], []).append(run)
    held = {}
    for runs in by_worker.values():
        rows = [progress.get(run["id"]) or {} for run in runs]
        if all(row.get("paused") for row in rows):
            held.update({run["id"]: int(row.get("epoch") or 0) for run, row in zip(runs, rows)})
    return held


def paused_slots(running: list[dict], paused: dict[int, int]) -> int:
    """The worker slots that the `paused` runs' workers hold (a run with nproc = N: N)."""
    return capacity.background_busy([run for run in running if run["id"] in paused])


def queued_note(queued: list[int], busy: int, slots: int, paused: dict[int, int],
                paused_busy: int | None = None, can_change: bool = True) -> tuple[str, str]:
    """("info" or "warning", one line) about the `queued` run ids: `busy` of `slots` worker
    slots are busy, `paused_busy` of them (default: one per paused run) held by the `paused`
    runs ({run id: epoch}, see `paused_holders`). A warning when paused runs keep the queued
    ones waiting: it names them, and what frees a slot (Resume or Stop on the instructor's
    dashboard, `can_change`; a read-only one says the instructor does it)."""
    ids = ", ".join(f"#{run_id}" for run_id in queued)
    paused_busy = len(paused) if paused_busy is None else paused_busy
    if not paused or busy < slots:
        return "info", (f"Queued: {ids}. {busy} of {slots} worker slot(s) are busy; queued "
                        f"runs start on their own, oldest first, as slots free up.")
    names = and_list([f"#{run_id}" for run_id in paused])
    if len(paused) == 1:
        [(run_id, epoch)] = paused.items()
        held = f"#{run_id}, paused after epoch {epoch}"
    else:
        held = and_list([f"#{run_id} (paused after epoch {epoch})"
                     for run_id, epoch in paused.items()])
    one = len(paused) == 1
    if can_change:
        action = (f"Resume {names} to let it finish, or Stop it to free the slot now." if one
                  else "Resume them to let them finish, or Stop one to free its slot now.")
    else:
        action = (f"{ids} {'starts' if len(queued) == 1 else 'start'} once the instructor "
                  f"resumes or stops {names if one else 'one of them'}.")
    if paused_busy >= busy:  # nothing else holds a slot: only a Resume or Stop frees one
        whose = "Its" if len(queued) == 1 else "Their"
        slot = f"{whose} worker slot is" if slots == 1 else f"All {slots} worker slots are"
        return "warning", f"Queued: {ids}. {slot} held by {held}: {action}"
    return "warning", (f"Queued: {ids}. {busy} of {slots} worker slots are busy, "
                       f"{paused_busy} held by {held}: {action} Queued runs also start on "
                       f"their own, oldest first, as slots free up.")


def workers_line(busy: int, slots: int, queued: int, paused: dict[int, int],
                 command_line: list[int] = ()) -> str:
    """The sidebar's line: busy worker slots, the paused runs that hold some (`paused`, as
    from `paused_holders`), queued runs, and the runs a command line trains (no slot)."""
    held = ""
    if paused:
        names = and_list([f"#{run_id}" for run_id in paused])
        held = (f" ({names} paused, holding its slot)" if len(paused) == 1
                else f" ({names} paused, holding their slots)")
    line = f"Workers: {busy} of {slots} slot(s) busy{held}, {queued} run(s) queued"
    if command_line:
        line += " · running from the command line: " + ", ".join(f"#{i}" for i in command_line)
    return line
