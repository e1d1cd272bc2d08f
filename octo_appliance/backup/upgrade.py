"""The automatic backup taken before a start migrates the schema (an upgrade).

Upgrading is "replace the executable and restart", so the restart is the last moment the data
is still in the shape the previous version can read. A migration cannot be undone; a backup in
the format of ``octo-appliance backup`` can be restored by the previous executable with
``octo-appliance restore``. The backup goes to ``upgrade_backup_dir`` (default ``backups/`` in
the data dir, so it inherits the data dir's 0700). A start that cannot take it does not
migrate: it stops and says why; an operator who keeps backups of their own (PostgreSQL with
``pg_dump`` missing, say) sets ``backup_before_upgrade = false``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from octo_appliance.config import Config
from octo_appliance.exceptions import ConfigError, OctoError

log = logging.getLogger("octo_appliance.upgrade")


def upgrade_backup_path(config: Config, have: int, latest: int, now: datetime) -> Path:
    folder = Path(config.upgrade_backup_dir) if config.upgrade_backup_dir else None
    folder = folder or config.data_path / "backups"
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    return folder / f"before-schema-{have}-to-{latest}-{stamp}.tar"


def backup_before_upgrade(config: Config, have: int, latest: int) -> Path | None:
    """Take the backup the migration from ``have`` to ``latest`` needs; its path, or None
    when the setting turns it off."""
    if not config.backup_before_upgrade:
        log.warning(
            "migrating the schema from version %d to %d without a backup "
            "(backup_before_upgrade = false)",
            have,
            latest,
        )
        return None
    # only now: every start reads this module, and only an upgrade takes a backup
    from octo_appliance.backup.create import make_backup

    output = upgrade_backup_path(config, have, latest, datetime.now(UTC))
    try:
        result = make_backup(config, output)
    except (OctoError, OSError) as exc:
        hint = getattr(exc, "hint", None)
        raise ConfigError(
            f"the schema must be migrated from version {have} to {latest}, and the backup "
            f"taken before it failed: {exc}",
            hint=(hint + "; or " if hint else "")
            + "set backup_before_upgrade = false once you have a backup of your own",
        ) from None
    log.info(
        "backup before the schema upgrade %d -> %d written: %s (%d files)",
        have,
        latest,
        output,
        result.files,
    )
    return output


def upgrade_hook(config: Config) -> Callable[[int, int], Path | None]:
    """What the commands hand :func:`octo_appliance.appliance.open_appliance`."""
    return lambda have, latest: backup_before_upgrade(config, have, latest)
