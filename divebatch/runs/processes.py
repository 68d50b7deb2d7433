"""Is a worker process still alive, and is it the process we think it is?

Workers are recorded by pid; a pid can be reused by a newer process after the worker died, so
`started_after` compares the process's start time with when the worker was recorded.
"""

from __future__ import annotations

import os

PID_CLOCK_SLACK_S = 2.0  # /proc start times are whole-second boot time plus clock ticks


def pid_alive(pid: int | None) -> bool:
    """Whether process `pid` runs (a zombie, or a finished child of ours, does not)."""
    if not pid:
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own finished children
        if waited == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall through to the signal probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def started_after(pid: int, moment: float) -> bool:
    """True if process `pid` began after `moment` (unix seconds), so it is not the worker
    that marked the run running but a newer process given the same pid (Linux /proc;
    False where unknown)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(float(line.split()[1]) for line in handle if line.startswith("btime"))
    except (OSError, IndexError, ValueError, StopIteration):
        return False
    return boot + ticks / os.sysconf("SC_CLK_TCK") > moment + PID_CLOCK_SLACK_S
