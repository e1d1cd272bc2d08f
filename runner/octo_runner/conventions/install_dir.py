"""Copy the release folder to a custom installation directory (``install_dir``).

With ``purge`` the directory is emptied first (its own entry stays, so its owner and
permissions do too), except for what matches ``purge_exclusions`` (patterns relative to the
directory, as Calamari's purge exclusions: a matching folder is kept whole, and a folder that
holds a kept entry stays). Each file is copied to a temporary name beside its destination and
renamed over it, so a running application never reads a half-written file and an existing
link at that name is replaced rather than written through. Links in the package are copied
as links. Folders that already exist are kept (a folder link the operator put there is
followed). The directory may not be ``/``, contain the applications folder, or lie inside
the release folder: purging or copying there would destroy the source.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from ..cancellation import CancelToken
from ..errors import RunnerError
from ..protocol import EventWriter
from . import Canceled
from .files import COPY_BUFFER, describe_os_error, is_within, replacing
from .globs import compile_pattern, normalise


@dataclass
class Copied:
    files: int = 0
    links: int = 0
    purged: int = 0
    kept: int = 0


def check_target(target: str, source: str, applications_dir: str) -> str:
    """The absolute, normalised ``target``; ``RunnerError`` where it is unsafe."""
    full = os.path.normpath(target)
    real = os.path.realpath(full)
    problem = None
    if real == os.path.realpath(os.sep):
        problem = "it is the root folder"
    elif is_within(os.path.realpath(applications_dir), real):
        problem = "it contains the applications folder, where releases are extracted"
    elif is_within(real, os.path.realpath(source)):
        problem = "it lies inside the release folder"
    if problem:
        raise RunnerError(
            f"install_dir {full} cannot be used: {problem}",
            hint="choose a directory of its own, e.g. /opt/<application>",
        )
    return full


def install(
    source: str,
    target: str,
    purge: bool,
    applications_dir: str,
    events: EventWriter,
    cancel: CancelToken,
    purge_exclusions: Sequence[str] = (),
) -> Copied:
    """Copy ``source`` into ``target`` (emptied first when ``purge``, but for what matches
    ``purge_exclusions``)."""
    target = check_target(target, source, applications_dir)
    keep = [compile_pattern(normalise(p, "purge_exclusions")) for p in purge_exclusions]
    copied = Copied()
    try:
        os.makedirs(target, exist_ok=True)
        if purge:
            _purge(target, "", keep, copied)
            kept = f", kept {copied.kept} matching purge_exclusions" if keep else ""
            events.log("info", f"Purged {target}: removed {copied.purged} entries{kept}")
        _copy_tree(source, target, copied, cancel)
    except OSError as exc:
        raise RunnerError(
            f"cannot install to {target}: {describe_os_error(exc)}",
            hint="check that the agent's user may write there",
        ) from exc
    events.log("info", f"Copied {copied.files} files and {copied.links} links to {target}")
    return copied


def _purge(folder: str, prefix: str, keep: list[re.Pattern[str]], copied: Copied) -> bool:
    """Empty ``folder`` but for entries matching ``keep``; whether anything was kept."""
    kept_any = False
    with os.scandir(folder) as entries:
        for entry in list(entries):
            relative = prefix + entry.name
            is_folder = entry.is_dir(follow_symlinks=False)
            before = copied.purged
            if any(pattern.match(relative) for pattern in keep):
                copied.kept += 1
                kept_any = True
            elif is_folder and keep and _purge(entry.path, relative + "/", keep, copied):
                kept_any = True  # it holds a kept entry, so the folder stays
            elif is_folder:
                copied.purged = before  # a folder removed whole counts as one entry
                shutil.rmtree(entry.path)
                copied.purged += 1
            else:
                os.unlink(entry.path)
                copied.purged += 1
    return kept_any


def _copy_tree(source: str, target: str, copied: Copied, cancel: CancelToken) -> None:
    for folder, dirs, files in os.walk(source, followlinks=False):
        if cancel.cancelled:
            raise Canceled(f"{cancel.reason}: installation stopped")
        relative = os.path.relpath(folder, source)
        destination = target if relative == "." else os.path.join(target, relative)
        for name in list(dirs):
            path = os.path.join(folder, name)
            if os.path.islink(path):
                dirs.remove(name)  # a link to a folder is copied as a link
                files.append(name)
            else:
                _folder(os.path.join(destination, name))
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                _link(os.readlink(path), os.path.join(destination, name))
                copied.links += 1
            else:
                _file(path, os.path.join(destination, name))
                copied.files += 1


def _folder(path: str) -> None:
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        os.unlink(path)
    os.mkdir(path, 0o755)


def _clear(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise RunnerError(
            f"cannot install {path}: a folder of that name is in the way",
            hint="remove it, or use purge to empty the installation directory first",
        )


def _file(source: str, destination: str) -> None:
    _clear(destination)
    with replacing(destination) as (fd, temp):
        with os.fdopen(fd, "wb") as out, open(source, "rb") as data:
            shutil.copyfileobj(data, out, COPY_BUFFER)
        shutil.copystat(source, temp)


def _link(target: str, destination: str) -> None:
    _clear(destination)
    folder, name = os.path.split(destination)
    temp = os.path.join(folder, f".octo-{os.getpid()}-{name}")
    if os.path.lexists(temp):
        os.unlink(temp)
    os.symlink(target, temp)
    os.replace(temp, destination)
