#!/usr/bin/env bash
# Set up orderhub on this machine, idempotently: system packages, the services the tests use, the venv.
# Usage: bash infra/setup.sh        (then: .venv/bin/orderhub demo, or bash infra/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# 1. system packages: client libraries for mysqlclient, ODBC drivers for the pyodbc code paths
PKGS="libmariadb-dev pkg-config unixodbc unixodbc-dev odbc-mariadb odbc-postgresql tdsodbc"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  say "installing system packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# 2. services (already running on a fresh machine of this kind; started here if down)
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  say "starting PostgreSQL"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! mariadb-admin -h 127.0.0.1 -uroot ping >/dev/null 2>&1; then
  say "starting MariaDB"
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
for i in $(seq 1 60); do
  pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && mariadb-admin -h 127.0.0.1 -uroot ping >/dev/null 2>&1 && break
  sleep 1
done

# 3. the Python environment (Python 3.11)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || { say "creating .venv with $PY"; "$PY" -m venv .venv; }
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
say "installing orderhub and its dependencies into .venv"
.venv/bin/python -m pip install -q -e ".[dev,columnar]" 2>&1 | grep -v -E "Requires-Python|WARNING: Location|^\s*$" || true
.venv/bin/python -c "import orderhub.transforms, prefect, singer_sdk" >/dev/null
say "ready: .venv/bin/orderhub --help"
