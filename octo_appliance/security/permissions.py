"""Built-in roles, the permissions they grant, and how a grant's scope limits them.

A team holds role grants; each grant may be limited to some environments and some projects
(empty = all). A user's permissions are the union over the teams they belong to.

Permissions named ``*.view`` / ``*.edit`` for a project-scoped resource are checked against the
project; environment-scoped ones against the environment. Creating a resource that has no
project or environment yet (a new project, a new environment) needs an unscoped grant.

The package feed belongs to no project: any grant holding ``package.view`` may read it, and
pushing or deleting a package needs ``package.push`` / ``package.delete`` through an unscoped
grant (only administrators hold them; a deployer deploys packages, a build server pushes them).

Code that runs on the appliance machine itself (steps with ``run_on: appliance``, the script
console on the built-in worker) needs ``worker.use`` beside the usual permission: only the
``administrator`` role holds it, or a team granted the ``worker-user`` role explicitly
(docs/security.md, "The built-in worker").
"""

from __future__ import annotations

import functools
import operator
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import peewee


class Permission(StrEnum):
    ENVIRONMENT_VIEW = "environment.view"
    ENVIRONMENT_EDIT = "environment.edit"
    TARGET_VIEW = "target.view"
    TARGET_EDIT = "target.edit"
    PROJECT_VIEW = "project.view"
    PROJECT_EDIT = "project.edit"
    VARIABLE_VIEW = "variable.view"
    VARIABLE_EDIT = "variable.edit"
    DEPLOYMENT_CREATE = "deployment.create"
    TASK_VIEW = "task.view"
    TASK_CANCEL = "task.cancel"
    SCRIPT_RUN = "script.run"
    USER_VIEW = "user.view"
    USER_EDIT = "user.edit"
    TEAM_VIEW = "team.view"
    TEAM_EDIT = "team.edit"
    AUDIT_VIEW = "audit.view"
    SYSTEM_VIEW = "system.view"
    #: manage the appliance itself: drain and undrain nodes (administrators)
    SYSTEM_EDIT = "system.edit"
    #: the built-in package feed: list, read and download packages
    PACKAGE_VIEW = "package.view"
    #: upload (and replace) packages; Octopus's BuiltInFeedPush
    PACKAGE_PUSH = "package.push"
    #: delete packages (a version a release uses only with force)
    PACKAGE_DELETE = "package.delete"
    #: run code on the appliance machine (the built-in worker): save, release and deploy a
    #: process with a ``run_on: appliance`` step, or aim the script console at the worker
    WORKER_USE = "worker.use"


_VIEW = {
    Permission.ENVIRONMENT_VIEW,
    Permission.TARGET_VIEW,
    Permission.PROJECT_VIEW,
    Permission.VARIABLE_VIEW,
    Permission.TASK_VIEW,
    Permission.TEAM_VIEW,
    Permission.SYSTEM_VIEW,
    Permission.PACKAGE_VIEW,
}

#: role name -> (title, permissions)
ROLES: dict[str, tuple[str, frozenset[Permission]]] = {
    "administrator": ("Administrator: everything", frozenset(Permission)),
    "project-deployer": (
        "Project deployer: view all, edit projects and variables, deploy, cancel tasks",
        frozenset(
            _VIEW
            | {
                Permission.PROJECT_EDIT,
                Permission.VARIABLE_EDIT,
                Permission.DEPLOYMENT_CREATE,
                Permission.TASK_CANCEL,
            }
        ),
    ),
    "viewer": ("Viewer: read-only", frozenset(_VIEW)),
    "worker-user": (
        "Built-in worker user: may run steps on the appliance machine (grant it beside "
        "project-deployer, limited to the projects and environments that need it)",
        frozenset({Permission.WORKER_USE}),
    ),
}

ADMINISTRATORS_TEAM = "Administrators"


@dataclass(frozen=True)
class Grant:
    role: str
    environments: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLES[self.role][1]

    def covers(self, project: str | None, environment: str | None) -> bool:
        if project is not None and self.projects and project not in self.projects:
            return False
        return not (
            environment is not None and self.environments and environment not in self.environments
        )

    @property
    def unscoped(self) -> bool:
        return not self.projects and not self.environments


@dataclass(frozen=True)
class Principal:
    """An authenticated user and their grants."""

    user_id: str
    username: str
    grants: tuple[Grant, ...] = field(default_factory=tuple)
    via: str = "api-key"
    #: the id of the registration token presented (``via == "registration-token"``): such a
    #: principal holds no grant and is let through only by endpoints that accept tokens
    registration_token: str | None = None

    def can(
        self,
        permission: Permission,
        *,
        project: str | None = None,
        environment: str | None = None,
    ) -> bool:
        """May this user do ``permission`` on the given project/environment (None = any)?"""
        return any(
            permission in grant.permissions and grant.covers(project, environment)
            for grant in self.grants
        )

    def can_unscoped(self, permission: Permission) -> bool:
        """Holds ``permission`` through a grant limited to nothing (needed to create roots)."""
        return any(permission in g.permissions and g.unscoped for g in self.grants)

    def visible(self, permission: Permission, kind: str) -> frozenset[str] | None:
        """Ids of ``kind`` (``projects``/``environments``) visible, or None for all of them."""
        allowed: set[str] = set()
        for grant in self.grants:
            if permission not in grant.permissions:
                continue
            scope = grant.projects if kind == "projects" else grant.environments
            if not scope:
                return None
            allowed |= scope
        return frozenset(allowed)

    @property
    def is_admin(self) -> bool:
        return any(g.role == "administrator" and g.unscoped for g in self.grants)


def grants_from_rows(rows: Iterable[Any]) -> tuple[Grant, ...]:
    return tuple(
        Grant(role, frozenset(envs or ()), frozenset(projects or ()))
        for role, envs, projects in rows
        if role in ROLES
    )


#: seconds a resolved principal is reused without asking the database
CACHE_SECONDS = 5.0


class PrincipalCache:
    """credential hash -> (principal, expiry); cleared on any security change."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Principal, float, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Principal, str] | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0], entry[2]

    def put(self, key: str, principal: Principal, extra: str = "") -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (principal, time.monotonic() + CACHE_SECONDS, extra)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def grant_condition(principal: Principal, permission: Permission, project: Any, env: Any) -> Any:
    """Rows whose (project, environment) columns a grant holding ``permission`` covers, as a
    peewee condition; None: all rows. A limited grant never covers a row naming neither."""
    terms = []
    for grant in principal.grants:
        if permission not in grant.permissions:
            continue
        if grant.unscoped:
            return None
        parts = []
        if grant.projects:
            parts.append(project.in_(sorted(grant.projects)))
        if grant.environments:
            parts.append(env.in_(sorted(grant.environments)))
        terms.append(functools.reduce(operator.and_, parts))
    if not terms:
        return peewee.SQL("1 = 0")  # matches nothing
    return functools.reduce(operator.or_, terms)
