#!/usr/bin/env bash
# The demo command of the README: set up, then run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
exec .venv/bin/orderhub demo "$@"
