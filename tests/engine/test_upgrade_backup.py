"""The backup taken before a start migrates an existing database to a newer schema."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from octo_appliance.appliance import open_appliance
from octo_appliance.backup.archive import MANIFEST_MEMBER, Manifest
from octo_appliance.backup.upgrade import upgrade_hook
from octo_appliance.config import load_config
from octo_appliance.db.connection import open_database
from octo_appliance.db.migrations import _migrations, latest_version, migrate
from octo_appliance.exceptions import ConfigError
from octo_appliance.testing import keep_key_beside


def previous_version() -> int:
    """The schema version before the latest (numbers reserved for work in flight may be
    missing, so not always the latest minus one)."""
    return sorted(int(module.VERSION) for module in _migrations())[-2]


def older_data_dir(tmp_path: Path) -> Path:
    """A data dir whose database is one schema version behind this code."""
    data = tmp_path / "data"
    keep_key_beside(data)
    db = open_database(None, data)
    migrate(db, until=previous_version())
    db.close()
    return data


def test_a_start_that_migrates_takes_a_backup_first_and_only_then(tmp_path: Path) -> None:
    data = older_data_dir(tmp_path)
    config = load_config({"data_dir": str(data)}, environ={})
    calls: list[tuple[int, int]] = []

    def hook(have: int, latest: int) -> Path | None:
        calls.append((have, latest))
        return upgrade_hook(config)(have, latest)

    appliance, report = open_appliance(config, before_upgrade=hook, environ={})
    appliance.close()
    latest = latest_version()

    assert calls == [(previous_version(), latest)]
    assert report.upgrade_backup is not None and report.upgrade_backup.parent == data / "backups"
    with tarfile.open(report.upgrade_backup) as archive:
        member = archive.extractfile(MANIFEST_MEMBER)
        assert member is not None
        assert Manifest.from_bytes(member.read(), "backup").schema_version == previous_version()

    _, again = open_appliance(config, before_upgrade=hook, environ={})
    assert len(calls) == 1 and again.upgrade_backup is None


def test_a_backup_that_fails_stops_the_start_before_the_migration(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    data = older_data_dir(tmp_path)
    config = load_config({"data_dir": str(data), "upgrade_backup_dir": str(blocker)}, environ={})

    with pytest.raises(ConfigError, match="the backup taken before it failed") as caught:
        open_appliance(config, before_upgrade=upgrade_hook(config), environ={})
    assert "backup_before_upgrade = false" in (caught.value.hint or "")
    db = open_database(None, data)
    assert migrate(db, until=0) == []  # nothing applied...
    assert db.execute_sql("SELECT MAX(version) FROM schema_version").fetchone()[0] == (
        previous_version()
    )  # ...and the schema still the older one
    db.close()


def test_the_setting_turns_the_backup_off(tmp_path: Path) -> None:
    data = older_data_dir(tmp_path)
    config = load_config({"data_dir": str(data), "backup_before_upgrade": False}, environ={})

    appliance, report = open_appliance(config, before_upgrade=upgrade_hook(config), environ={})
    appliance.close()

    assert report.upgrade_backup is None and report.migrations == [latest_version()]
    assert not (data / "backups").exists()
