#!/usr/bin/env bash
# Refresh docs/screenshots/ from the browser tests (the test run itself writes its pictures to
# a temporary folder, never here). Run scripts/test.sh once first: it sets up .venv and chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
DIVEBATCH_SCREENSHOTS="$PWD/docs/screenshots" .venv/bin/python -m pytest \
    tests/dashboard/test_e2e_browser.py -m browser -q -p no:randomly "$@"
