"""Install, reinstall or remove the appliance as a system service (as root).

Every step checks what is there first, so a rerun repairs and repeats nothing: the accounts
(the service's own, which owns the data and the key, and ``octo-worker`` for the built-in
worker), the data dir and the key's dir (owned by the service account, 0700: a rerun changes
the owner of only what another account owns, and leaves the worker's own files in the
worker dir to it), the first
start's initialisation (done here, as root, so the generated admin password is printed to the
operator once and never reaches the service's journal), the unit (written, checked, enabled
and started when systemd runs this machine). Removal keeps the data and the key unless
``purge`` says otherwise.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from octo_appliance.agent.interpreter import program_path
from octo_appliance.appliance import ADMIN_USERNAME, open_appliance
from octo_appliance.backup.upgrade import upgrade_hook
from octo_appliance.config import load_config
from octo_appliance.exceptions import ConfigError
from octo_appliance.install.unit import UNIT_NAME, UnitSpec, systemd_verify, unit_problems
from octo_appliance.transports.local import default_worker_dir
from octo_appliance.transports.worker_account import DEFAULT_ACCOUNT, ensure_system_account

Say = Callable[[str], None]
SERVICE_ACCOUNT = "octo-appliance"


@dataclass(frozen=True)
class InstallOptions:
    data_dir: Path = Path("/var/lib/octo-appliance")
    key_dir: Path = Path("/etc/octo-appliance")
    user: str = SERVICE_ACCOUNT
    systemd_dir: Path = Path("/etc/systemd/system")
    #: where the single executable is copied (ignored by a development install)
    bin_path: Path = Path("/usr/local/bin/octo-appliance")
    listen_port: int = 8443
    start: bool = True

    @property
    def key_file(self) -> Path:
        return self.key_dir / "master.key"

    @property
    def unit_file(self) -> Path:
        return self.systemd_dir / UNIT_NAME


@dataclass
class InstallReport:
    done: list[str] = field(default_factory=list)
    admin_password: str | None = None
    started: bool = False


def systemd_running() -> bool:
    """systemd is this machine's init (``sd_booted()``'s test)."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def _require_root() -> None:
    if os.geteuid() != 0:
        raise ConfigError(
            "installing the appliance as a service needs root",
            hint="run it as root: sudo octo-appliance install",
        )


def program(options: InstallOptions, report: InstallReport) -> list[str]:
    """The command the unit starts: the single executable, copied to ``bin_path`` (replacing
    it there is how an upgrade is done), or this development install's interpreter."""
    if not getattr(sys, "frozen", False):
        return [sys.executable, "-m", "octo_appliance"]
    # the one-file executable, not the copy its launcher unpacked (docs/executable-cache.md)
    current = Path(program_path()).resolve()
    target = options.bin_path
    if not (target.exists() and target.resolve() == current):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.installing")
        shutil.copy2(current, partial)
        os.chmod(partial, 0o755)
        os.replace(partial, target)
        report.done.append(f"copied the executable to {target}")
    return [str(target)]


def _own_dir(
    path: Path, user: pwd.struct_passwd, report: InstallReport, *, leave_uid: int | None = None
) -> None:
    """``path`` (created when missing) 0700 and the account's, with everything in it. Only
    what is wrong changes: an entry already the account's is not written to, so a rerun over
    a large data dir touches nothing, and what the first start (run here as root) created is
    given to the account. Entries of ``leave_uid`` (the worker account's parts of its dir,
    handed to it on purpose) are left to it, and not descended into."""
    existed = path.is_dir()
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    for name in wrongly_owned(path, (user.pw_uid, user.pw_gid), leave_uid):
        os.lchown(name, user.pw_uid, user.pw_gid)
    if not existed:
        report.done.append(f"created {path} (owner {user.pw_name}, mode 0700)")


def wrongly_owned(top: Path, owner: tuple[int, int], leave_uid: int | None) -> list[str]:
    """``top`` and what is under it whose owner or group is not ``owner`` (links themselves,
    never followed), except what ``leave_uid`` owns and all below it."""
    found: list[str] = []

    def check(name: str) -> bool:
        st = os.lstat(name)
        if st.st_uid == leave_uid:
            return False
        if (st.st_uid, st.st_gid) != owner:
            found.append(name)
        return True

    check(str(top))
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if check(os.path.join(root, d))]
        for name in files:
            check(os.path.join(root, name))
    return found


