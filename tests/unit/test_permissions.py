"""Role grants and their scopes, as a table."""

from __future__ import annotations

import pytest

from octo_appliance.security.permissions import Grant, Permission, Principal

P = Permission


def principal(*grants: Grant) -> Principal:
    return Principal("usr_1", "someone", grants)


@pytest.mark.parametrize(
    ("grants", "permission", "project", "environment", "allowed"),
    [
        ((Grant("administrator"),), P.USER_EDIT, None, None, True),
        ((Grant("viewer"),), P.PROJECT_VIEW, "prj_a", None, True),
        ((Grant("viewer"),), P.PROJECT_EDIT, "prj_a", None, False),
        (
            (Grant("project-deployer", projects=frozenset({"prj_a"})),),
            P.PROJECT_EDIT,
            "prj_a",
            None,
            True,
        ),
        (
            (Grant("project-deployer", projects=frozenset({"prj_a"})),),
            P.PROJECT_EDIT,
            "prj_b",
            None,
            False,
        ),
        (
            (Grant("project-deployer", environments=frozenset({"env_d"})),),
            P.DEPLOYMENT_CREATE,
            "prj_a",
            "env_d",
            True,
        ),
        (
            (Grant("project-deployer", environments=frozenset({"env_d"})),),
            P.DEPLOYMENT_CREATE,
            "prj_a",
            "env_p",
            False,
        ),
        (
            (Grant("viewer"), Grant("project-deployer", projects=frozenset({"prj_a"}))),
            P.VARIABLE_EDIT,
            "prj_a",
            None,
            True,
        ),
        ((), P.PROJECT_VIEW, None, None, False),
        ((Grant("project-deployer"),), P.USER_EDIT, None, None, False),
    ],
)
def test_can(
    grants: tuple[Grant, ...],
    permission: Permission,
    project: str | None,
    environment: str | None,
    allowed: bool,
) -> None:
    assert principal(*grants).can(permission, project=project, environment=environment) is allowed


def test_visible_sets() -> None:
    scoped = principal(
        Grant("viewer", projects=frozenset({"prj_a"})),
        Grant("project-deployer", projects=frozenset({"prj_b"})),
    )
    assert scoped.visible(P.PROJECT_VIEW, "projects") == {"prj_a", "prj_b"}
    assert scoped.visible(P.PROJECT_EDIT, "projects") == {"prj_b"}
    assert principal(Grant("viewer")).visible(P.PROJECT_VIEW, "projects") is None


def test_unscoped_needed_for_creating_roots() -> None:
    scoped = principal(Grant("administrator", projects=frozenset({"prj_a"})))
    assert not scoped.can_unscoped(P.PROJECT_EDIT)
    assert not scoped.is_admin
    assert principal(Grant("administrator")).is_admin
