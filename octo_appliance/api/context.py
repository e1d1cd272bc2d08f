"""What a handler gets besides its parsed input: the appliance and who is asking."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from octo_appliance.db.audit import record_event
from octo_appliance.exceptions import Forbidden
from octo_appliance.security.permissions import Permission, Principal

if TYPE_CHECKING:
    from octo_appliance.appliance import Appliance


@dataclass
class RequestContext:
    appliance: Appliance
    principal: Principal | None
    path_params: dict[str, str]
    _after_commit: list[Callable[[], None]] = field(default_factory=list)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the request's transaction has committed (not on rollback)."""
        self._after_commit.append(callback)

    def security_changed(self) -> None:
        """Users, teams, grants or keys changed: drop cached principals after the commit, so
        no request can cache the old state between the change and the commit."""
        self.appliance.security_changed()
        self.after_commit(self.appliance.security_changed)

    def targets_changed(self) -> None:
        """Targets were added, changed or removed: reload agent trust after the commit."""
        self.after_commit(self.appliance.targets_changed)

    def run_after_commit(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    @property
    def user(self) -> Principal:
        assert self.principal is not None, "endpoint declared auth=False but used the user"
        return self.principal

    def require(
        self,
        permission: Permission,
        *,
        project: str | None = None,
        environment: str | None = None,
    ) -> None:
        """Raise 403 unless the user holds ``permission`` for that project/environment."""
        if not self.user.can(permission, project=project, environment=environment):
            where = ""
            if project:
                where = f" on project {project}"
            if environment:
                where += f" in environment {environment}"
            raise Forbidden(
                f"you lack the permission '{permission}'{where}",
                hint="ask an administrator to grant your team a role that includes it",
            )

    def only_visible(self, rows: Any, permission: Permission, scope: str, id_field: Any) -> Any:
        """``rows`` narrowed to the ids the user holds ``permission`` on (``scope`` is
        ``"projects"`` or ``"environments"``); unchanged when the user's grants are unscoped."""
        visible = self.user.visible(permission, scope)
        if visible is None:
            return rows
        return rows.where(id_field.in_(sorted(visible)))

    def require_unscoped(self, permission: Permission) -> None:
        if not self.user.can_unscoped(permission):
            raise Forbidden(
                f"you lack the permission '{permission}' without scope limits",
                hint="creating this needs a role granted for all projects and environments",
            )

    def audit(
        self,
        action: str,
        resource_type: str,
        resource_id: str | None,
        resource_name: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record a change; callers pass details that hold no sensitive value."""
        record_event(
            user_id=self.principal.user_id if self.principal else None,
            username=self.principal.username if self.principal else "",
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            resource_name=resource_name,
            details=details or {},
        )
