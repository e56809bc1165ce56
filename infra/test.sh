#!/usr/bin/env bash
# The test command of the README (and of CI): set up, then run the whole suite against the real services.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
