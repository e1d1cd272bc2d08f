"""The installed appliance's unit (rendered, parsed, refused when unusable) and the
capability check that lets a non-root service run the built-in worker."""

from __future__ import annotations

from pathlib import Path

import pytest

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
