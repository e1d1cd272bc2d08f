"""The account the built-in worker runs as, and what that account must never reach.

The built-in worker runs scripts on the appliance machine. Run as the appliance's own user,
any script could read the master key, the database and the appliance's environment, and so
every project's secrets: the worker therefore never runs as the appliance's user.

- The appliance runs as root: the worker runs as ``worker_user``, by default the unprivileged
  system account ``octo-worker`` (created here with ``useradd --system`` when missing), with
  its uid, its gid and no supplementary groups.
- The appliance runs as a service account given the capabilities to switch users (the unit
  ``octo-appliance install`` writes: CAP_SETUID, CAP_SETGID, CAP_CHOWN): the worker runs as
  ``worker_user`` (default ``octo-worker``, which the install created) through ``setpriv``,
  which drops every capability before the runner starts.
- The appliance runs as another user: the worker runs as ``worker_user`` through
  ``sudo -n -u USER`` when that works (checked at start); with no such account the built-in
  worker is disabled, with a message at start and in every step that would have used it.

Whichever account it is, :func:`exposure` checks at start that it can read none of the
appliance's secrets (data dir, master key, TLS key): a worker that could is disabled too.
Its environment is built from an allow-list (:func:`worker_environment`), never inherited.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from octo_appliance.exceptions import ConfigError, OctoError
from octo_appliance.security.process import can_switch_users

log = logging.getLogger("octo_appliance.worker")

#: the account created (as root) when ``worker_user`` is not set
DEFAULT_ACCOUNT = "octo-worker"
#: where the runner of another user looks for programs (the appliance's own PATH may name
#: directories that user cannot read, and must not leak how the appliance is installed)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: variables copied from the appliance's environment when set; nothing else is inherited
INHERITED = ("LANG", "TZ")
SUDO_CHECK_SECONDS = 15


class WorkerUnavailable(OctoError):
    """The worker cannot run as an account other than the appliance's: it is disabled."""


@dataclass(frozen=True)
class WorkerUser:
    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str) -> WorkerUser:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ConfigError(
                f"worker_user '{name}' is not a user on this machine",
                hint=f"create the user, or leave worker_user empty (as root: {DEFAULT_ACCOUNT})",
            ) from None
        return cls(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def resolve_account(setting: str | None) -> WorkerUser:
    """The account the worker runs as, per the module docstring; :class:`WorkerUnavailable`
    (with what to do) when there is none, :class:`ConfigError` for a misspelt setting."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    if can_switch_users():
        if not setting and os.geteuid() == 0:
            ensure_system_account(DEFAULT_ACCOUNT)
        elif os.geteuid() != 0 and shutil.which("setpriv", path=SYSTEM_PATH) is None:
            raise WorkerUnavailable(
                "the built-in worker is disabled: the appliance runs as "
                f"'{me}' with the capabilities to switch users, but there is no setpriv "
                "(util-linux) to start the worker's runner with them dropped"
            )
        user = WorkerUser.lookup(setting or DEFAULT_ACCOUNT)
        if user.uid == 0:
            raise WorkerUnavailable(
                f"worker_user '{user.name}' is root: the built-in worker never runs as root; "
                f"leave worker_user empty to use {DEFAULT_ACCOUNT}, or name an unprivileged user"
            )
        return user
    if not setting or setting == me:
        raise WorkerUnavailable(
            f"the built-in worker is disabled: the appliance runs as '{me}', not root, and "
            "worker_user names no other account to run scripts as (the worker never runs as "
            "the appliance's own user); run the appliance as root, or set worker_user to an "
            f"unprivileged account '{me}' may use through 'sudo -n -u USER'"
        )
    user = WorkerUser.lookup(setting)
    if user.uid == os.geteuid():
        raise WorkerUnavailable(
            f"worker_user '{setting}' is the appliance's own account: the built-in worker is "
            "disabled; name another, unprivileged account"
        )
    _check_sudo(user, me)
    return user


def setpriv_prefix(user: WorkerUser) -> list[str]:
    """The command that starts a program as ``user`` (its uid, gid, no other group) from a
    non-root process with capabilities, with every capability gone: inheritable, ambient and
    bounding sets emptied, so nothing the runner starts can get one back."""
    setpriv = shutil.which("setpriv", path=SYSTEM_PATH) or "setpriv"
    return [
        setpriv,
        f"--reuid={user.uid}",
        f"--regid={user.gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--",
    ]


def ensure_system_account(name: str) -> None:
    """Create the unprivileged system account ``name`` if it does not exist (as root).

    No home, no login shell, its own group. Failing to create it is
    :class:`WorkerUnavailable`: the worker is disabled rather than run as root."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd", path=SYSTEM_PATH)
    if useradd is None:
        raise WorkerUnavailable(
            f"the built-in worker is disabled: there is no account '{name}' and no useradd "
            f"to create it; create an unprivileged account and name it in worker_user"
        )
    shell = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)), "")
    argv = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    argv += ["--shell", shell or "/bin/false", name]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise WorkerUnavailable(
            f"the built-in worker is disabled: creating the account '{name}' failed "
            f"({done.stderr.strip() or f'useradd exited with {done.returncode}'}); create an "
            "unprivileged account and name it in worker_user"
        ) from None
    log.info("created the system account %s for the built-in worker", name)


