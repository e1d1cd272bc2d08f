"""The SSH tests without an sshd: every one skipped with the reason, none an error.

A ``pytestmark`` in ``tests/ssh/conftest.py`` used to be the only guard of
``tests/ssh/test_ssh_transport.py``; pytest reads ``pytestmark`` from test modules only, so
there the tests ran and failed at starting a missing ``/usr/sbin/sshd``. A real pytest run of
that directory, with ``OCTO_TEST_SSHD`` naming an sshd that does not exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.child_process import run_module

pytestmark = pytest.mark.slow  # a pytest run of its own: collecting tests/ssh takes a while

SSH_TESTS = Path(__file__).parents[1] / "ssh"


def test_without_sshd_every_ssh_test_is_skipped_saying_why(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-sshd")
    done = run_module(
        "pytest",
        str(SSH_TESTS),
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        OCTO_TEST_SSHD=missing,
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.fullmatch(r"\d+ skipped in [\d.]+s", summary), summary
    reasons = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert reasons and all("no sshd (build/test.sh installs it)" in r for r in reasons)
    transport = [r for r in reasons if "test_ssh_transport.py" in r]
    assert transport, "the transport tests are skipped too"
