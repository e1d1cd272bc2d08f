"""The open-file limit: raised to the hard limit at start, and a log line when even that
cannot hold the polling agents (a fake ``resource`` module for the logic; the real limit is
raised by ``serve`` and ``octo-agent run``: tests/agent/test_agent_limits.py)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from octo_appliance.comms import descriptors
from octo_appliance.comms.descriptors import DescriptorBudget, raise_open_file_limit

INFINITY = -1


class FakeResource(SimpleNamespace):
    """``getrlimit`` / ``setrlimit`` of RLIMIT_NOFILE over two numbers."""

    RLIMIT_NOFILE = 7
    RLIM_INFINITY = INFINITY

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        super().__init__(soft=soft, hard=hard, refuse=refuse, calls=[])

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == self.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        self.calls.append(limits)
        if self.refuse:
            raise ValueError("not allowed")
        self.soft, self.hard = limits


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeResource:
    fake = FakeResource(1024, 524288)
    monkeypatch.setattr(descriptors, "resource", fake)
    return fake


def test_the_soft_limit_is_raised_to_the_hard_one(fake: FakeResource) -> None:
    assert raise_open_file_limit() == (1024, 524288)
    assert (fake.soft, fake.hard) == (524288, 524288)


def test_an_unlimited_hard_limit_raises_to_the_kernels_ceiling(fake: FakeResource) -> None:
    fake.hard = INFINITY
    assert raise_open_file_limit() == (1024, descriptors.NR_OPEN)
    assert fake.calls == [(descriptors.NR_OPEN, INFINITY)]


def test_a_limit_at_the_hard_one_is_left_alone(fake: FakeResource) -> None:
    fake.soft = fake.hard
    assert raise_open_file_limit() == (524288, 524288)
    assert fake.calls == []


def test_a_refused_raise_is_logged_and_keeps_the_limit(
    fake: FakeResource, caplog: pytest.LogCaptureFixture
) -> None:
    fake.refuse = True
    caplog.set_level(logging.WARNING, logger="octo_appliance.comms.descriptors")
    assert raise_open_file_limit() == (1024, 1024)
    assert "cannot raise the open-file limit from 1024 to 524288" in caplog.text


def test_a_shortfall_is_logged_once_with_the_numbers_and_the_fix(
    fake: FakeResource, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="octo_appliance.comms.descriptors")
    fake.soft = 4096
    budget = DescriptorBudget("polling agents")
    assert budget.check(3000)  # 3,000 + 1,024 spare fit in 4,096
    assert caplog.records == []

    assert not budget.check(5000)
    assert not budget.check(5000)  # the same shortfall: said once
    (record,) = caplog.records
    message = record.getMessage()
    assert "open-file limit (4096) is below what 5000 polling agents need (6024" in message
    assert "LimitNOFILE=" in message and "at least 6024" in message

    assert not budget.check(6000)  # it grew: said again
    assert len(caplog.records) == 2
    assert "below what 6000 polling agents need" in caplog.records[1].getMessage()


def test_an_unlimited_soft_limit_holds_any_number(fake: FakeResource) -> None:
    fake.soft = INFINITY
    assert DescriptorBudget("polling agents").check(10**6)
