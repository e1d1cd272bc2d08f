"""The Masker, and the event writer that applies it to everything a person reads."""

from __future__ import annotations

import io
import json

import pytest
from octo_runner.masking import MASK, Masker
from octo_runner.protocol import EventWriter


@pytest.mark.parametrize(
    ("secrets", "text", "expected"),
    [
        (["s3cret"], "pw=s3cret!", f"pw={MASK}!"),
        (["s3cret"], "s3cret s3cret", f"{MASK} {MASK}"),
        (["abc", "abcdef"], "xabcdefx abc", f"x{MASK}x {MASK}"),  # longest first
        (["abcdef", "abc"], "abcdef", MASK),
        (["a.b*c"], "a.b*c axbbc", f"{MASK} axbbc"),  # literal, not a pattern
        ([""], "nothing to hide", "nothing to hide"),  # empty values are ignored
        (["  padded\n"], "value: padded", f"value: {MASK}"),  # the stripped form too
        (["-----BEGIN KEY-----\nMIIEowIBAAKCAQEA\n}\n"], "MIIEowIBAAKCAQEA", MASK),
        (["-----BEGIN KEY-----\nMIIEowIBAAKCAQEA\n}\n"], "{ } stays", "{ } stays"),  # short line
        (["sec"], "", ""),
        (["héllo✓"], "say héllo✓", f"say {MASK}"),
    ],
)
def test_mask(secrets: list[str], text: str, expected: str) -> None:
    assert Masker(secrets).mask(text) == expected


def test_values_added_later_are_masked_from_then_on() -> None:
    masker = Masker(["first"])
    assert masker.mask("first second") == f"{MASK} second"
    masker.add("second")
    assert masker.mask("first second") == f"{MASK} {MASK}"
    assert len(masker) == 2


def test_event_writer_masks_messages_but_not_output_variable_values() -> None:
    out = io.BytesIO()
    events = EventWriter(out, Masker(["hunter2"]))
    events.log("info", "password is hunter2", stream="stdout")
    events.progress(10, "using hunter2")
    events.output_variable("Password", "hunter2", True)
    events.result(0, True, "done with hunter2")
    events.log("info", "after the result")  # dropped: the result is last
    lines = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert [e["type"] for e in lines] == ["log", "progress", "output-variable", "result"]
    assert lines[0]["message"] == f"password is {MASK}"
    assert lines[1]["message"] == f"using {MASK}"
    assert lines[2]["value"] == "hunter2" and lines[2]["sensitive"] is True
    assert lines[3]["message"] == f"done with {MASK}"
    assert lines[0]["time"].endswith("Z")
