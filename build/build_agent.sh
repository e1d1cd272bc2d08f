#!/usr/bin/env bash
# Build the one-file agent executable dist/octo-agent (linux-x86_64) from agent.spec, then
# print its size and SHA-256. The same code path the appliance uses to build it on demand:
# octo_appliance.builds.agent. The version stamped in is $OCTO_AGENT_BUILD_VERSION, else
# --version V, else the package's.
# Usage: bash build/build_agent.sh [--version V]   (needs .venv with the [test] extras)
set -euo pipefail
cd "$(dirname "$0")/.."

# (without PyInstaller it says so, with the pip command that brings it)
exec "${PYTHON:-.venv/bin/python}" -m octo_appliance.builds.agent dist "$@"
