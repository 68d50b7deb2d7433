#!/usr/bin/env bash
# Set up .venv (Python >= 3.11) with the test tools and Ray, install Debian's chromium with apt
# for the real-browser tests (as root, or through sudo), then run every test.
#   DIVEBATCH_SKIP_BROWSER=1 scripts/test.sh   no apt, no chromium: the browser tests are skipped
# The tests run in 2 processes (pytest-xdist; up to 4 on a machine with more cores), the
# browser and Ray tests one after the other in one of them (tests/conftest.py).
# Extra arguments go to pytest (e.g. -k store, -x; -n 0 runs everything in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
install_into_venv "test,ray"
browser_args=()
if [ -n "${DIVEBATCH_SKIP_BROWSER:-}" ]; then
    browser_args=(-m "not browser")
elif ! command -v chromium >/dev/null 2>&1; then
    as_root apt-get update -qq && as_root apt-get install -y -qq chromium >/dev/null
fi
workers=$(.venv/bin/python -c "import os; print(min(4, max(2, len(os.sched_getaffinity(0)))))")
exec .venv/bin/python -m pytest -n "$workers" --dist loadgroup "${browser_args[@]}" "$@"
