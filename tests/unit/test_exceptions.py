"""The exception tree in ``exceptions.py``'s docstring is the package's real one.

Like datasette's test_docs: a new exception class that is not written into the tree, or one
written under the wrong parent, fails here, so the documented tree cannot drift.
"""

from __future__ import annotations

import errno
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import SimpleNamespace

import peewee
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

import octo_appliance
from octo_appliance import exceptions
from octo_appliance.api.errors import EXCEPTION_HANDLERS
from octo_appliance.config import Config
from octo_appliance.exceptions import OctoError

#: a tree line: its drawing (│, spaces, ├── or └──) and the class name that follows
TREE_LINE = re.compile(r"^ {4}(?P<drawing>[│ ]*[├└]── )?(?P<name>_?[A-Z]\w*)")


def documented_tree() -> dict[str, str | None]:
    """``{class name: parent name}`` as the docstring draws it (the root's parent: None)."""
    doc = exceptions.__doc__ or ""
    body = doc.split("::\n", 1)[1]
    parents: dict[str, str | None] = {}
    path: list[str] = []
    for line in body.splitlines():
        if not line.strip():
            if parents:
                break
            continue
        match = TREE_LINE.match(line)
        if match is None:
            continue
        drawing = match["drawing"]
        depth = 0 if drawing is None else len(drawing) // 4
        if depth > len(path) or (depth == 0 and parents):
            continue  # a continuation line of a description
        del path[depth:]
        parents[match["name"]] = path[-1] if path else None
        path.append(match["name"])
    return parents


def package_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in the package (all of its modules imported)."""
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(octo_appliance.__path__, "octo_appliance."):
        if module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ):
                assert found.get(obj.__name__, obj) is obj, f"two classes named {obj.__name__}"
                found[obj.__name__] = obj
    return found


TREE = documented_tree()
CLASSES = package_exceptions()


def test_the_tree_is_drawn_from_one_root() -> None:
    assert [name for name, parent in TREE.items() if parent is None] == ["OctoError"]
    assert len(TREE) > 50  # the parser read the whole drawing


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_exception_class_is_in_the_documented_tree(name: str) -> None:
    cls = CLASSES[name]
    assert issubclass(cls, OctoError), f"{cls.__module__}.{name} does not derive from OctoError"
    assert name in TREE, f"{cls.__module__}.{name} is missing from exceptions.py's docstring"
    parent = TREE[name]
    if parent is not None:
        bases = [base.__name__ for base in cls.__bases__]
        assert parent in bases, f"the docstring puts {name} under {parent}; it derives {bases}"


def test_every_documented_class_exists() -> None:
    assert sorted(set(TREE) - set(CLASSES)) == []


def test_the_runner_stays_outside() -> None:
    """The runner is stdlib-only: its errors have their own root, and the docstring says so."""
    assert "RunnerError" in (exceptions.__doc__ or "")
    assert not any(name.startswith("Runner") and name != "RunnerCompileError" for name in TREE)


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (exceptions.NotFound("no such thing"), 404),
        (exceptions.DatabaseUnavailable("the database does not answer"), 503),
        (peewee.IntegrityError("UNIQUE constraint failed"), 409),
        (exceptions.VaultError("the value does not decrypt"), 500),
        (OSError(errno.ENOSPC, "No space left on device"), 507),
        (OSError(errno.EACCES, "Permission denied"), 500),
        (RuntimeError("a bug"), 500),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_api_errors_answers_as_its_docstring_says(
    tmp_path: Path, raised: BaseException, status: int
) -> None:
    async def fail(request: Request) -> Response:
        raise raised

    app = Starlette(routes=[Route("/", fail)], exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    app.state.appliance = SimpleNamespace(data_dir=tmp_path, config=Config(data_dir=str(tmp_path)))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/")
    assert response.status_code == status
    assert set(response.json()["error"]) >= {"code", "message"}
    if status == 503:
        assert response.headers["Retry-After"] == "5"
