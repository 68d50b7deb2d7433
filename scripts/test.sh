#!/usr/bin/env bash
# Install the test tools (and Debian's chromium for the browser tests), then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet -r requirements-dev.txt
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
    fi
fi
exec python3 -m pytest "$@"
