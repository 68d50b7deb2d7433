"""The growing live charts (dashboard/growing_panel.py) in a real browser: after 60 updates,
a hot change and a deleted run, the points drawn in the page are the stored records, none
lost or doubled. The page's own timer is held: the test asks for each update and waits for
it to be applied (DIVEBATCH_LIVE_FRESH=1: every answer reads the store anew), and a deleted
run waits for the page's rerun; nothing waits on a clock. The viewport is tall enough for
every chart to be drawn (a page draws only the charts in view)."""

import os
import random
from pathlib import Path

import numpy as np
import pytest

from benchmarks.dashboard import METHODS, N_TRAIN, synthetic_records
from dashboard.growing import listed
from divebatch.report import figures as plots
from divebatch.report import target_table
from divebatch.report.figures import ChartOptions, RunData
from divebatch.runs.store import RunStore
from tests.helpers.serve import browser_or_skip, dashboard_server, launch_chromium

pytestmark = pytest.mark.browser
sync_api = browser_or_skip()

WAIT_MS = 90_000
UPDATES, HOT_CHANGE_AT, DELETE_AT = 60, 20, 40
EPOCHS = 45  # to start with: lines without markers (figures draws those from 40 points)
CAP = 64     # B_max in the records: the adaptive runs reach it at epoch 40 (shaded, growing)
CHARTS = "(document.querySelector('.growing-charts') || {}).parentElement?.growingCharts"
HOLD = f"() => {{ const g = {CHARTS}; g.held = true; clearTimeout(g.timer); return g.have; }}"
UPDATE = f"async () => {{ const g = {CHARTS}; await g.poll(); return g.have; }}"
RUNS_SHOWN = (f"(runs) => {{ const g = {CHARTS}; "
              "return g && g.have && g.data.runs.join() === runs; }")
# Each chart grown in place against plotly's own drawing (tests/helpers/drawn_in_place.js).
LINES = (f"() => ({(Path(__file__).parents[1] / 'helpers' / 'drawn_in_place.js').read_text()})"
         f"({CHARTS})")
TABLE = """() => [...document.querySelectorAll('.growing-table table')[0].rows]
  .map((row) => [...row.cells].map((cell) => cell.textContent))"""
DRAWN = """() => Object.fromEntries([...document.querySelectorAll('.growing-charts [data-name]')]
  .map(cell => [cell.dataset.name, cell.querySelector('.js-plotly-plot').data.map(
    t => [t.name, Array.from(t.x), Array.from(t.y)])]))"""


def live_runs(store: RunStore, count: int) -> list[int]:
    """`count` runs of the race's methods, EPOCHS each, marked running by this process."""
    rng, ids = random.Random(3), []
    for method in METHODS[:count]:
        config = {"problem": "classification", "epochs": 500, "max_batch_size": 1024,
                  "delta": 0.1, "seed": 0, **method}
        run_id = store.create_run(config, group="grow")
        store.update_info(run_id, n_train=N_TRAIN)
        for record in synthetic_records(rng, method["batch_size"], EPOCHS):
            store.append_record(run_id, {**record, "max_batch_size": CAP})
        store.mark_running(run_id, os.getpid())
        ids.append(run_id)
    return ids


def next_epoch(store: RunStore, run_id: int, rng: random.Random) -> None:
    last = store.records(run_id)[-1]
    epoch = last["epoch"] + 1
    store.append_record(run_id, {**last, "epoch": epoch, "step": last["step"] + 10,
                                 "samples_seen": last["samples_seen"] + N_TRAIN,
                                 "train_time": last["train_time"] + rng.uniform(0.5, 1.5),
                                 "val_loss": 2.0 / epoch ** 0.5 * rng.uniform(0.9, 1.1),
                                 "train_loss": 2.0 / epoch ** 0.5 * rng.uniform(0.9, 1.1)})


