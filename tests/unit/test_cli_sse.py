"""The server-sent-events parser the CLI follows task logs with."""

from __future__ import annotations

from octo_appliance.cli.sse import Event, parse_events


def test_events_comments_retry_and_ids() -> None:
    lines = [
        "retry: 2000",
        "",
        "id: 1",
        "event: log",
        'data: {"seq":1}',
        "",
        ": keepalive",
        "",
        "id: 2",
        "event: log",
        "data:first",
        "data: second",
        "",
        "event: end",
        'data: {"state":"success"}',
        "",
    ]

    assert list(parse_events(lines)) == [
        Event("log", '{"seq":1}', "1"),
        Event("log", "first\nsecond", "2"),
        Event("end", '{"state":"success"}', None),
    ]


def test_data_without_event_is_a_message_and_a_cut_event_is_dropped() -> None:
    lines = ["data: hello", "", "event: log", "data: half"]

    assert list(parse_events(lines)) == [Event("message", "hello", None)]


def test_only_one_leading_space_is_removed_and_colons_stay() -> None:
    lines = ["data:  two spaces: and a colon", ""]

    assert list(parse_events(lines)) == [Event("message", " two spaces: and a colon", None)]
