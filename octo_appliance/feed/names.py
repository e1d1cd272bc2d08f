"""Package file names: ``ID.VERSION.ext``, the one naming rule of the feed.

The ID may contain dots (``Acme.Web``); the version starts at the first dot-separated part that
is all digits, and must be a semantic version: ``Acme.Web.1.4.0-beta.2.tar.gz`` is
``Acme.Web`` at ``1.4.0-beta.2``, and ``MyApp.1.0.0.0.zip`` is refused (``1.0.0.0`` is not
semantic) rather than read as ``MyApp.1`` at ``0.0.0``. So an id cannot have an all-digit
part (``Acme.2024.Tools``); ``Acme.v2024.Tools`` is fine. Semantic versions are defined here
and releases (:mod:`octo_appliance.engine.releases`) use the same :func:`is_version` and
:func:`version_key`, so the feed and releases agree on what a version is and how they sort.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from octo_appliance.exceptions import ValidationFailed

_IDENT = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    rf"(?:-({_IDENT}(?:\.{_IDENT})*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
#: semantic-version precedence as a sortable tuple (see :func:`version_key`)
VersionKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def is_version(text: str) -> bool:
    return SEMVER.match(text) is not None


def version_key(text: str) -> VersionKey | None:
    """Semantic-version precedence as a sortable key (None: not a semantic version)."""
    match = SEMVER.match(text)
    if match is None:
        return None
    major, minor, patch, pre, _build = match.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, ())
    parts = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split("."))
    return (int(major), int(minor), int(patch), 0, parts)


#: stored format -> the extension of its display name
FORMATS: dict[str, str] = {"zip": ".zip", "tar": ".tar", "tar.gz": ".tar.gz"}
#: accepted extensions (longest first, so ``.tar.gz`` wins over ``.gz``) -> stored format
EXTENSIONS: tuple[tuple[str, str], ...] = (
    (".tar.gz", "tar.gz"),
    (".tgz", "tar.gz"),
    (".zip", "zip"),
    (".tar", "tar"),
)
MAX_ID_LENGTH = 100
MAX_VERSION_LENGTH = 100
#: letters, digits, ``_`` and ``-``, in dot-separated segments (NuGet/Octopus-like)
PACKAGE_ID = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")
_NAME_HINT = "name the file ID.VERSION.ext, like MyApp.1.4.0.zip or Acme.Web.2.0.0-beta.1.tar.gz"
_EXT_LIST = ", ".join(ext for ext, _ in EXTENSIONS)


@dataclass(frozen=True)
class PackageName:
    package_id: str
    version: str
    format: str

    @property
    def display_name(self) -> str:
        return display_name(self.package_id, self.version, self.format)


def display_name(package_id: str, version: str, fmt: str) -> str:
    """The file name a package is shown and downloaded as (``.tgz`` uploads show ``.tar.gz``)."""
    return f"{package_id}.{version}{FORMATS[fmt]}"


def _invalid(message: str, hint: str = _NAME_HINT) -> ValidationFailed:
    return ValidationFailed(message, details=[{"field": "file", "message": message}], hint=hint)


def is_package_id(text: str) -> bool:
    return len(text) <= MAX_ID_LENGTH and PACKAGE_ID.match(text) is not None


def check_package_id(text: str) -> str:
    if not is_package_id(text):
        raise _invalid(
            f"'{text[:120]}' is not a valid package id",
            hint="use letters, digits, '_', '-' and dots between them, at most "
            f"{MAX_ID_LENGTH} characters",
        )
    return text


def split_extension(file_name: str) -> tuple[str, str]:
    """``(stem, format)``; 422 naming the accepted extensions when none matches."""
    lowered = file_name.lower()
    for extension, fmt in EXTENSIONS:
        if lowered.endswith(extension) and len(file_name) > len(extension):
            return file_name[: -len(extension)], fmt
    raise _invalid(
        f"'{file_name[:120]}' does not end in a supported extension ({_EXT_LIST})",
        hint=f"upload a zip or tar archive; {_NAME_HINT}",
    )


def parse_file_name(file_name: str) -> PackageName:
    """Split ``ID.VERSION.ext``; 422 saying which part is wrong.

    A path in the name (some browsers send ``C:\\dir\\name.zip``) is dropped.
    """
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not base:
        raise _invalid("the uploaded file has no file name")
    stem, fmt = split_extension(base)
    parts = stem.split(".")
    first = next((i for i, part in enumerate(parts) if part.isascii() and part.isdigit()), None)
    if first is None:
        raise _invalid(f"'{base[:120]}' does not name a package id and a version")
    if first == 0:
        raise _invalid(f"'{base[:120]}' has a version but no package id before it")
    package_id, version = ".".join(parts[:first]), ".".join(parts[first:])
    if not is_version(version):
        raise _invalid(
            f"'{version[:120]}' in '{base[:120]}' is not a semantic version",
            hint="versions are MAJOR.MINOR.PATCH with an optional -prerelease and +build, "
            "like 1.4.0 or 1.4.0-beta.2 (the version starts at the first all-digit part)",
        )
    if len(version) > MAX_VERSION_LENGTH:
        raise _invalid(f"version '{version[:120]}…' is over {MAX_VERSION_LENGTH} characters")
    return PackageName(check_package_id(package_id), version, fmt)
