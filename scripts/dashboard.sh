#!/usr/bin/env bash
# Install what the dashboard needs, then serve it on http://127.0.0.1:8501 (embedded
# defaults: a synthetic problem on the CPU, no data to download, no GPU needed).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet -r requirements.txt
exec python3 -m streamlit run app.py --server.address "${DIVEBATCH_ADDRESS:-127.0.0.1}" \
    --server.port "${DIVEBATCH_PORT:-8501}" --server.headless true \
    --browser.gatherUsageStats false "$@"
