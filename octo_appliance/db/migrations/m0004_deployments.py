"""Schema version 4: lifecycles, library variable sets, processes, releases, deployments and
interruptions."""

from __future__ import annotations

import peewee

VERSION = 4


def apply(db: peewee.Database) -> None:
    from octo_appliance.db.deployments import DEPLOYMENT_MODELS

    db.create_tables(DEPLOYMENT_MODELS, safe=True)
