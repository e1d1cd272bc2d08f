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
exec .venv/bin/octo-appliance serve "$@"
