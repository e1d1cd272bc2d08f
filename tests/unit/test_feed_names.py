"""Package file names: ``ID.VERSION.ext`` with dotted ids and semantic versions only."""

from __future__ import annotations

import pytest

from octo_appliance.exceptions import ValidationFailed
from octo_appliance.feed.names import PackageName, display_name, parse_file_name


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("MyApp.1.4.0.zip", ("MyApp", "1.4.0", "zip")),
        ("Acme.Web.1.4.0-beta.2.tar.gz", ("Acme.Web", "1.4.0-beta.2", "tar.gz")),
        ("Acme.Web.1.4.0-beta.2.tgz", ("Acme.Web", "1.4.0-beta.2", "tar.gz")),
        ("my_app-2.0.0.1.tar", ("my_app-2", "0.0.1", "tar")),
        ("Acme.v2024.Tools.3.0.0.zip", ("Acme.v2024.Tools", "3.0.0", "zip")),
        ("MyApp.1.0.0+build.7.ZIP", ("MyApp", "1.0.0+build.7", "zip")),
        ("Lib.10.20.30-rc.1+sha.5114f85.zip", ("Lib", "10.20.30-rc.1+sha.5114f85", "zip")),
        ("C:\\builds\\MyApp.1.0.0.zip", ("MyApp", "1.0.0", "zip")),
        ("out/MyApp.1.0.0.zip", ("MyApp", "1.0.0", "zip")),
    ],
)
def test_valid_names(file_name, expected):
    assert parse_file_name(file_name) == PackageName(*expected)


@pytest.mark.parametrize(
    ("file_name", "fragment"),
    [
        ("MyApp.1.0.zip", "'1.0' in 'MyApp.1.0.zip' is not a semantic version"),
        ("MyApp.1.0.0.0.zip", "'1.0.0.0' in 'MyApp.1.0.0.0.zip' is not a semantic version"),
        ("Acme.2024.Tools.1.0.0.zip", "not a semantic version"),
        ("MyApp.v1.0.0.zip", "'0.0' in 'MyApp.v1.0.0.zip' is not a semantic version"),
        ("MyApp.vnext.zip", "does not name a package id and a version"),
        ("1.0.0.0.zip", "no package id"),
        ("MyApp.zip", "does not name a package id and a version"),
        ("1.0.0.zip", "no package id"),
        ("My App.1.0.0.zip", "not a valid package id"),
        ("MyApp..1.0.0.zip", "not a valid package id"),
        (".MyApp.1.0.0.zip", "not a valid package id"),
        ("MyApp.1.0.0.rar", "supported extension"),
        ("MyApp.1.0.0.gz", "supported extension"),
        (".zip", "supported extension"),
        ("", "no file name"),
        ("A" * 101 + ".1.0.0.zip", "not a valid package id"),
        ("MyApp.1.0.0-" + "a" * 100 + ".zip", "over 100 characters"),
    ],
)
def test_invalid_names_say_what_is_wrong(file_name, fragment):
    with pytest.raises(ValidationFailed) as caught:
        parse_file_name(file_name)
    assert fragment in caught.value.message
    assert caught.value.hint
    assert caught.value.details[0]["field"] == "file"


def test_display_name_normalises_tgz():
    assert parse_file_name("Acme.Web.2.0.0.tgz").display_name == "Acme.Web.2.0.0.tar.gz"
    assert display_name("MyApp", "1.0.0", "zip") == "MyApp.1.0.0.zip"
