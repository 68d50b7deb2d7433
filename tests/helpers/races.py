"""Races for tests. A finished race written straight into a run store (no training): four runs
of known batch sizes and accuracies per epoch, for the animation, its export and the
dashboard's download. A tiny race queued for workers to train (TINY_RACE_RUNS, queue_race)."""

from divebatch.config import RunConfig
from divebatch.runs.store import RunStore

# method, batch sizes and accuracies per epoch: a 4-run race of 6 epochs, SGD large 4 epochs
RACE = (("sgd", 16, [16] * 6, [0.5, 0.7, 0.8, 0.85, 0.88, 0.9]),
        ("divebatch", 16, [16, 16, 64, 64, 128, 128], [0.45, 0.72, 0.84, 0.87, 0.9, 0.91]),
        ("adabatch", 16, [16, 32, 64, 128, 256, 256], [0.4, 0.6, 0.75, 0.82, 0.86, 0.88]),
        ("sgd", 256, [256] * 4, [0.3, 0.5, 0.6, 0.65]))


def stored_race(store: RunStore, race=RACE, problem: str = "classification") -> list[int]:
    ids = []
    for method, first, sizes, accs in race:
        config = RunConfig(problem=problem, method=method, batch_size=first,
                           max_batch_size=256, epochs=len(sizes))
        run_id = store.create_run(config.to_dict(), status="running")
        seen = 0
        for epoch, (size, acc) in enumerate(zip(sizes, accs), 1):
            seen += 640
            store.append_record(run_id, {
                "epoch": epoch, "step": epoch * 10, "samples_seen": seen, "batch_size": size,
                "train_time": 0.1 * epoch, "lr": 0.05, "val_acc": acc, "val_loss": 1.0 - acc,
                "train_loss": 1.1 - acc, "diversity": 0.01 * epoch})
        store.mark_finished(run_id, "completed")
        ids.append(run_id)
    return ids


TINY_RACE = RunConfig(problem="least_squares", n_samples=64, dim=4, epochs=3, batch_size=4,
                      max_batch_size=32, lr=0.05, seed=5, progress_every=60.0)
TINY_RACE_RUNS = [TINY_RACE.replace(method="divebatch"), TINY_RACE.replace(method="sgd"),
                  TINY_RACE.replace(method="sgd", batch_size=32),
                  TINY_RACE.replace(method="adabatch")]


def queue_race(store: RunStore, configs=TINY_RACE_RUNS,
               group: str = "race least_squares seed 5 12:00:00") -> list[int]:
    """Queue `configs` as one group (a race unless `group` says otherwise); their ids."""
    return store.create_runs([config.to_dict() for config in configs],
                             names=[""] * len(configs), group=group)