def _initialise(options: InstallOptions, report: InstallReport) -> None:
    config = load_config(
        {"data_dir": str(options.data_dir), "master_key_file": str(options.key_file)}
    )
    appliance, init = open_appliance(config, initialise=True, before_upgrade=upgrade_hook(config))
    appliance.close()
    if init.created_key:
        report.done.append(f"created the master key {options.key_file}")
    if init.upgrade_backup is not None:
        report.done.append(f"backed up the data before the schema upgrade: {init.upgrade_backup}")
    if init.admin_password_generated:
        report.admin_password = init.admin_password


def install(options: InstallOptions, say: Say) -> InstallReport:
    _require_root()
    report = InstallReport()
    argv = program(options, report)
    for account in (options.user, DEFAULT_ACCOUNT):
        try:
            pwd.getpwnam(account)
        except KeyError:
            ensure_system_account(account)
            report.done.append(f"created the system account {account}")
    service = pwd.getpwnam(options.user)
    worker_dir = default_worker_dir(options.data_dir)
    for path in (options.key_dir, options.data_dir):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    _initialise(options, report)
    _own_dir(options.key_dir, service, report)
    _own_dir(options.data_dir, service, report)
    _own_dir(worker_dir, service, report, leave_uid=pwd.getpwnam(DEFAULT_ACCOUNT).pw_uid)
    spec = UnitSpec(argv, options.user, options.data_dir, options.key_file, worker_dir)
    _write_unit(options, spec.render(), report)
    if options.start and systemd_running():
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", UNIT_NAME)
        _systemctl("restart", UNIT_NAME)
        report.started = True
        report.done.append(f"enabled and started {UNIT_NAME}")
    _summary(options, spec, report, say)
    return report


def _write_unit(options: InstallOptions, text: str, report: InstallReport) -> None:
    problems = unit_problems(text)
    if problems:
        raise ConfigError(f"the unit written would be unusable: {'; '.join(problems)}")
    path = options.unit_file
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.writing")
    partial.write_text(text, encoding="utf-8")
    os.chmod(partial, 0o644)
    os.replace(partial, path)
    complaint = systemd_verify(path)
    if complaint:
        raise ConfigError(f"systemd-analyze rejects {path}: {complaint}")
    report.done.append(f"wrote the unit {path}")


def _systemctl(*args: str) -> None:
    done = subprocess.run(
        ["systemctl", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise ConfigError(
            f"systemctl {' '.join(args)} failed: {done.stderr.strip() or done.returncode}",
            hint=f"see 'journalctl -u {UNIT_NAME}'",
        )


def _summary(options: InstallOptions, spec: UnitSpec, report: InstallReport, say: Say) -> None:
    for line in report.done or ["already installed: nothing to change"]:
        say(line)
    say(f"portal and API: https://{socket.getfqdn()}:{options.listen_port}/")
    if report.admin_password is not None:
        say(f"sign in as {ADMIN_USERNAME} with the password {report.admin_password}")
        say("  (shown this once: change it after signing in)")
    else:
        say(f"sign in as {ADMIN_USERNAME} (the password was printed by the first install)")
    say(f"master key: {options.key_file} — back it up apart from the data ('master-key show')")
    if not report.started:
        start = " ".join(spec.render().split("ExecStart=", 1)[1].splitlines()[0:1])
        say(
            f"not started: systemd does not run this machine; start it as {options.user} "
            f"with OCTO_MASTER_KEY_FILE={options.key_file}: {start}"
            if not systemd_running()
            else "not started (--no-start): systemctl start " + UNIT_NAME
        )


def uninstall(options: InstallOptions, *, purge: bool, say: Say) -> list[str]:
    """Stop and remove the service; the data, the key and the accounts go only with ``purge``."""
    _require_root()
    done: list[str] = []
    if options.unit_file.exists():
        if systemd_running():
            subprocess.run(
                ["systemctl", "disable", "--now", UNIT_NAME], capture_output=True, check=False
            )
        options.unit_file.unlink()
        if systemd_running():
            _systemctl("daemon-reload")
        done.append(f"stopped and removed {options.unit_file}")
    if purge:
        for path in (options.data_dir, default_worker_dir(options.data_dir), options.key_dir):
            if path.exists():
                shutil.rmtree(path)
                done.append(f"deleted {path}")
        for account in (options.user, DEFAULT_ACCOUNT):
            if _delete_account(account):
                done.append(f"deleted the system account {account}")
    else:
        done.append(f"kept the data {options.data_dir} and the key {options.key_file}")
    for line in done:
        say(line)
    return done


def _delete_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    subprocess.run(["userdel", name], capture_output=True, check=False)
    return True
