#!/usr/bin/env bash
# Set up .venv (Python >= 3.11; the first time takes a few minutes), then serve the dashboard
# on http://127.0.0.1:8501 on its embedded defaults: a synthetic problem on the CPU, no data to
# download, no GPU needed.
#   scripts/dashboard.sh --viewer   a read-only twin on the same store for a class, on
#                                   port 8502 (DIVEBATCH_ROLE=viewer; see docs/user-guide.md)
#   DIVEBATCH_NO_SETUP=1            no .venv: serve with $PYTHON (else python3), already set up
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
port=8501
if [[ "${1:-}" == "--viewer" ]]; then
    shift
    export DIVEBATCH_ROLE=viewer
    port=8502
fi
python=.venv/bin/python
if [ -n "${DIVEBATCH_NO_SETUP:-}" ]; then python=${PYTHON:-python3}; else install_into_venv ""; fi
exec "$python" -m streamlit run server.py --server.address "${DIVEBATCH_ADDRESS:-127.0.0.1}" \
    --server.port "${DIVEBATCH_PORT:-$port}" --server.headless true \
    --browser.gatherUsageStats false "$@"
