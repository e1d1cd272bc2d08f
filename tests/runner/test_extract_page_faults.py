"""Extracting a package touches little fresh memory: copies go through small buffers.

Copying 1 MiB at a time made every read a new 1 MiB object on fresh pages (~30,000 page
faults for a 50 MiB package); with 50 targets extracting at once on the 2-core machine that
was ~0.2 s of kernel time a target, the warm fan-out's gap to the floor (docs/performance.md,
"Page faults in the extraction"). Measured in a fresh process (its own fault counter), for a
zip and an install-directory copy; the bound is far above 64 KiB copies' count and far below
1 MiB copies'.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

MIB = 1024 * 1024
#: 10 files of 2 MiB: with 1 MiB copies the extraction faulted ~16,700 pages and the
#: install-directory copy ~4,800; with 64 KiB copies fewer than 20 each
FILES, FILE_BYTES = 10, 2 * MIB
FAULT_BOUND = 1000

_PROBE = """
import json, os, resource, sys
from octo_runner.cancellation import CancelToken
from octo_runner.conventions.extract import extract
from octo_runner.conventions.install_dir import install
from octo_runner.protocol import EventWriter
from octo_runner.masking import Masker
archive, apps, installed, what = sys.argv[1:5]
release = os.path.join(apps, "MyApp", "1.0.0")
events = EventWriter(open(os.devnull, "wb"), Masker())
if what == "install":
    extract(archive, "zip", release, events, CancelToken())
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
if what == "extract":
    extract(archive, "zip", release, events, CancelToken())
else:
    install(release, installed, False, apps, events, CancelToken())
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


@pytest.fixture
def package(tmp_path: Path) -> Path:
    archive = tmp_path / "MyApp.1.0.0.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for n in range(FILES):
            zf.writestr(f"bin/part-{n}.bin", os.urandom(FILE_BYTES))
    return archive


def _faults(archive: Path, tmp_path: Path, what: str) -> int:
    runner = Path(__file__).resolve().parents[2] / "runner"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
            str(archive),
            str(tmp_path / "apps"),
            str(tmp_path / "opt"),
            what,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(runner)),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout))


@pytest.mark.parametrize("what", ["extract", "install"])
def test_copying_a_package_s_files_faults_few_pages(
    package: Path, tmp_path: Path, what: str
) -> None:
    """``extract``: the release folder from the zip; ``install``: the release folder copied to
    an installation directory (``install_dir``)."""
    faults = _faults(package, tmp_path, what)
    assert faults < FAULT_BOUND, f"{what} of {FILES * FILE_BYTES // MIB} MiB faulted {faults} pages"
    copied = sorted(
        p.name for p in (tmp_path / ("opt" if what == "install" else "apps")).rglob("*.bin")
    )
    assert copied == sorted(f"part-{n}.bin" for n in range(FILES))