def _check_sudo(user: WorkerUser, me: str) -> None:
    sudo = shutil.which("sudo", path=SYSTEM_PATH)
    if sudo is not None:
        try:
            done = subprocess.run(
                [sudo, "-n", "-u", user.name, "--", "true"],
                capture_output=True,
                env={"PATH": SYSTEM_PATH},
                timeout=SUDO_CHECK_SECONDS,
                check=False,
            )
            if done.returncode == 0:
                return
        except (OSError, subprocess.TimeoutExpired):
            pass
    raise WorkerUnavailable(
        f"the built-in worker is disabled: the appliance runs as '{me}', not root, and "
        f"'sudo -n -u {user.name}' does not work for it; allow it in sudoers "
        f"('{me} ALL=({user.name}) NOPASSWD: ALL'), or run the appliance as root"
    )


def worker_environment(user: WorkerUser | None, home: Path | None) -> dict[str, str]:
    """The runner's environment: an allow-list, never the appliance's own (no ``OCTO_*``
    variable, no password given by environment, no PATH of the appliance's install).

    PATH is the system's; HOME the worker's own directory (``home``); LANG and TZ as the
    appliance has them; USER and LOGNAME name the account. The step's variables reach the
    script through the runner's stdin, never through this."""
    name = user.name if user is not None else pwd.getpwuid(os.geteuid()).pw_name
    env = {"PATH": SYSTEM_PATH, "USER": name, "LOGNAME": name}
    env["HOME"] = str(home) if home is not None else (user.home if user else str(Path.home()))
    env.update({key: os.environ[key] for key in INHERITED if key in os.environ})
    return env


def _allows(st: os.stat_result, user: WorkerUser, bits: tuple[int, ...]) -> bool:
    """Whether the mode bits grant ``user`` the access (owner, group, other: the first that
    applies decides, as the kernel does; the worker has no supplementary groups)."""
    if st.st_uid == user.uid:
        return bool(st.st_mode & bits[0])
    if st.st_gid == user.gid:
        return bool(st.st_mode & bits[1])
    return bool(st.st_mode & bits[2])


_EXEC = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
_READ = (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


def blocking_dir(path: Path, user: WorkerUser) -> Path | None:
    """The first existing directory above ``path`` that ``user`` cannot pass through."""
    for parent in reversed(path.absolute().parents):
        try:
            st = parent.stat()
        except FileNotFoundError:
            return None  # created later by the appliance with a traversable mode
        if not _allows(st, user, _EXEC):
            return parent
    return None


def exposure(secrets: Iterable[Path], user: WorkerUser) -> list[Path]:
    """The secrets ``user`` could read: files it may read, directories it may list or pass
    through (either reveals what is inside), reachable from ``/``. Should be none."""
    exposed = []
    for path in secrets:
        try:
            st = path.stat()
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            bits = tuple(r | x for r, x in zip(_READ, _EXEC, strict=True))
        else:
            bits = _READ
        if _allows(st, user, bits) and blocking_dir(path, user) is None:
            exposed.append(path)
    return exposed


def check_account(user: WorkerUser, worker_dir: Path, secrets: Mapping[str, Path]) -> None:
    """:class:`WorkerUnavailable` when the worker dir is not the appliance user's own, when
    ``user`` cannot reach it, or when it can read one of the appliance's secrets (names ->
    paths)."""
    try:
        own = worker_dir.lstat()
    except FileNotFoundError:
        own = None
    if own is not None and (own.st_uid != os.geteuid() or not stat.S_ISDIR(own.st_mode)):
        # the appliance writes its scratch files there as its own user: a worker dir the
        # worker account owns (or a link) would let it redirect those writes
        raise WorkerUnavailable(
            f"the built-in worker is disabled: the worker dir {worker_dir} is not a directory "
            "of the appliance's own user; give it to that user (the worker account gets its "
            "parts inside), or set worker_dir to a new path"
        )
    blocked = blocking_dir(worker_dir, user)
    if blocked is not None:
        raise WorkerUnavailable(
            f"the built-in worker is disabled: its account '{user.name}' cannot reach the worker "
            f"dir {worker_dir} ({blocked} is closed to it); set worker_dir to a directory "
            "outside the data dir whose parents it may pass through"
        )
    names = {path: name for name, path in secrets.items()}
    exposed = exposure(secrets.values(), user)
    if exposed:
        listed = ", ".join(f"the {names[p]} {p}" for p in exposed)
        raise WorkerUnavailable(
            f"the built-in worker is disabled: its account '{user.name}' could read {listed}; "
            "make them readable by the appliance's user only (directory 0700, file 0600)"
        )


__all__ = [
    "DEFAULT_ACCOUNT",
    "SYSTEM_PATH",
    "WorkerUnavailable",
    "WorkerUser",
    "check_account",
    "ensure_system_account",
    "resolve_account",
    "worker_environment",
]
