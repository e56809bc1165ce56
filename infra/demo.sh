#!/usr/bin/env bash
# The demo command of the README: set up (idempotent), then start Prefect, the sandboxes, a worker and the
# deployments, run the syncs end to end and keep running until Ctrl-C.  `bash infra/demo.sh down` stops it
# from another terminal.  ORDERHUB_DEMO_PORT picks the UI port (default 4200; 0 = any free port).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-up}" = "down" ]; then exec .venv/bin/python -m orderhub.infra.demo down; fi
bash infra/setup.sh
exec .venv/bin/python -m orderhub.infra.demo up --port "${ORDERHUB_DEMO_PORT:-4200}"
