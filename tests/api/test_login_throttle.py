"""Login throttling: guessing passwords gets slower, then locked out, per name and per address.

The throttle's clock is replaced by a counter the test moves forward, so waiting out a delay or
a lockout is a statement, not a sleep.
"""

from __future__ import annotations

from typing import Any

from octo_appliance.api.auth import SESSION_COOKIE
from octo_appliance.security.throttle import LoginThrottle, MemoryThrottleStore, ThrottlePolicy
from tests.api.helpers import events, login, make_user, session_client

PASSWORD = "carol-password-1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _clock(octo: Any) -> FakeClock:
    clock = FakeClock()
    octo.appliance.login_throttle.clock = clock
    return clock


def test_sixty_wrong_passwords_then_the_right_one_is_refused_until_the_lockout_ends(octo):
    make_user(octo, "carol", "viewer", password=PASSWORD)
    clock = _clock(octo)
    client = session_client(octo)
    config = octo.appliance.config
    statuses = []
    for _ in range(60):
        response = login(client, "carol", "wrong-password")
        statuses.append(response.status_code)
        if response.status_code == 429 and not events(action="login-locked-out"):
            clock.now += int(response.headers["retry-after"])  # wait out each delay
    assert set(statuses) == {401, 429}
    assert statuses.count(401) == config.login_lockout_failures
    assert statuses[: config.login_free_failures] == [401] * config.login_free_failures

    right = login(client, "carol", PASSWORD)
    assert right.status_code == 429, right.text
    error = right.json()["error"]
    assert error["code"] == "too_many_requests"
    assert int(right.headers["retry-after"]) >= 1
    assert error["hint"]
    assert SESSION_COOKIE not in client.cookies
    assert events(action="login-locked-out", resource_type="user", resource_name="carol")
    assert events(action="login-locked-out", resource_type="address")
    assert events(action="login-throttled", resource_type="user", resource_name="carol")

    clock.now += config.login_lockout_seconds + 1
    assert login(client, "carol", PASSWORD).status_code == 200
    # the success cleared both counters: one more mistake is not yet throttled
    assert login(client, "carol", "wrong-password").status_code == 401
    assert login(client, "carol", PASSWORD).status_code == 200


def test_delay_grows_and_is_answered_at_once_with_retry_after(octo):
    make_user(octo, "carol", "viewer", password=PASSWORD)
    clock = _clock(octo)
    client = session_client(octo)
    free = octo.appliance.config.login_free_failures
    for _ in range(free - 1):
        assert login(client, "carol", "wrong-password").status_code == 401
    waits = []
    for _ in range(3):
        assert login(client, "carol", "wrong-password").status_code == 401  # starts a delay
        blocked = login(client, "carol", PASSWORD)
        assert blocked.status_code == 429
        waits.append(int(blocked.headers["retry-after"]))
        clock.now += waits[-1]
    assert waits == sorted(waits) and waits[0] < waits[-1]  # exponential, not flat
    assert login(client, "carol", PASSWORD).status_code == 200


def test_unknown_usernames_are_throttled_exactly_like_real_ones(octo):
    make_user(octo, "carol", "viewer", password=PASSWORD)
    _clock(octo)
    real, unknown = session_client(octo), session_client(octo)
    answers = {}
    for name, client in (("carol", real), ("nobody-here", unknown)):
        octo.appliance.login_throttle.store = MemoryThrottleStore()  # each from a clean slate
        answers[name] = [login(client, name, "wrong-password") for _ in range(8)]
    for known, made_up in zip(answers["carol"], answers["nobody-here"], strict=True):
        assert known.status_code == made_up.status_code
        assert known.json() == made_up.json()
        assert known.headers.get("retry-after") == made_up.headers.get("retry-after")
    assert 429 in [response.status_code for response in answers["carol"]]


def test_throttle_counts_per_address_across_usernames(octo):
    _clock(octo)
    client = session_client(octo)
    free = octo.appliance.config.login_free_failures
    for index in range(free):
        assert login(client, f"user-{index}", "wrong-password").status_code == 401
    # a fresh username from the same address is still blocked
    assert login(client, "someone-else", "wrong-password").status_code == 429


def test_policy_and_store_behind_the_interface():
    clock = FakeClock()
    throttle = LoginThrottle(
        ThrottlePolicy(free_failures=2, delay_seconds=3, lockout_failures=5, lockout_seconds=60),
        clock=clock,
    )
    seconds = []
    for _ in range(5):
        penalties = throttle.failed("Eve", "10.0.0.1")
        seconds.append(max((p.seconds for p in penalties), default=0))
    assert seconds == [0, 3, 6, 12, 60]
    assert throttle.retry_after("EVE", "10.0.0.9") == 60  # names are case-insensitive
    assert throttle.retry_after("mallory", "10.0.0.1") == 60  # the address too
    throttle.succeeded("eve", "10.0.0.1")
    assert throttle.retry_after("eve", "10.0.0.1") == 0


def test_memory_store_is_bounded():
    store = MemoryThrottleStore(max_entries=10)
    clock = FakeClock()
    throttle = LoginThrottle(ThrottlePolicy(), store=store, clock=clock)
    for index in range(50):
        throttle.failed(f"made-up-{index}", "10.0.0.1")
    assert len(store._records) <= 10
