#!/usr/bin/env bash
# Build the single executable dist/octo-appliance: appliance.spec makes a PyInstaller one-folder
# build (dist/octo-appliance.folder), build/pack_onefile.py packs it behind the launcher
# (build/launcher/octo_launcher.c, which unpacks it once per user: docs/executable-cache.md);
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

if ! command -v "${CC:-gcc}" >/dev/null; then
    echo "error: no C compiler (${CC:-gcc}) for the launcher" >&2
    echo "hint: install gcc and liblzma's headers (apt-get install gcc liblzma-dev)" >&2
    exit 1
fi
# liblzma linked in statically: the launcher runs before anything is unpacked, on machines
# that may lack the library
"${CC:-gcc}" -O2 -s -Wall -Wextra -Werror -o build/work/octo-launcher \
    build/launcher/octo_launcher.c -l:liblzma.a

binary=dist/octo-appliance
"$PYTHON" build/pack_onefile.py build/work/octo-launcher dist/octo-appliance.folder "$binary"
size=$(stat -c %s "$binary")
sha=$(sha256sum "$binary" | cut -d' ' -f1)
echo "built $binary"
echo "size: $size bytes ($((size / 1048576)) MiB)"
echo "sha256: $sha"
