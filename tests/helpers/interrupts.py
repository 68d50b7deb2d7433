"""A Ctrl-C in the middle of a run, as a sweep's driver gets it (tests of sweeps that continue
their stopped runs, on either backend)."""

from divebatch.runs import worker


def ctrl_c_in_epoch(monkeypatch, epoch: int):
    """Make ``worker.execute_run`` raise KeyboardInterrupt once a run reports ``epoch``; returns
    the real ``execute_run`` to put back."""
    train = worker.execute_run

    def interrupted(store, run_id, on_epoch=None):
        def on_record(record):
            if record.epoch == epoch:
                raise KeyboardInterrupt
        return train(store, run_id, on_record)
    monkeypatch.setattr(worker, "execute_run", interrupted)
    return train
