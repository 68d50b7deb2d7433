#!/usr/bin/env bash
# Set up .venv (Python >= 3.11) with the test tools and Ray, install Debian's chromium with apt
# for the real-browser tests (as root, or through sudo), then run every test.
#   DIVEBATCH_SKIP_BROWSER=1 scripts/test.sh   no apt, no chromium: the browser tests are skipped
# Extra arguments go to pytest (e.g. -k store, -x).
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
exec .venv/bin/python -m pytest "${browser_args[@]}" "$@"
