#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run all of it:
# lint (ruff), types (mypy), and pytest (unit, API on SQLite and PostgreSQL, real-socket,
# binary smoke). Extra arguments go to pytest, e.g. `bash build/test.sh -k vault`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    python3 -m venv .venv
fi
echo "==> installing the appliance and its test tools into .venv"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"

if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
    # the SSH-target tests start their own sshd (tests/sshd.py); the package's own service
    # is not used (its config and host keys are never touched)
    echo "==> installing openssh-server (sshd for the SSH-target tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server
fi

echo "==> checking that PostgreSQL answers on 127.0.0.1:5432"
if ! .venv/bin/python - <<'PY'
import os, sys, psycopg
url = os.environ.get("OCTO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432") + "/postgres"
try:
    psycopg.connect(url, connect_timeout=5).close()
except Exception as exc:
    sys.exit(f"PostgreSQL is not reachable ({exc}); start it, e.g. pg_ctlcluster 15 main start")
PY
then
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
        sleep 2
    fi
fi

echo "==> checking that Debian's chromium is there (the portal's browser tests drive it)"
if [ ! -x /usr/bin/chromium ]; then
    # Playwright's own browser download cannot work here: the tests launch this one instead
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && apt-get install -y -q chromium
    else
        sudo apt-get update -q && sudo apt-get install -y -q chromium
    fi
fi

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
exec .venv/bin/python -m pytest "$@"
