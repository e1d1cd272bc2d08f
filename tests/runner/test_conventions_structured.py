"""Structured variable replacement: (file, variables) in, exact file content out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from octo_runner.conventions.structured import StructuredError, replace_in_files

from .conventions_support import Captured

SETTINGS = {"Logging": {"Level": "Warning", "Console": True}, "Port": 80, "Name": "app"}

JSON_CASES = [
    (
        "colon form keeps the number type",
        SETTINGS,
        {"Logging:Level": "Debug", "Port": "8080"},
        {**SETTINGS, "Logging": {"Level": "Debug", "Console": True}, "Port": 8080},
    ),
    (
        "dot form, any case",
        SETTINGS,
        {"logging.level": "Error"},
        {**SETTINGS, "Logging": {"Level": "Error", "Console": True}},
    ),
    (
        "colon wins over dot",
        SETTINGS,
        {"Logging.Level": "dot", "Logging:Level": "colon"},
        {**SETTINGS, "Logging": {"Level": "colon", "Console": True}},
    ),
    (
        "boolean",
        SETTINGS,
        {"Logging:Console": "False"},
        {**SETTINGS, "Logging": {"Level": "Warning", "Console": False}},
    ),
    (
        "not a boolean stays text",
        SETTINGS,
        {"Logging:Console": "maybe"},
        {**SETTINGS, "Logging": {"Level": "Warning", "Console": "maybe"}},
    ),
    ("not a number stays text", {"Port": 80}, {"Port": "eighty"}, {"Port": "eighty"}),
    ("a fraction into a whole number", {"Ratio": 1}, {"Ratio": "1.5"}, {"Ratio": 1.5}),
    ("text stays text", {"Name": "app"}, {"Name": "42"}, {"Name": "42"}),
    ("null takes a number", {"Timeout": None}, {"Timeout": "30"}, {"Timeout": 30}),
    ("null takes text", {"Timeout": None}, {"Timeout": "soon"}, {"Timeout": "soon"}),
    (
        "array index",
        {"Servers": [{"Name": "a"}, {"Name": "b"}]},
        {"Servers:1:Name": "c"},
        {"Servers": [{"Name": "a"}, {"Name": "c"}]},
    ),
    ("array replaced by JSON", {"Hosts": ["a"]}, {"Hosts": '["x", "y"]'}, {"Hosts": ["x", "y"]}),
    ("object replaced by text", {"Db": {"Host": "a"}}, {"Db": "plain"}, {"Db": "plain"}),
    (
        "object replaced by JSON",
        {"Db": {"Host": "a"}},
        {"Db": '{"Host": "b", "Port": 1}'},
        {"Db": {"Host": "b", "Port": 1}},
    ),
    ("unicode kept", {"Greeting": "hi"}, {"Greeting": "héllo ✓"}, {"Greeting": "héllo ✓"}),
]


@pytest.mark.parametrize(
    ("document", "variables", "expected"),
    [c[1:] for c in JSON_CASES],
    ids=[c[0] for c in JSON_CASES],
)
def test_json_values(
    tmp_path: Path, document: object, variables: dict[str, str], expected: object
) -> None:
    path = tmp_path / "appsettings.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    replace_in_files(str(tmp_path), ["*.json"], variables, Captured().writer)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == expected
    assert text == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ('{\n    "A": {\n        "B": 1\n    }\n}', '{\n    "A": {\n        "B": 2\n    }\n}'),
        ('{\n\t"A": {\n\t\t"B": 1\n\t}\n}\n', '{\n\t"A": {\n\t\t"B": 2\n\t}\n}\n'),
        ('{"A": {"B": 1}}', '{"A": {"B": 2}}'),
        ('{"A":  {"B":1}, "C": 3}', '{"A": {"B": 2}, "C": 3}'),
        ('{"Unrelated":   1}', '{"Unrelated":   1}'),  # nothing replaced: bytes untouched
    ],
)
def test_json_layout(tmp_path: Path, before: str, after: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(before)
    replace_in_files(str(tmp_path), ["settings.json"], {"A:B": "2"}, Captured().writer)
    assert path.read_text() == after


XML = """<?xml version="1.0" encoding="utf-8"?>
<!-- deployment settings -->
<config version="1">
  <db timeout="30" name='main'>
    <host>old-host</host>
    <port/>
    <options><pool>5</pool></options>
  </db>
