"""`compare`'s text agrees with its table: the footer states the own-target rule of the
measure compared, the batch-size column says which batch size it shows, and runs that share
a label are told apart in the verdict."""

from divebatch.config import RunConfig
from divebatch.experiments import analysis
from divebatch.runs.store import RunStore
from tests.helpers.cli import cli_in_process


def stored(store, problem, method, accs, losses, sizes, next_sizes, **fields):
    config = RunConfig(problem=problem, method=method, epochs=len(losses), **fields)
    run_id = store.create_run(config.to_dict(), status="running")
    for epoch, (acc, loss, size, proposed) in enumerate(zip(accs, losses, sizes, next_sizes), 1):
        store.append_record(run_id, {"epoch": epoch, "step": 10 * epoch, "train_time": 1.0,
                                     "batch_size": size, "next_batch_size": proposed,
                                     "val_acc": acc, "val_loss": loss})
    store.mark_finished(run_id, "completed")
    return run_id


def test_the_footer_states_the_own_target_rule_of_the_measure():
    store = RunStore(RunStore.default_path())
    ids = [stored(store, "least_squares", "sgd", [None] * 2, [0.5, 0.1], [8, 8], [8, 8],
                  batch_size=8),
           stored(store, "least_squares", "adabatch", [None] * 2, [0.4, 0.09], [8, 64],
                  [64, 128], batch_size=8)]
    assert analysis.own_target(store.records(ids[0])) == 0.1 * (1 + analysis.LOSS_TOLERANCE)
    out = cli_in_process("compare", *map(str, ids))
    assert out.returncode == 0, out.stderr
    footer = out.stdout.splitlines()[-2]
    assert "own-1pt: first epoch with a validation loss at most the run's own final one " \
           "plus 5 %" in footer
    assert "within 1 point" not in footer
    assert "next B: the batch size the schedule set after the last epoch" in footer
    header = out.stdout.splitlines()[0]
    assert "next B" in header and "final B" not in header
    # the label tells the trained path (8 -> 64); next B the size proposed after it (128)
    assert "AdaBatch (B 8 -> 64)" in out.stdout and " 128 " in out.stdout


def test_accuracy_footer_keeps_the_paper_rule_and_equal_labels_get_their_id():
    store = RunStore(RunStore.default_path())
    ids = [stored(store, "classification", "sgd", [0.5, 0.9], [1.0, 0.5], [8, 8], [8, 8],
                  batch_size=8) for _ in range(2)]
    out = cli_in_process("compare", *map(str, ids))
    lines = out.stdout.splitlines()
    assert "own-1pt: the paper's metric, first epoch within 1 point of the run's own final " \
           "accuracy" in lines[-2]
    assert lines[-1].startswith(f"SGD B=8 #{ids[0]} was first to 89.0 %")
