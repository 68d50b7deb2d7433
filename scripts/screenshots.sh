#!/usr/bin/env bash
# Refresh docs/screenshots/ from the browser tests (the test run itself writes its pictures to
# a temporary folder, never here). Run scripts/test.sh once first: it sets up .venv and chromium.
# test_e2e_journey.py saves every page in every state of its runs' life, in normal mode
# (1440x900) and instructor mode (1280x720): page_state[_instructor].png.
set -euo pipefail
cd "$(dirname "$0")/.."
DIVEBATCH_SCREENSHOTS="$PWD/docs/screenshots" .venv/bin/python -m pytest \
    tests/dashboard/test_e2e_browser.py tests/dashboard/test_e2e_journey.py -m browser -q -p no:randomly "$@"
