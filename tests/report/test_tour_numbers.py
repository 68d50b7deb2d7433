"""The tour's numbers on a run trained and stored for real: step 2 quotes what the diversity
chart plots, step 3 the Δ̂ the resize used (the rule's, over the epoch's training batches),
says that the chart plots another value, and its δ·n·Δ̂ is the batch size the run recorded."""

import math
import re

from divebatch.config import RunConfig
from divebatch.report import series, tour
from divebatch.runs import worker
from divebatch.runs.store import RunStore


def test_step_three_uses_the_resizes_own_diversity_and_says_where_the_chart_differs(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    config = RunConfig(problem="least_squares", n_samples=4000, dim=100, method="divebatch",
                       epochs=3, batch_size=8, max_batch_size=2048, delta=0.1,
                       resize_every=1, lr=0.02, momentum=0.0, seed=0)
    run_id = store.create_run(config.to_dict())
    worker.execute_run(store, run_id)
    run, records, events = store.get_run(run_id), store.records(run_id), store.events(run_id)
    n_train = int(run["info"]["n_train"])
    steps = {s.key: s for s in tour.reached_steps(run["config"], n_train, records, events,
                                                  finished=True)}
    plotted = series.diversity_values(series.Columns(records), n_train, "diversity")
    by_epoch = {int(r["epoch"]): r for r in records}

    seen = steps["diversity"]  # step 2 quotes the chart's value at its epoch
    last = re.search(r"rose from [\d.]+ to (\d+(?:\.\d+)?)", seen.text).group(1)
    assert float(last) == float(f"{plotted[seen.epoch - 1]:.3g}")

    grows = steps["grows"]
    record = by_epoch[grows.epoch]
    delta, n, shown, bound = re.search(
        r"δ·n·Δ̂ = ([\d.]+) × ([\d,]+) × ([\d.]+) = ([\d,.]+) was above", grows.text).groups()
    assert float(delta) == record["delta"] and int(n.replace(",", "")) == n_train
    assert float(shown) == float(f"{record['diversity']:.4g}")  # the rule's Δ̂ ...
    product = float(delta) * n_train * float(shown)
    assert float(bound.replace(",", "")) == round(product, 1)  # ... times δ and n as shown
    assert math.floor(product) == record["next_batch_size"]  # the size the run recorded
    event = next(e for e in events if e["kind"] == "batch_size" and e["epoch"] == grows.epoch)
    assert f"grew the batch to {event['payload']['new']}" in grows.text
    # the value the chart plots at that epoch is a different one, and the text says so
    probe = float(f"{plotted[grows.epoch - 1]:.3g}")
    assert record["probe_diversity"] is not None and probe != float(shown)
    assert f"the diversity chart's fixed probe reads {probe:.3g} here." in grows.text