</config>
"""

XML_CASES = [
    ("element text", {"config:db:host": "new-host"}, [("old-host", "new-host")]),
    ("dot form, any case", {"Config.DB.Host": "h2"}, [("old-host", "h2")]),
    ("attribute", {"config:db:@timeout": "60"}, [('timeout="30"', 'timeout="60"')]),
    ("single-quoted attribute", {"config:db:@name": "it's"}, [("name='main'", "name='it&apos;s'")]),
    ("self-closing element", {"config:db:port": "5432"}, [("<port/>", "<port>5432</port>")]),
    ("escaped text", {"config:db:host": "a<b&c>"}, [("old-host", "a&lt;b&amp;c&gt;")]),
    ("root attribute", {"config:@version": '2"'}, [('version="1"', 'version="2&quot;"')]),
    ("nested", {"config:db:options:pool": "10"}, [("<pool>5</pool>", "<pool>10</pool>")]),
    ("xpath attribute", {"/config/db/@timeout": "90"}, [('timeout="30"', 'timeout="90"')]),
    ("xpath text", {"/config/db/host/text()": "x"}, [("old-host", "x")]),
    ("xpath element", {"/config/*/host": "y"}, [("old-host", "y")]),
    ("xpath predicate", {"/config/db[@name='main']/host": "z"}, [("old-host", "z")]),
    ("xpath predicate mismatch", {"/config/db[@name='other']/host": "z"}, []),
    ("unknown path", {"config:nothing": "z"}, []),
]


@pytest.mark.parametrize(
    ("variables", "changes"), [c[1:] for c in XML_CASES], ids=[c[0] for c in XML_CASES]
)
def test_xml(tmp_path: Path, variables: dict[str, str], changes: list[tuple[str, str]]) -> None:
    path = tmp_path / "app.config"
    path.write_text(XML)
    captured = Captured()
    replace_in_files(str(tmp_path), ["*.config"], variables, captured.writer)
    expected = XML
    for old, new in changes:
        expected = expected.replace(old, new, 1)
    assert path.read_text() == expected
    if changes:
        assert f"Replaced 1 key(s) in app.config: {next(iter(variables))}" in captured.logs()


def test_xml_app_settings_and_namespaces(tmp_path: Path) -> None:
    path = tmp_path / "web.config"
    path.write_text(
        '<c:configuration xmlns:c="urn:x">\n  <c:appSettings>\n'
        '    <add key="Port" value="80" />\n    <add key="Host" value="a" />\n'
        "  </c:appSettings>\n  <c:name>n</c:name>\n</c:configuration>\n"
    )
    variables = {
        "/configuration/appSettings/add[@key='Host']/@value": "b",
        "/configuration/appSettings/add[1]/@value": "81",
        "configuration:name": "renamed",
    }
    replace_in_files(str(tmp_path), ["web.config"], variables, Captured().writer)
    assert path.read_text() == (
        '<c:configuration xmlns:c="urn:x">\n  <c:appSettings>\n'
        '    <add key="Port" value="81" />\n    <add key="Host" value="b" />\n'
        "  </c:appSettings>\n  <c:name>renamed</c:name>\n</c:configuration>\n"
    )


def test_xml_container_is_left_alone_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "app.xml").write_text(XML)
    captured = Captured()
    replace_in_files(str(tmp_path), ["app.xml"], {"config:db": "flat"}, captured.writer)
    assert (tmp_path / "app.xml").read_text() == XML
    assert any(
        "config:db names an element with child elements" in w for w in captured.logs("warning")
    )


PROPERTIES = (
    "# settings\n"
    "server.port=80\n"
    "server.host : old\n"
    "! bang comment\n"
    "long.value = first \\\n"
    "    second \\\n"
    "    third\n"
    "a\\=b=1\n"
    "spaced   value here\r\n"
)

PROPERTIES_CASES = [
    ("dot key", {"server.port": "8080"}, [("server.port=80", "server.port=8080")]),
    ("colon key", {"Server:Host": "new"}, [("server.host : old", "server.host : new")]),
    (
        "continuation removed",
        {"long.value": "one"},
        [("long.value = first \\\n    second \\\n    third", "long.value = one")],
    ),
    ("escaped key", {"a=b": "2"}, [("a\\=b=1", "a\\=b=2")]),
    (
        "space separator, CRLF kept",
        {"spaced": "x"},
        [("spaced   value here\r\n", "spaced   x\r\n")],
    ),
    ("escapes", {"server.port": " a\\b\nc"}, [("server.port=80", "server.port=\\ a\\\\b\\nc")]),
    ("comments are not keys", {"#": "x", "settings": "y"}, []),
]


@pytest.mark.parametrize(
    ("variables", "changes"),
    [c[1:] for c in PROPERTIES_CASES],
    ids=[c[0] for c in PROPERTIES_CASES],
)
def test_properties(
    tmp_path: Path, variables: dict[str, str], changes: list[tuple[str, str]]
) -> None:
    path = tmp_path / "app.properties"
    path.write_bytes(PROPERTIES.encode())
    replace_in_files(str(tmp_path), ["*.properties"], variables, Captured().writer)
    expected = PROPERTIES
    for old, new in changes:
        expected = expected.replace(old, new, 1)
    assert path.read_bytes().decode() == expected


def test_properties_in_latin_1_escape_what_latin_1_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "app.properties"
    path.write_bytes("name=caf\xe9\ngreeting=x\n".encode("latin-1"))
    variables = {"greeting": "h\xe9llo \u2713"}
    replace_in_files(str(tmp_path), ["*.properties"], variables, Captured().writer)
    assert path.read_bytes() == "name=caf\xe9\ngreeting=h\xe9llo \\u2713\n".encode("latin-1")


INI = (
    "top = level\n"
    "[Database]\n"
    "Host = old\n"
    "; a comment\n"
    "Port: 1\n"
    "Multi = first\n"
    "    second\n"
    "\n"
    "[Other]\n"
    "Host=x\n"
)

INI_CASES = [
    ("section:key", {"Database:Host": "new"}, [("Host = old", "Host = new")]),
    ("section.key, any case", {"database.port": "2"}, [("Port: 1", "Port: 2")]),
    ("other section", {"Other:Host": "y"}, [("Host=x", "Host=y")]),
    ("key before any section", {"top": "changed"}, [("top = level", "top = changed")]),
    (
        "continuation replaced",
        {"Database:Multi": "one"},
        [("Multi = first\n    second\n", "Multi = one\n")],
    ),
    (
        "value with line breaks",
        {"Database:Multi": "a\nb"},
        [("Multi = first\n    second\n", "Multi = a\n    b\n")],
    ),
    ("a key alone does not match a sectioned key", {"Host": "z"}, []),
]


@pytest.mark.parametrize(
    ("variables", "changes"), [c[1:] for c in INI_CASES], ids=[c[0] for c in INI_CASES]
)
def test_ini(tmp_path: Path, variables: dict[str, str], changes: list[tuple[str, str]]) -> None:
    path = tmp_path / "app.ini"
    path.write_text(INI)
    replace_in_files(str(tmp_path), ["app.ini"], variables, Captured().writer)
    expected = INI
    for old, new in changes:
        expected = expected.replace(old, new, 1)
    assert path.read_text() == expected


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("bad.json", '{"a": 1,}', "bad.json: not valid JSON: Expecting property name"),
        ("bad.json", "// comment\n{}", "line 1 column 1"),
        ("bad.xml", "<a><b></a>", "bad.xml: not well-formed XML: mismatched tag at line 1"),
        ("bomb.xml", '<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', "declares entities"),
    ],
)
def test_unparseable_files_fail_naming_the_file(
    tmp_path: Path, name: str, content: str, fragment: str
) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(StructuredError) as caught:
        replace_in_files(str(tmp_path), [name], {"a": "1"}, Captured().writer)
    assert fragment in caught.value.message


def test_formats_by_content_and_unsupported_ones(tmp_path: Path) -> None:
    (tmp_path / "settings.conf").write_text('{"Port": 1}')
    (tmp_path / "settings.yaml").write_text("Port: 1\n")
    captured = Captured()
    changed = replace_in_files(str(tmp_path), ["settings.*"], {"Port": "2"}, captured.writer)
    assert changed == {"settings.conf": ["Port"]}
    assert (tmp_path / "settings.conf").read_text() == '{"Port": 2}'
    assert (tmp_path / "settings.yaml").read_text() == "Port: 1\n"
    assert any(w.startswith("settings.yaml: not a format") for w in captured.logs("warning"))
