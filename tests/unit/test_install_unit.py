"""The installed appliance's unit (rendered, parsed, refused when unusable), the
capability check that lets a non-root service run the built-in worker, and who owns what
in the dirs a rerun of the install repairs."""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.install import installer
from octo_appliance.install.unit import UnitSpec, parse_unit, unit_problems
from octo_appliance.security.process import can_switch_users, effective_capabilities

SPEC = UnitSpec(
    ["/usr/local/bin/octo-appliance"],
    "octo-appliance",
    Path("/var/lib/octo-appliance"),
    Path("/etc/octo-appliance/master.key"),
    Path("/var/lib/octo-appliance-worker"),
)


def test_the_rendered_unit_is_hardened_and_complete() -> None:
    service = parse_unit(SPEC.render())["Service"]

    assert unit_problems(SPEC.render()) == []
    assert service["ExecStart"] == [
        "/usr/local/bin/octo-appliance serve --data-dir /var/lib/octo-appliance"
    ]
    assert service["User"] == service["Group"] == ["octo-appliance"]
    assert service["ReadWritePaths"] == [
        "/var/lib/octo-appliance /var/lib/octo-appliance-worker /etc/octo-appliance"
    ]
    for key, value in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "full"),
        ("PrivateTmp", "yes"),
        ("UMask", "0077"),
    ]:
        assert service[key] == [value]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ExecStart=/bin/true\n", "line 1 is not KEY=VALUE inside a [Section]"),
        (
            "[Unit]\nDescription=x\n[Service]\nUser=a\nGroup=a\nExecStart=/x\n",
            "[Install] has no WantedBy=",
        ),
        (
            "[Unit]\nDescription=x\n[Service]\nUser=a\nGroup=a\nExecStart=octo serve\n"
            "[Install]\nWantedBy=multi-user.target\n",
            "ExecStart must name an absolute path: octo serve",
        ),
        ("[Unit]\nnonsense\n", "line 2 is not KEY=VALUE"),
    ],
)
def test_an_unusable_unit_is_named(text: str, problem: str) -> None:
    assert any(problem in found for found in unit_problems(text))


@pytest.mark.parametrize(
    ("cap_eff", "switches"),
    [
        ("00000000000000c1", True),  # chown, setgid, setuid
        ("00000000000004c1", True),  # ... and net_bind_service
        ("00000000000000c0", False),  # no chown: cannot hand files to the worker
        ("0000000000000000", False),
    ],
)
def test_a_non_root_service_switches_users_only_with_all_three_capabilities(
    cap_eff: str, switches: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    status = f"Name:\tx\nCapInh:\t0\nCapPrm:\t{cap_eff}\nCapEff:\t{cap_eff}\n"

    assert effective_capabilities(status) == int(cap_eff, 16)
    assert can_switch_users(status) is switches


SERVICE = pwd.struct_passwd(("octo-svc", "x", 64_301, 64_302, "", "/", "/usr/sbin/nologin"))
WORKER_UID = 64_303


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another account needs root")
def test_a_rerun_changes_the_owner_of_only_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun of the install writes no owner that is already right; what root created since
    (the first start runs as root) is given to the account; the worker's own files stay its."""
    top = tmp_path / "data-worker"
    (top / "runners").mkdir(parents=True)
    (top / "runners" / "runner.pyz").write_bytes(b"zip")
    (top / "cache").mkdir()
    (top / "cache" / ("0" * 64)).write_bytes(b"package")
    (top / "link").symlink_to("/etc/passwd")
    for name in (top / "cache", top / "cache" / ("0" * 64)):
        os.chown(name, WORKER_UID, WORKER_UID)
    changed: list[str] = []
    real_lchown = os.lchown

    def lchown(path: Any, uid: int, gid: int) -> None:
        changed.append(os.path.relpath(path, top))
        real_lchown(path, uid, gid)

    monkeypatch.setattr(os, "lchown", lchown)

    def own() -> list[str]:
        changed.clear()
        installer._own_dir(top, SERVICE, installer.InstallReport(), leave_uid=WORKER_UID)
        return sorted(changed)

    assert own() == [".", "link", "runners", "runners/runner.pyz"]
    assert own() == []  # a rerun over a tree that is right writes nothing
    (top / "runners" / "new.pyz").write_bytes(b"root's")  # root created it since
    assert own() == ["runners/new.pyz"]

    owners = {
        os.path.relpath(path, top): (path.lstat().st_uid, path.lstat().st_gid)
        for path in [top, *top.rglob("*")]
    }
    service, worker = (SERVICE.pw_uid, SERVICE.pw_gid), (WORKER_UID, WORKER_UID)
    assert owners == {
        ".": service,
        "link": service,
        "runners": service,
        "runners/runner.pyz": service,
        "runners/new.pyz": service,
        "cache": worker,
        f"cache/{'0' * 64}": worker,
    }
    assert os.stat("/etc/passwd").st_uid == 0  # the link was changed, not what it names
    assert top.stat().st_mode & 0o777 == 0o700
