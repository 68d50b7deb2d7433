"""What runs inside Ray for the Ray backend (ray_backend.py is the driver's side).

A task trains one run with `worker.execute_run`, handed a `RelayStore` instead of the
RunStore: reads answer from a snapshot of the run, writes go to the `Mailbox` actor, from
which the driver applies them to the real store in order.
"""

from __future__ import annotations

from pathlib import Path

from divebatch.runs import worker

RELAYED_WRITES = ("append_record", "add_event", "set_progress", "update_info", "mark_finished")


class Mailbox:
    """A Ray actor between the driver and its tasks: reports go up, controls go down.
    Calls from one task run in the order it made them, so records arrive in order."""

    def __init__(self):
        self.reports: list[tuple] = []
        self.controls: dict[int, list[dict]] = {}

    def report(self, run_id: int, method: str, args: tuple, kwargs: dict) -> None:
        self.reports.append((run_id, method, args, kwargs))

    def drain(self) -> list[tuple]:
        reports, self.reports = self.reports, []
        return reports

    def send(self, run_id: int, control: dict) -> None:
        self.controls.setdefault(run_id, []).append(control)

    def take(self, run_id: int) -> list[dict]:
        return self.controls.pop(run_id, [])


class RelayStore:
    """What `worker.execute_run` sees as its RunStore inside a Ray task."""

    def __init__(self, run: dict, records: list[dict], store_path: str, mailbox):
        self.run, self.kept_records, self.mailbox = run, records, mailbox
        self.path = Path(store_path)  # where checkpoints go: checkpoint.run_checkpoint_path

    def get_run(self, run_id: int) -> dict:
        return self.run

    def records(self, run_id: int) -> list[dict]:
        return self.kept_records

    def take_controls(self, run_id: int) -> list[dict]:
        import ray
        return ray.get(self.mailbox.take.remote(run_id))

    def mark_running(self, run_id: int, pid: int) -> None:
        import ray
        self._report(run_id, "started", node=ray.util.get_node_ip_address(), pid=pid)

    def _report(self, run_id: int, method: str, *args, **kwargs) -> None:
        self.mailbox.report.remote(run_id, method, args, kwargs)

    def __getattr__(self, method: str):
        if method not in RELAYED_WRITES:
            raise AttributeError(method)
        return lambda run_id, *args, **kwargs: self._report(run_id, method, *args, **kwargs)


def train_task(run: dict, records: list[dict], store_path: str, mailbox, threads: int) -> None:
    """The body of a Ray task: train one run, reporting everything through `mailbox`."""
    import ray
    if threads:
        import torch
        torch.set_num_threads(threads)
    worker.execute_run(RelayStore(run, records, store_path, mailbox), run["id"])
    # waited for: the task's earlier reports, sent before it, are then in the mailbox too
    ray.get(mailbox.report.remote(run["id"], "done", (), {}))
