#!/usr/bin/env bash
# Build the single executable dist/octo-appliance from appliance.spec (PyInstaller, one file),
# then print its size and SHA-256. Intermediate files go to build/work/ (git-ignored).
# Usage: bash build/build_appliance.sh   (needs .venv with the [test] extras: pyinstaller)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
    echo "error: PyInstaller is not installed for $PYTHON" >&2
    echo "hint: .venv/bin/python -m pip install -e '.[test]'" >&2
    exit 1
fi

"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/work appliance.spec

binary=dist/octo-appliance
size=$(stat -c %s "$binary")
sha=$(sha256sum "$binary" | cut -d' ' -f1)
echo "built $binary"
echo "size: $size bytes ($((size / 1048576)) MiB)"
echo "sha256: $sha"
