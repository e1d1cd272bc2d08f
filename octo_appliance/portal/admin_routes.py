"""The routes of the administration pages: environments and targets, users, teams, API keys,
the audit log and plugins (``Portal.routes`` adds them to its table)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from octo_appliance.portal import (
    add_target,
    audit,
    environments,
    keys,
    plugins,
    targets,
    teams,
    users,
)

if TYPE_CHECKING:
    from octo_appliance.portal.routes import View

GET, POST = ["GET"], ["POST"]

ADMIN_PAGES: list[tuple[str, View, list[str]]] = [
    ("/environments", environments.index, GET),
    ("/environments", environments.create, POST),
    ("/environments/{id}", environments.show, GET),
    ("/environments/{id}", environments.update, POST),
    ("/environments/{id}/delete", environments.delete, POST),
    ("/environments/{id}/add-target", add_target.show, GET),
    ("/environments/{id}/add-target", add_target.submit, POST),
    ("/targets/{id}", targets.show, GET),
    ("/targets/{id}", targets.update, POST),
    ("/targets/{id}/health-check", targets.health_check, POST),
    ("/targets/{id}/delete", targets.delete, POST),
    ("/users", users.index, GET),
    ("/users", users.create, POST),
    ("/users/{id}/active", users.set_active, POST),
    ("/teams", teams.index, GET),
    ("/teams", teams.create, POST),
    ("/teams/{id}", teams.show, GET),
    ("/teams/{id}", teams.update, POST),
    ("/teams/{id}/delete", teams.delete, POST),
    ("/keys", keys.index, GET),
    ("/keys", keys.create, POST),
    ("/keys/{id}/revoke", keys.revoke, POST),
    ("/audit", audit.show, GET),
    ("/plugins", plugins.show, GET),
]
