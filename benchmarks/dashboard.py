"""Dashboard speed in the running server, measured from a real browser.

A temporary store gets 100 runs of 200 epochs each (synthesised records with every
EpochRecord field; 4 of them, one race group, marked running so that the live fragment
refreshes), then `streamlit run app.py` serves it and chromium (playwright) measures:

- Runs page: click the "Runs" link in the sidebar until the page's last element (the live
  panel's "Last update" line, after the table of 100 runs and 5 charts of the 4 active
  runs) is on screen. This is a full script run plus the browser drawing it.
- Live fragment: click the panel's "Refresh" button (a fragment-only rerun, exactly what the
  1 s timer does) until the "Last update" time changes: 4 overlaid runs, 5 charts.

    python benchmarks/dashboard.py            # 5 page loads, 10 fragment refreshes
    python benchmarks/dashboard.py --repeat 20

A class watching the live panel is measured by benchmarks/classroom.py.

Targets: Runs page under 1 s, live fragment under 0.3 s.

`--start` measures instead the click on "Start run" until the first chart point is drawn,
on an empty store, for the convex synthetic preset (Synthetic lab) and digits (Image lab,
10 epochs), each from a freshly loaded page once the previous run has been stopped; with the warm
worker pool (the default) and, with `--cold N`, N times without it (a worker started per
run). Target: under 2 s with the warm pool.

    python benchmarks/dashboard.py --start --repeat 10 --cold 3

`--first-record` leaves the browser out: `queue.submit` of the convex preset until its first
epoch record is in the store, with a warm worker and then with a worker started for each run,
in one process (the ratio is what to read on a busy machine).

    python benchmarks/dashboard.py --first-record --repeat 10
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.serve import FIRST_POINT, dashboard_server, launch_chromium  # noqa: E402
from divebatch.runs.store import RunStore  # noqa: E402

N_RUNS, N_EPOCHS, N_TRAIN = 100, 200, 8000
METHODS = ({"method": "sgd", "batch_size": 32}, {"method": "divebatch", "batch_size": 32},
           {"method": "adabatch", "batch_size": 32}, {"method": "sgd", "batch_size": 1024})
RUNS_PAGE_TARGET_S, FRAGMENT_TARGET_S, START_TARGET_S = 1.0, 0.3, 2.0
START_CASES = (("Synthetic lab (convex preset)", "synthetic", {}),
               ("Image lab (digits, 10 epochs)", "images", {"epochs": "10"}))


def synthetic_records(rng: random.Random, batch_size: int, epochs: int = N_EPOCHS
                      ) -> list[dict]:
    records, steps, samples = [], 0, 0
    for epoch in range(1, epochs + 1):
        batch = min(batch_size * 2 ** (epoch // 40), 1024)
        steps += math.ceil(N_TRAIN / batch)
        samples += N_TRAIN
        loss = 2.0 / epoch ** 0.5 * rng.uniform(0.95, 1.05)
        records.append({
            "epoch": epoch, "step": steps, "samples_seen": samples,
            "train_time": rng.uniform(0.5, 1.5), "wall_time": 1.2 * epoch,
            "batch_size": batch, "lr": 0.1, "diversity": rng.uniform(0.01, 0.5),
            "train_loss": loss, "val_loss": loss * 1.1, "val_acc": 1 - loss / 3,
            "next_batch_size": batch, "delta": 0.1, "max_batch_size": 1024,
            "resize_every": 1, "lr_multiplier": 1.0, "step_ms": 3.0, "measured_batches": 10})
    return records


def fill_store(store: RunStore) -> list[int]:
    """100 runs in groups of 4; the newest group is marked running (this process's pid, so
    the dashboard sees a live worker). Returns the running runs' ids."""
    rng = random.Random(0)
    running = []
    for index in range(N_RUNS):
        method = METHODS[index % 4]
        config = {"problem": "classification", "epochs": N_EPOCHS, "max_batch_size": 1024,
                  "delta": 0.1, "seed": index // 4, **method}
        run_id = store.create_run(config, group=f"race {index // 4}")
        store.update_info(run_id, n_train=N_TRAIN)
        for record in synthetic_records(rng, method["batch_size"]):
            store.append_record(run_id, record)
        if index >= N_RUNS - 4:
            store.mark_running(run_id, os.getpid())
            running.append(run_id)
        else:
            store.mark_finished(run_id, "completed")
    return running


def time_until(page, action, condition, timeout_s: float = 30.0) -> float:
    """Seconds from action() until condition() holds (polled every 10 ms in the browser)."""
    started = time.perf_counter()
    action()
    page.wait_for_function(condition, timeout=timeout_s * 1000, polling=10)
    return time.perf_counter() - started


LAST_UPDATE = "() => [...document.querySelectorAll('[data-testid=stCaptionContainer]')]" \
              ".map(e => e.textContent).find(t => t.startsWith('Last update')) || ''"


def _changed(before: str) -> str:
    return f"() => {{ const t = ({LAST_UPDATE})(); return t !== '' && t !== {before!r}; }}"


def measure(url: str, repeat: int) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_text("How it works").wait_for(timeout=60_000)
        runs_link = page.locator("[data-testid=stSidebarNavLink]", has_text="Runs").first
        home_link = page.locator("[data-testid=stSidebarNavLink]", has_text="Home").first
        page_loads = []
        for _ in range(repeat + 1):  # the first load warms the server's imports
            page_loads.append(time_until(page, runs_link.click,
                                         f"() => ({LAST_UPDATE})() !== ''"))
            home_link.click()
            page.get_by_text("How it works").wait_for()
        refresh = page.get_by_role("button", name="Refresh")
        runs_link.click()
        refresh.wait_for()
        fragments, server = [], []
        for _ in range(repeat + 1):
            # Click just after a timer tick, so the next tick (1 s later) cannot be mistaken
            # for the clicked refresh.
            page.wait_for_function(_changed(page.evaluate(LAST_UPDATE)), polling=10)
            fragments.append(time_until(page, refresh.click,
                                        _changed(page.evaluate(LAST_UPDATE))))
            server.append(float(re.search(r"took ([\d.]+) s",
                                          page.evaluate(LAST_UPDATE)).group(1)))
        browser.close()
    return page_loads[1:], fragments[1:], server[1:]


def measure_start(url: str, path: str, query: dict, repeat: int, db: Path
                  ) -> tuple[list[float], list[float]]:
    """Click-to-first-point seconds of `repeat` runs started from a freshly loaded page, and
    each run's seconds from being queued to being claimed by a worker."""
    from urllib.parse import urlencode

    from playwright.sync_api import sync_playwright

    from divebatch.runs import control_requests
    store = RunStore(db)
    seconds, first_id = [], max((run["id"] for run in store.list_runs(limit=1)), default=0)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        for _ in range(repeat):
            wait_idle(store)
            page.goto(f"{url}/{path}?{urlencode(query)}")
            start = page.get_by_role("button", name="Start run")
            start.wait_for(timeout=300_000)
            page.wait_for_timeout(300)  # let the page settle (the URL sync reruns it once)
            seconds.append(time_until(page, start.click, FIRST_POINT, timeout_s=300))
            print(f"  {path}: {seconds[-1]:.2f} s", file=sys.stderr, flush=True)
            for run in store.list_runs(status=("queued", "running")):
                # the next Start needs the worker free
                control_requests.request_stop(store, run["id"])
        wait_idle(store)
        browser.close()
    claims = [run["started_at"] - run["created_at"] for run in store.list_runs()
              if run["id"] > first_id and run["started_at"]]
    return seconds, claims


def wait_idle(store: RunStore, timeout_s: float = 300.0) -> None:
    """Until no run is queued or running and a warm worker (if any) is free."""
    deadline = time.monotonic() + timeout_s
    while store.list_runs(status=("queued", "running")) and time.monotonic() < deadline:
        time.sleep(0.1)


def start_latency(repeat: int, cold: int) -> None:
    from divebatch.runs import warm_pool
    for warm, times in (("1", repeat), ("0", cold)):
        if not times:
            continue
        with tempfile.TemporaryDirectory() as folder:
            db = Path(folder) / "runs.db"
            env = {"DIVEBATCH_WARM_WORKERS": warm, "DIVEBATCH_MAX_WORKERS": "1"}
            os.environ.update(env)
            try:
                with dashboard_server(db, env=env) as url:
                    for name, path, query in START_CASES:
                        kind = "warm worker" if warm == "1" else "cold worker"
                        first_points, claims = measure_start(url, path, query, times, db)
                        report(f"Start to first point, {name}, {kind}", first_points,
                               START_TARGET_S)
                        report("  of which queued until a worker claimed the run", claims,
                               START_TARGET_S)
            finally:
                warm_pool.stop_warm_workers(RunStore(db))


def first_record(repeat: int) -> None:
    """Submit to first stored record: `repeat` runs with a warm worker, then `repeat` with a
    worker started for each run (the warm one stopped), on one temporary store."""
    from divebatch.runs import control_requests, queue, warm_pool
    from divebatch.presets import PRESETS
    config = PRESETS["convex"].config()
    times = {"warm": [], "cold": []}
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder) / "runs.db")
        os.environ["DIVEBATCH_MAX_WORKERS"] = "1"
        try:
            for kind in ("warm", "cold"):
                os.environ["DIVEBATCH_WARM_WORKERS"] = "1" if kind == "warm" else "0"
                warm_pool.keep_warm(store)
                while kind == "warm" and not any(w["ready_at"] for w in store.workers()):
                    time.sleep(0.05)
                for _ in range(repeat):
                    started = time.perf_counter()
                    run_id = queue.submit(store, config)
                    while not store.records(run_id):
                        time.sleep(0.01)
                    times[kind].append(time.perf_counter() - started)
                    print(f"  {kind} {times[kind][-1]:.2f} s", file=sys.stderr, flush=True)
                    control_requests.request_stop(store, run_id)
                    wait_idle(store)
                warm_pool.stop_warm_workers(store)
        finally:
            warm_pool.stop_warm_workers(store)
    for kind, seconds in times.items():
        report(f"submit to first record, convex preset, {kind} worker", seconds,
               START_TARGET_S)
    print(f"ratio cold / warm (medians): "
          f"{statistics.median(times['cold']) / statistics.median(times['warm']):.1f}x")