def stored_charts(store: RunStore, run_ids: list[int]) -> dict[str, list]:
    """What the charts should hold: the legend and figures.figure_specs of the store's
    records, read here (not through the dashboard's caches), the runs compared on training
    time (the default for several runs) in log y."""
    data = [RunData(store.get_run(i), store.records(i), store.events(i)) for i in run_ids]
    options = ChartOptions(x_axis="train_time", log_y=True)
    specs = {"legend": plots.legend_spec(data, options), **plots.figure_specs(data, options)}
    return {name: [[t["name"], listed(np.asarray(t["x"], float)),
                    listed(np.asarray(t["y"], float))] for t in spec["data"]]
            for name, spec in specs.items() if not isinstance(spec, str)}


def test_drawn_points_are_the_stored_records_after_growing(tmp_path):
    store, rng = RunStore(tmp_path / "runs.db"), random.Random(4)
    run_ids = live_runs(store, 3)
    env = {"DIVEBATCH_ROLE": "viewer", "DIVEBATCH_WARM_WORKERS": "0",
           "DIVEBATCH_LIVE_CHARTS": "grow", "DIVEBATCH_LIVE_FRESH": "1"}
    try:
        with dashboard_server(tmp_path / "runs.db", env=env) as url, \
                sync_api.sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1440, "height": 4000})
            page.set_default_timeout(WAIT_MS)
            errors = []
            page.on("console", lambda message: message.type == "error"
                    and "growing charts" in message.text and errors.append(message.text))
            page.goto(f"{url}/runs?runs={','.join(map(str, run_ids))}")
            page.wait_for_function(RUNS_SHOWN, arg=",".join(map(str, run_ids)))
            have, grown_lines = page.evaluate(HOLD), []
            for update in range(UPDATES):
                if update < HOT_CHANGE_AT:
                    grown_lines += page.evaluate(LINES)
                if update == HOT_CHANGE_AT:  # as the worker logs a hot change of delta
                    last = store.records(run_ids[1])[-1]["epoch"]
                    store.add_event(run_ids[1], "hot_change", "changed delta=0.5",
                                    epoch=last + 1, payload={"delta": 0.5})
                if update == DELETE_AT:  # as the instructor deletes a run elsewhere
                    store.mark_finished(run_ids[-1], "stopped")
                    store.delete_run(run_ids.pop())
                for run_id in run_ids:
                    next_epoch(store, run_id, rng)
                seen = page.evaluate(UPDATE)
                if update == DELETE_AT:  # the page reruns without the run, drawn anew
                    page.wait_for_function(RUNS_SHOWN, arg=",".join(map(str, run_ids)))
                    seen = page.evaluate(HOLD)
                assert seen != have, f"update {update} brought nothing new"
                have = seen
            drawn, stats = page.evaluate(DRAWN), page.evaluate("() => window.growingStats")
            table = page.evaluate(TABLE)
            browser.close()
        # what the page drew, of the runs as it drew them: running (a stopped run's legend
        # says where it stopped)
        rows = target_table.build([store.get_run(i) for i in run_ids],
                                  {i: store.records(i) for i in run_ids}).rows
        expected = stored_charts(store, run_ids)
    finally:
        for run_id in run_ids:
            store.mark_finished(run_id, "stopped")
    assert not errors, errors
    assert table[0] == list(rows[0])  # the time-to-target table, drawn by the page
    assert [cells[0].removesuffix(" ★") for cells in table[1:]] == [r["method"] for r in rows]
    assert set(drawn) == set(expected)
    for name, traces in expected.items():
        assert drawn[name] == traces, name
    assert [len(t[2]) for t in expected["loss"]] == [EPOCHS + UPDATES] * 4  # two runs, two losses
    assert stats["grown"] >= UPDATES, stats  # the charts grew: most updates were increments
    assert stats["inPlace"] >= HOT_CHANGE_AT, stats  # and most were drawn in place
    assert {line[0] for line in grown_lines} >= {"batch_size", "loss"}, stats
    for name, checked, off, markers, plotlys_markers, shapes, plotlys_shapes in grown_lines:
        assert checked > 0 and off == 0, (name, checked, off)
        assert np.allclose(sorted(markers), sorted(plotlys_markers), atol=0.6), name
        assert np.allclose(shapes, plotlys_shapes, atol=1.0), name
