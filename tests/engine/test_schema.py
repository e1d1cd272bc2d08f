"""The migrations and the models describe the same schema, on SQLite and PostgreSQL.

A database built by migrating from version 1 and one built from the models
(``create_tables``) must have the same tables, columns (type, length, nullability, default),
indexes (unique or not) and constraints (primary and foreign keys with their actions). A model
changed without a migration fails here. The released version 6 is also held against the
schema that the code of its time created (``data/schema_v6.json``, captured with
``schema_shape.shape`` from fresh databases migrated by commit a94cd55, before the migrations
were frozen), so existing databases and new ones are alike. Never regenerate that file.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import octo_appliance.db
from octo_appliance.appliance import open_appliance
from octo_appliance.config import load_config
from octo_appliance.db import MODELS, BaseModel
from octo_appliance.db.migrations import current_version, latest_version, migrate
from octo_appliance.db.schema import SchemaVersion
from octo_appliance.exceptions import DatabaseError
from octo_appliance.testing import keep_key_beside
from tests.engine.schema_shape import Opener, Shape, differences, shape

SNAPSHOT_V6 = Path(__file__).parent / "data" / "schema_v6.json"
HINT = (
    "a model and the migrations disagree: add a migration (octo_appliance/db/migrations, "
    "never edit a released one) that makes the database what the model says"
)


def _migrated(open_empty: Opener, name: str = "migrated", until: int | None = None) -> Shape:
    db = open_empty(name)
    migrate(db, until=until)
    return shape(db)


def _from_models(open_empty: Opener) -> Shape:
    db = open_empty("models")  # (open_database binds the models to it)
    db.create_tables([*MODELS, SchemaVersion])
    return shape(db)


def test_migrating_from_version_1_builds_the_schema_the_models_describe(open_empty):
    migrated = _migrated(open_empty)
    expected = _from_models(open_empty)
    found = differences(expected["tables"], migrated["tables"])
    assert not found, HINT + ":\n" + "\n".join(found)


def test_every_model_is_listed_so_the_comparison_sees_it():
    for module in pkgutil.walk_packages(octo_appliance.db.__path__, "octo_appliance.db."):
        importlib.import_module(module.name)
    defined = {
        model
        for model in _subclasses(BaseModel)
        if model.__module__.startswith("octo_appliance.db.")
        and ".migrations." not in model.__module__
    }
    missing = sorted(model.__name__ for model in defined - set(MODELS))
    assert not missing, f"add {missing} to octo_appliance.db.MODELS"


def _subclasses(cls: type[BaseModel]) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def test_version_6_is_the_schema_the_released_migrations_created(open_empty, request):
    """Databases made before the migrations were frozen: same schema, down to column order
    and (SQLite) the stored CREATE text."""
    backend = request.node.callspec.params["open_empty"]
    migrated = json.loads(json.dumps(_migrated(open_empty, until=6)))
    released = json.loads(SNAPSHOT_V6.read_text())[backend]
    found = differences(released, migrated)
    assert not found, "\n".join(found)


#: columns a later migration appends (after the one a test drops and gets back)
LATER_COLUMNS = {"target": ("transport_settings", "sealed_credentials")}


@pytest.mark.parametrize(
    ("version", "table", "column"),
    [
        pytest.param(2, "target", "certificate", id="version 1-2 without target.certificate"),
        pytest.param(5, "server_task", "not_before", id="version 2-5 without task.not_before"),
    ],
)
def test_a_database_made_before_a_column_existed_gains_it(
    open_empty, request, version, table, column
):
    """A version-N database written by code older than the column: after the upgrade its
    schema is the models' (in another column order, and, for the SQLite certificate, with the
    DEFAULT '' that SQLite needs to add a NOT NULL column)."""
    db = open_empty("old")
    migrate(db, until=version)
    with db.atomic():
        db.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    migrate(db)
    upgraded = shape(db)
    expected = _from_models(open_empty)
    backend = request.node.callspec.params["open_empty"]
    if backend == "sqlite" and column == "certificate":
        expected["tables"]["target"]["columns"]["certificate"]["default"] = "''"
    found = differences(expected["tables"], upgraded["tables"])
    assert not found, "\n".join(found)
    later = LATER_COLUMNS.get(table, ())  # added by migrations after the column's own
    order = [name for name in upgraded["exact"]["column_order"][table] if name not in later]
    assert order[-1] == column


def test_a_database_newer_than_the_code_refuses_to_start(open_empty):
    db = open_empty("newer")
    migrate(db)
    SchemaVersion.create(version=latest_version() + 1)
    with pytest.raises(DatabaseError, match="newer than this appliance knows") as raised:
        migrate(db)
    assert raised.value.hint
    assert current_version(db) == latest_version() + 1


def test_an_appliance_does_not_start_on_a_database_newer_than_its_code(tmp_path):
    data_dir = tmp_path / "data"
    keep_key_beside(data_dir)
    config = load_config({"data_dir": str(data_dir)}, environ={})
    appliance, _ = open_appliance(config, environ={"OCTO_ADMIN_PASSWORD": "a-long-password-1"})
    SchemaVersion.create(version=latest_version() + 1)
    appliance.close()
    with pytest.raises(DatabaseError, match="newer than this appliance knows"):
        open_appliance(config, environ={})
