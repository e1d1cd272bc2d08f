#!/usr/bin/env bash
# Set up the appliance on a fresh machine and run it on its embedded defaults: SQLite and a
# self-signed certificate in the data dir, admin credentials generated and printed once.
# Extra arguments go to `octo-appliance serve`, e.g. `bash build/run.sh --listen 127.0.0.1:8443`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
# As root the built-in worker runs scripts as the unprivileged account octo-worker, never as
# root (docs/security.md); serve creates it too when missing, this makes it visible up front.
if [ "$(id -u)" = 0 ] && ! id octo-worker >/dev/null 2>&1 && command -v useradd >/dev/null; then
    nologin=$(command -v nologin || echo /bin/false)
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell "$nologin" octo-worker
fi
exec .venv/bin/octo-appliance serve "$@"
