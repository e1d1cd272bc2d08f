"""The timed-listening transport's tests, written with the kit ``octo_appliance.testing``."""

from __future__ import annotations

from typing import Any

import octo_timed_listening
import pytest

from octo_appliance.exceptions import ConfigError


def test_its_setting_reaches_it_through_the_context(
    octo_appliance_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCTO_TIMED_LISTENING_CALL_TIMEOUT_SECONDS", "5")
    octo = octo_appliance_factory(extra_plugins=(octo_timed_listening,), services=True)
    transport = octo.services.services.dispatcher.transports["timed-listening"]
    assert transport.limit == 5.0
    assert transport.context.settings == {"call_timeout_seconds": 5}
    # a target can now use it as its communication style
    octo.api.post("/environments", json={"name": "Dev"})
    body = {
        "name": "web-1",
        "environments": ["Dev"],
        "roles": ["web"],
        "communication_style": "timed-listening",
        "uri": "https://web-1:10933",
        "thumbprint": "A" * 64,
    }
    created = octo.api.post("/targets", json=body)
    assert created.status_code == 201, created.text


def test_a_bad_setting_stops_the_start_naming_it(
    octo_appliance_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCTO_TIMED_LISTENING_CALL_TIMEOUT_SECONDS", "0")
    with pytest.raises(ConfigError) as caught:
        octo_appliance_factory(extra_plugins=(octo_timed_listening,), services=True)
    assert caught.value.message == (
        'OCTO_TIMED_LISTENING_CALL_TIMEOUT_SECONDS: got "0"; expected a whole number of at least 1'
    )
