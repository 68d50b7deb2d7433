#!/usr/bin/env bash
# Install what the dashboard needs, then serve it on http://127.0.0.1:8501 (embedded
# defaults: a synthetic problem on the CPU, no data to download, no GPU needed).
#   scripts/dashboard.sh --viewer   a read-only twin on the same store for a class, on
#                                   port 8502 (DIVEBATCH_ROLE=viewer; see README, Security)
set -euo pipefail
cd "$(dirname "$0")/.."
port=8501
if [[ "${1:-}" == "--viewer" ]]; then
    shift
    export DIVEBATCH_ROLE=viewer
    port=8502
fi
python3 -m pip install --quiet -r requirements.txt
exec python3 -m streamlit run app.py --server.address "${DIVEBATCH_ADDRESS:-127.0.0.1}" \
    --server.port "${DIVEBATCH_PORT:-$port}" --server.headless true \
    --browser.gatherUsageStats false "$@"
