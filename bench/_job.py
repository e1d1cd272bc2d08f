"""The job ``bench/fanout.py`` times, defined once for every tool that does it.

Each target receives ``MyApp.1.0.0.zip`` (incompressible random data, made once per bench
run), extracts it into a fresh folder and runs :data:`SCRIPT` there: it hashes every
extracted file into ``sha.txt`` and writes ``installed.marker``, which is what a real install
script does with its content. Octo runs :data:`SCRIPT` as the ``deploy-package`` step's Deploy
script in its extraction folder; the floor and the peers run :func:`install_command`, which
does the extraction with Python's ``zipfile`` and then the same script.

:func:`check_target` reads a target's ``sha.txt`` back and compares it with the digests
computed when the package was made, so a run that skipped the work cannot pass as fast.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ID = "MyApp"
PACKAGE_VERSION = "1.0.0"
PACKAGE_FILE = f"{PACKAGE_ID}.{PACKAGE_VERSION}.zip"
#: where the floor and the peers extract, inside each target directory
EXTRACT_DIR = "app"
#: files in the package; their sizes add up to the requested megabytes
PACKAGE_FILES = 10
MB = 1024 * 1024

#: the install script, run in the extraction folder (the same text for every tool)
SCRIPT = (
    "find . -type f ! -name sha.txt ! -name installed.marker -exec sha256sum {} + > sha.txt"
    " && touch installed.marker"
)


def install_command(target_dir: str, python: str) -> str:
    """Extract the package copied into ``target_dir`` (a shell word, quoted by the caller)
    into a fresh folder and run the script there (the floor and the peers; the bench removes
    the folder between runs, untimed). The extraction is ``python -m zipfile -e``: the same
    zipfile code Octo's runner extracts with (``unzip`` took 40% longer here), so the tools
    differ in how they orchestrate, not in how they unpack."""
    return (
        f"cd {target_dir} && mkdir {EXTRACT_DIR} && cd {EXTRACT_DIR}"
        f" && {python} -m zipfile -e ../{PACKAGE_FILE} . && {SCRIPT}"
    )


@dataclass(frozen=True)
class Package:
    path: Path
    sha256: str
    size: int
    #: ``sha256sum`` lines the script must write, sorted (``<hex>  ./<member>``)
    expected: tuple[str, ...]


def make_package(directory: Path, megabytes: int) -> Package:
    """A zip of :data:`PACKAGE_FILES` random files, ``megabytes`` MiB in all (deflated, as a
    real build writes it; random data does not shrink)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PACKAGE_FILE
    total = megabytes * MB
    sizes = [total // PACKAGE_FILES] * PACKAGE_FILES
    sizes[-1] += total - sum(sizes)
    lines = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for index, size in enumerate(sizes):
            data = os.urandom(size)
            name = f"lib/part-{index:02d}.bin"
            archive.writestr(name, data)
            lines.append(f"{hashlib.sha256(data).hexdigest()}  ./{name}")
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(MB):
            digest.update(chunk)
    return Package(path, digest.hexdigest(), path.stat().st_size, tuple(sorted(lines)))


def check_sha_file(sha_file: Path, package: Package, ignore: str = "") -> str | None:
    """None when ``sha_file`` holds exactly the package's digests, else what is wrong.
    Lines for paths starting with ``ignore`` (when given) are left out first."""
    try:
        lines = tuple(sorted(sha_file.read_text(encoding="utf-8").splitlines()))
    except FileNotFoundError:
        return f"{sha_file} is missing"
    if ignore:
        lines = tuple(line for line in lines if not line.partition("  ")[2].startswith(ignore))
    if lines != package.expected:
        return f"{sha_file} does not list the package's {len(package.expected)} digests"
    if not (sha_file.parent / "installed.marker").exists():
        return f"{sha_file.parent / 'installed.marker'} is missing"
    return None


def check_target(target_dir: Path, package: Package) -> str | None:
    """A floor or peer target after a run: package copied, extracted, script done."""
    if not (target_dir / PACKAGE_FILE).is_file():
        return f"{target_dir / PACKAGE_FILE} is missing"
    return check_sha_file(target_dir / EXTRACT_DIR / "sha.txt", package)


def empty_dir(directory: Path) -> None:
    """Remove what ``directory`` holds, keeping the directory itself."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
