"""Steps timed round-robin in one process (CPU clock of this process), with the minor page
faults each step causes: what conv_cost_constant.py and hook_floor.py compare; and one call
timed alone (``median_ms``)."""

from __future__ import annotations

import resource
import statistics
import time

import torch

import diversity_overhead as overhead


def page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def median_ms(fn, repeats: int = 15) -> float:
    """Milliseconds of CPU time of one call of ``fn``, median over ``repeats`` after one."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return statistics.median(times) * 1e3


def time_steps(steps: dict, counts: dict, rounds: int) -> tuple[dict, dict]:
    """{name: [seconds per step, one per round]}, {name: [page faults per step, ...]}, each
    step timed over a block of counts[name] steps per round, the steps in turn."""
    seconds = {name: [] for name in steps}
    faults = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            before = page_faults()
            seconds[name].append(overhead.time_block(step, counts[name], torch.device("cpu"),
                                                     time.process_time))
            faults[name].append((page_faults() - before) / counts[name])
    return seconds, faults


def print_table(title: str, column: str, seconds: dict, faults: dict, unit: float = 1e3,
                unit_name: str = "ms", digits: int = 2, fault_digits: int = 0) -> None:
    """A Markdown table: each step's median time, its ratio to "plain", its page faults."""
    plain = statistics.median(seconds["plain"])
    print(title)
    print(f"| {column} | {unit_name} / step | vs plain | page faults / step |")
    print("| --- | ---: | ---: | ---: |")
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"| {name} | {median * unit:.{digits}f} | "
              f"{median / plain:.2f}x | {statistics.median(faults[name]):.{fault_digits}f} |")
