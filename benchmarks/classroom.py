"""A class watching the live panel: N viewers of one read-only dashboard
(DIVEBATCH_ROLE=viewer, the Runs page with the runs linked, ?runs=...) while 4 runs of 600
epochs each grow by an epoch a second (this process writes them, as workers would).

    python benchmarks/classroom.py --clients 1,10,30   # viewers on their own machines
    python benchmarks/classroom.py --browsers 1,5,10   # chromium pages on this machine
    python benchmarks/classroom.py --browsers 1 --paths full,grow  # old and new charts
    (--paths: the live charts' paths, each on its own server in turn, side by side in one run:
    "grow", the charts growing in the browser (dashboard/growing_panel.py), and "full", the
    former path that resends and redraws every chart each update, DIVEBATCH_LIVE_CHARTS=full)
    python benchmarks/classroom.py --floor             # Streamlit's own cost per update
    python benchmarks/classroom.py --in-process        # the fragment's CPU, no server

--clients: viewers that speak Streamlit's websocket protocol and draw nothing
(benchmarks/protocol_viewers.py), arriving over ARRIVE_S seconds as a class opening a link,
measured from SETTLE_S seconds after the last one loaded.
In a classroom every browser has its own machine and the server is what they share: this is
the server's cost and the gaps between each viewer's updates for that class, 30 included.

--browsers: real chromium pages, sharing this machine's cores with the server. Also reports
what the browsers spend per update: with ten of them that, not the server, sets the gaps.

--floor: the same clients on benchmarks/floor_app.py, a fragment that reruns every second
drawing only its "Last update" line, then also the live panel's charts built once, next to
the dashboard: Streamlit's own cost per update, what sending the charts adds, and what
reading and building them adds; and each server's CPU per second before any viewer came.

Reported per N: how many viewers loaded (and the slowest), the gaps between each viewer's
updates (median, 95th percentile, worst), and the server process's CPU seconds (from /proc)
per viewer update.
Targets (issue #18): at most 0.02 CPU-s per viewer update, and every viewer loads and sees an
update at least every 2 s.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import protocol_viewers  # noqa: E402
from benchmarks.dashboard import LAST_UPDATE, METHODS, N_TRAIN, synthetic_records  # noqa: E402
from tests.helpers.serve import dashboard_server, launch_chromium, server_pid  # noqa: E402
from divebatch.runs.store import RunStore  # noqa: E402

LIVE_EPOCHS, EPOCH_EVERY_S, WATCH_S = 600, 1.0, 30.0
ARRIVE_S, SETTLE_S = 5.0, 15.0  # clients: the class arrives, then the page loads settle
IDLE_S = 10.0
PER_UPDATE_TARGET_S, GAP_TARGET_S = 0.02, 2.0
BROWSER_TARGET_S = 0.05  # a chromium page's CPU per update (issue #29)
VIEWER_ROLE = {"DIVEBATCH_ROLE": "viewer"}
CHARTS = "[class*=_chart_legend]"  # the live charts' top, on either path

# In each viewer's page: the browser-clock times at which the "Last update" line changed,
# seen by a MutationObserver (a timer polling the page 20 times a second cost the page
# about 0.01 CPU-s per second, a fifth of issue #29's budget).
RECORD_UPDATES = f"""() => {{ window.updates = []; window.cpus = []; let seen = null;
  const record = () => {{ const t = ({LAST_UPDATE})();
    if (t && t !== seen) {{ seen = t; window.updates.push(performance.now() / 1000);
      const cpu = /([\\d.]+) CPU-s/.exec(t); if (cpu) {{ window.cpus.push(+cpu[1]); }} }} }};
  new MutationObserver(record).observe(document.body, {{subtree: true, childList: true,
                                                        characterData: true}});
  record(); }}"""


def live_store(store: RunStore) -> list[int]:
    """4 runs (the race's methods) of LIVE_EPOCHS epochs, marked running by this process."""
    rng, ids = random.Random(1), []
    for method in METHODS:
        config = {"problem": "classification", "epochs": 2 * LIVE_EPOCHS,
                  "max_batch_size": 1024, "delta": 0.1, "seed": 0, **method}
        run_id = store.create_run(config, group="class")
        store.update_info(run_id, n_train=N_TRAIN)
        for record in synthetic_records(rng, method["batch_size"], LIVE_EPOCHS):
            store.append_record(run_id, record)
        store.mark_running(run_id, os.getpid())
        ids.append(run_id)
    return ids


def keep_training(store: RunStore, run_ids: list[int], stop) -> None:
    """A new epoch for every run each EPOCH_EVERY_S, as live workers would write them."""
    rng = random.Random(2)
    while not stop.wait(EPOCH_EVERY_S):
        for run_id in run_ids:
            last = store.records(run_id)[-1]
            epoch = last["epoch"] + 1
            store.append_record(run_id, {**last, "epoch": epoch,
                                         "samples_seen": last["samples_seen"] + N_TRAIN,
                                         "step": last["step"] + 10,
                                         "val_loss": 2.0 / epoch ** 0.5 * rng.uniform(.9, 1.1)})


def server_cpu_seconds(url: str) -> float:
    """utime + stime of the `streamlit run` process serving `url` (Linux /proc)."""
    fields = Path(f"/proc/{server_pid(url)}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def browser_cpu_seconds() -> float:
    """utime + stime of the chromium processes this benchmark started (Linux /proc: this
    process's descendants; other chromium on a shared machine is not counted): the viewers'
    own work, which shares the cores with the server here."""
    parents, stats = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, fields = stat.read_text().rsplit(") ", 1)
        except OSError:
            continue
        fields = fields.split()
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        stats[pid] = (name.split("(", 1)[1], int(fields[11]) + int(fields[12]))
    ours, grown = {os.getpid()}, True
    while grown:
        grown = {pid for pid, parent in parents.items() if parent in ours} - ours
        ours |= grown
    ticks = sum(stats[pid][1] for pid in ours if pid in stats and "chrom" in stats[pid][0])
    return ticks / os.sysconf("SC_CLK_TCK")


def watch_in_browsers(url: str, viewers: int, run_ids: list[int]) -> dict:
    """Open `viewers` pages on the Runs page with the live runs linked, wait until each shows
    its first update (load time), scroll its charts into view (the legend at the top: a page
    draws the charts it shows), then count every viewer's updates for WATCH_S seconds."""
    from playwright.sync_api import sync_playwright
    link = f"{url}/runs?runs={','.join(map(str, run_ids))}"
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        pages, loads = [], []
        for _ in range(viewers):
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            started = time.perf_counter()
            page.goto(link, wait_until="commit", timeout=150_000)
            pages.append((page, started))
        for page, started in pages:
            try:
                page.wait_for_function(f"() => ({LAST_UPDATE})() !== ''", timeout=150_000,
                                       polling=100)
                loads.append(time.perf_counter() - started)
                page.evaluate(RECORD_UPDATES)
                page.wait_for_selector(CHARTS, timeout=150_000)
                page.evaluate(f"() => document.querySelector('{CHARTS}')"
                              ".scrollIntoView({block: 'start'})")
            except Exception:  # a viewer that never loads is counted, not fatal
                loads.append(None)
        now = "() => performance.now() / 1000"  # each page's own clock
        starts = [page.evaluate(now) for page, _ in pages]
        cpu_before, wall_before = server_cpu_seconds(url), time.perf_counter()
        browser_before = browser_cpu_seconds()
        time.sleep(WATCH_S)
        cpu = server_cpu_seconds(url) - cpu_before
        browser_cpu = browser_cpu_seconds() - browser_before
        wall = time.perf_counter() - wall_before
        stamps = [[t for t in page.evaluate("() => window.updates || []") if t >= start]
                  for (page, _), start in zip(pages, starts)]  # the window's updates only
        script_cpu = [c for page, _ in pages for c in page.evaluate("() => window.cpus || []")]
        drawn = [page.evaluate("() => window.growingStats || null") for page, _ in pages]
        browser.close()
    loads_and_cost = _gaps_and_cost(viewers, loads, stamps, cpu, wall)
    return {**loads_and_cost, "browser_cpu_per_update_s": browser_cpu / max(
                loads_and_cost["updates"], 1),
            "script_cpu_median_s": statistics.median(script_cpu) if script_cpu else None,
            "charts_drawn": _charts_drawn(drawn)}


def _charts_drawn(stats: list[dict | None]) -> str:
    """How the growing charts drew their updates since the pages loaded, summed over pages."""
    stats = [s for s in stats if s]
    if not stats:
        return ""
    in_place, redrawn = (sum(s.get(key, 0) for s in stats) for key in ("inPlace", "redrawn"))
    return f", charts drawn in place {in_place} times, redrawn by plotly {redrawn} times"


@contextmanager
def live_runs():
    """A temporary store with the 4 live runs, growing while the block runs: (db, run ids)."""
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "runs.db"
        store = RunStore(db)
        run_ids = live_store(store)
        stop = threading.Event()
        writer = threading.Thread(target=keep_training, args=(store, run_ids, stop))
        writer.start()
        try:
            yield db, run_ids
        finally:
            stop.set()
            writer.join()
            for run_id in run_ids:
                store.mark_finished(run_id, "stopped")


def watch_as_clients(url: str, viewers: int, run_ids: list[int] = (), page: str = "runs",
                     query: str = "") -> dict:
    """`viewers` protocol-level viewers of url/page?query, arriving over ARRIVE_S seconds;
    SETTLE_S after all of them show a first update (the page loads' CPU has passed out of
    the refresh's load window), WATCH_S seconds of their updates."""
    query = query or _runs_query(run_ids)
    seen = protocol_viewers.watch(url, page, query, viewers, WATCH_S,
                                  lambda: server_cpu_seconds(url), arrive_over_s=ARRIVE_S,
                                  settle_s=SETTLE_S)
    stamps = [seen.updates_in_window(viewer) for viewer in seen.viewers]
    lines = [line for viewer in seen.viewers for line in viewer.lines[1:]]
    script_cpu = [float(m.group(1)) for line in lines
                  if (m := re.search(r"([\d.]+) CPU-s", line))]
    loads = [viewer.load_s for viewer in seen.viewers]
    received = sum(viewer.received_bytes for viewer in seen.viewers)
    updates = sum(len(viewer.updates) for viewer in seen.viewers)
    return {**_gaps_and_cost(viewers, loads, stamps, seen.server_cpu_s, seen.window_s),
            "script_cpu_median_s": statistics.median(script_cpu) if script_cpu else None,
            "kb_per_update": received / max(updates, 1) / 1000,
            "errors": [viewer.error for viewer in seen.viewers if viewer.error]}


def _gaps_and_cost(viewers: int, loads: list, stamps: list[list[float]], cpu: float,
                   wall: float) -> dict:
    gaps = [b - a for times in stamps for a, b in zip(times, times[1:])]
    worst = [max([b - a for a, b in zip(t, t[1:])], default=WATCH_S) for t in stamps]
    updates = sum(len(times) for times in stamps)
    return {"viewers": viewers, "loaded": sum(t is not None for t in loads),
            "load_max_s": max((t for t in loads if t is not None), default=None),
            "updates": updates, "cpu_s": cpu, "wall_s": wall,
            "cpu_per_update_s": cpu / max(updates, 1),
            "gap_median_s": statistics.median(gaps) if gaps else None,
            "gap_p95_s": statistics.quantiles(gaps, n=20)[-1] if len(gaps) > 1 else None,
            "gap_worst_s": max(worst)}


def measure_clients(counts: list[int], paths: tuple[str, ...] = ("grow",)) -> list[dict]:
    return _measure(counts, paths, watch_as_clients, "client(s)")


def measure_browsers(counts: list[int], paths: tuple[str, ...] = ("grow",)) -> list[dict]:
    return _measure(counts, paths, watch_in_browsers, "browser(s)")


def _measure(counts: list[int], paths: tuple[str, ...], watch, kind: str) -> list[dict]:
    """Per count, each live-chart path in turn on a fresh server and store."""
    rows = []
    for viewers in counts:
        for path in paths:
            env = {**VIEWER_ROLE, "DIVEBATCH_LIVE_CHARTS": path}
            with live_runs() as (db, run_ids), dashboard_server(db, env=env) as url:
                rows.append(watch(url, viewers, run_ids))
            report_class(rows[-1], f"{kind}, charts {path}")
    return rows


def measure_floor(viewers: int) -> None:
    """Streamlit's own cost per update, what sending the charts adds, then the dashboard,
    each with `viewers` clients on a fresh server and the same growing runs."""
    cases = (("Streamlit alone: a fragment drawing one line", "benchmarks/floor_app.py", {}),
             ("the same, drawing the live panel's charts built once",
              "benchmarks/floor_app.py", {"FLOOR": "charts"}),
             ("the dashboard (store read, chart build, table, progress)", "app.py", {}))
    rows = []
    for name, app, env in cases:
        with live_runs() as (db, run_ids):
            env = {**VIEWER_ROLE, **env, "FLOOR_RUNS": ",".join(map(str, run_ids))}
            page, query = ("runs", _runs_query(run_ids)) if app == "app.py" else ("", "")
            with dashboard_server(db, env=env, app=app) as url:
                idle = idle_cpu_per_second(url)
                rows.append(watch_as_clients(url, viewers, page=page, query=query))
        print(f"{name}: {rows[-1]['cpu_per_update_s']:.4f} server CPU-s per viewer update "
              f"({viewers} clients, {rows[-1]['updates']} updates, "
              f"{rows[-1]['kb_per_update']:.0f} kB each); with no viewer {idle:.4f} CPU-s "
              f"per second")
    floor, charts, dashboard = (row["cpu_per_update_s"] for row in rows)
    print(f"per viewer update: Streamlit {floor:.4f} s + sending the charts "
          f"{charts - floor:.4f} s + reading and building them {dashboard - charts:.4f} s "
          f"(shared by all viewers); load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")


def idle_cpu_per_second(url: str) -> float:
    """The server's CPU seconds per second with no viewer connected (over IDLE_S)."""
    before, started = server_cpu_seconds(url), time.monotonic()
    time.sleep(IDLE_S)
    return (server_cpu_seconds(url) - before) / (time.monotonic() - started)


def _runs_query(run_ids: list[int]) -> str:
    return "runs=" + ",".join(map(str, run_ids))


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def report_class(row: dict, kind: str) -> None:
    ok = (row["loaded"] == row["viewers"] and row["gap_worst_s"] <= GAP_TARGET_S
          and row["cpu_per_update_s"] <= PER_UPDATE_TARGET_S)
    extra = (f"; the browsers: {row['browser_cpu_per_update_s']:.3f} CPU-s per update "
             f"(issue #29's target <= {BROWSER_TARGET_S} s){row.get('charts_drawn', '')}"
             if "browser_cpu_per_update_s" in row else
             f"; {row['kb_per_update']:.0f} kB per update" if "kb_per_update" in row else "")
    errors = f"; errors: {row['errors'][:2]}" if row.get("errors") else ""
    print(f"{row['viewers']:>2} {kind}: {row['loaded']} loaded (slowest "
          f"{row['load_max_s'] or float('nan'):.1f} s), {row['updates']} updates in "
          f"{row['wall_s']:.0f} s, gap median {row['gap_median_s'] or float('nan'):.2f} s / "
          f"95th percentile {row['gap_p95_s'] or float('nan'):.2f} s / "
          f"worst {row['gap_worst_s']:.2f} s, server CPU {row['cpu_s']:.1f} s = "
          f"{row['cpu_s'] / row['wall_s']:.0%} of a core = {row['cpu_per_update_s']:.4f} s "
          f"per viewer update (the update's own thread: median "
          f"{_or_nan(row['script_cpu_median_s']):.4f} s){extra}{errors} "
          f"({'OK' if ok else 'MISSES A TARGET'}: <= {PER_UPDATE_TARGET_S} s, every "
          f"viewer loads, gap <= {GAP_TARGET_S} s); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def measure_fragment_in_process(repeat: int = 20) -> None:
    """The live fragment's server work per viewer update without a browser: live.charts_fragment
    called directly (Streamlit's bare mode: elements are built and serialised, not sent) on
    the same 4 runs x LIVE_EPOCHS, once with the charts already built by another viewer and
    once after a new epoch of every run (store read and chart build included); and the
    time-to-target table's fragment, live.table_fragment, rebuilding the table."""
    import logging
    logging.disable(logging.WARNING)  # bare mode warns on every element
    with tempfile.TemporaryDirectory() as folder:
        os.environ["DIVEBATCH_DB"] = str(Path(folder) / "runs.db")
        os.environ["DIVEBATCH_WARM_WORKERS"] = "0"  # the fragment's dispatch would start one
        store = RunStore(os.environ["DIVEBATCH_DB"])
        run_ids = live_store(store)
        from dashboard import live, live_cache
        from divebatch.report.figures import ChartOptions
        statuses, options = {i: "running" for i in run_ids}, ChartOptions(log_y=True)

        def timed(draw) -> float:
            started = time.process_time()
            draw()
            return time.process_time() - started

        def update() -> float:
            return timed(lambda: live.charts_fragment("runs", statuses, options, 1.0))

        update()  # imports
        shared_cost = statistics.median(update() for _ in range(repeat))
        fresh, tables = [], []
        for _ in range(5):
            for run_id in run_ids:
                last = store.records(run_id)[-1]
                store.append_record(run_id, {**last, "epoch": last["epoch"] + 1})
            live_cache.forget("snapshots", "charts")
            fresh.append(update())
            live_cache.forget("tables")
            tables.append(timed(lambda: live.table_fragment(run_ids)))
        for run_id in run_ids:
            store.mark_finished(run_id, "stopped")
    charts, table = statistics.median(fresh), statistics.median(tables)
    per_second = charts / live_cache.REBUILD_EVERY_S + table / live_cache.TABLE_EVERY_S
    print(f"fragment in process, 4 runs x {LIVE_EPOCHS} epochs, 5 charts: "
          f"{shared_cost:.4f} CPU-s per viewer update when the charts are already built; "
          f"the update that reads the store and builds them (at most once a second per set "
          f"of runs and options): {charts:.4f} CPU-s; the time-to-target table's fragment "
          f"rebuilding it (at most every {live_cache.TABLE_EVERY_S:g} s while runs train): "
          f"{table:.4f} CPU-s: {per_second:.4f} CPU-s per second in all; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="", help="e.g. 1,10,30 protocol-level viewers")
    parser.add_argument("--browsers", default="", help="e.g. 1,5,10 chromium viewers")
    parser.add_argument("--paths", default="full,grow",
                        help="live-chart paths measured side by side: full, grow (both)")
    parser.add_argument("--floor", type=int, nargs="?", const=10, default=0,
                        help="Streamlit's own cost per update, with this many clients (10)")
    parser.add_argument("--in-process", action="store_true",
                        help="the live fragment's CPU per viewer update, without a server")
    args = parser.parse_args()
    if not (args.clients or args.browsers or args.floor or args.in_process):
        parser.error("choose --clients, --browsers, --floor or --in-process")
    if args.clients:
        measure_clients([int(n) for n in args.clients.split(",")], args.paths.split(","))
    if args.browsers:
        measure_browsers([int(n) for n in args.browsers.split(",")], args.paths.split(","))
    if args.floor:
        measure_floor(args.floor)
    if args.in_process:
        measure_fragment_in_process()
    return 0


if __name__ == "__main__":
    sys.exit(main())
