"""Runs and epoch records written out by hand, for the tests of the charts' specs."""


def record(epoch, **values):
    base = {"epoch": epoch, "step": 10 * epoch, "samples_seen": 100 * epoch,
            "train_time": 0.5, "batch_size": 8 * epoch, "lr": 0.1, "diversity": 0.01 * epoch,
            "train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch, "val_acc": 0.5 + 0.1 * epoch,
            "delta": 0.1, "max_batch_size": 64, "resize_every": 1, "lr_multiplier": 1.0}
    return {**base, **values}


def run(run_id=1, method="divebatch", **config):
    return {"id": run_id, "name": "", "group": "", "status": "completed",
            "config": {"method": method, "batch_size": 8, "max_batch_size": 64, "delta": 0.1,
                       "epochs": 3, "problem": "classification", **config},
            "info": {"n_train": 100}, "started_at": 1000.0, "finished_at": 1010.0}