def report(name: str, seconds: list[float], target: float) -> None:
    median, worst = statistics.median(seconds), max(seconds)
    verdict = "OK" if median < target else "SLOWER THAN TARGET"
    print(f"{name}: median {median:.3f} s, max {worst:.3f} s over {len(seconds)} "
          f"(target < {target} s) {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--start", action="store_true",
                        help="measure click-on-Start to first chart point instead")
    parser.add_argument("--cold", type=int, default=0,
                        help="with --start: also this many runs without the warm pool")
    parser.add_argument("--first-record", action="store_true",
                        help="measure submit to first stored record, warm and cold")
    args = parser.parse_args()
    if args.first_record:
        first_record(args.repeat)
        print(f"load average after measuring: {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores")
        return 0
    if args.start:
        start_latency(args.repeat, args.cold)
        print(f"load average after measuring: {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "runs.db"
        started = time.perf_counter()
        running = fill_store(RunStore(db))
        print(f"store: {N_RUNS} runs x {N_EPOCHS} epochs written in "
              f"{time.perf_counter() - started:.1f} s; live runs {running}")
        with dashboard_server(db) as url:
            page_loads, fragments, server = measure(url, args.repeat)
    report("Runs page (100 runs, 4 live overlaid)", page_loads, RUNS_PAGE_TARGET_S)
    report("Live fragment refresh (4 runs, 5 charts), click to drawn", fragments,
           FRAGMENT_TARGET_S)
    report("  of which the fragment's script on the server", server, FRAGMENT_TARGET_S)
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
