"""peewee models by domain, the connection factory and migrations.

The database knows nothing of HTTP. Sealed (encrypted) columns are listed in
:data:`SEALED_COLUMNS` so master-key rotation can find every one.
"""

from __future__ import annotations

from octo_appliance.db.audit import AuditEvent
from octo_appliance.db.base import BaseModel, database_proxy, new_id, utcnow
from octo_appliance.db.deployments import (
    Deployment,
    Interruption,
    LibraryVariable,
    LibraryVariableSet,
    Lifecycle,
    ProjectProcess,
    ProjectSettings,
    Release,
)
from octo_appliance.db.infrastructure import Environment, Target, TargetEnvironment, TargetRole
from octo_appliance.db.nodes import Node
from octo_appliance.db.packages import Package, ReleasePackage
from octo_appliance.db.projects import Project, Variable
from octo_appliance.db.relay import RelayAgent, RelayCall, RelayChunk, RelayEvent, RelayNode
from octo_appliance.db.security import (
    ApiKey,
    LoginSession,
    RegistrationToken,
    Team,
    TeamMember,
    TeamRole,
    User,
)
from octo_appliance.db.tasks import ServerTask, TaskLogLine, TaskTargetResult

#: Every table's model. The migrations create the tables (never from these classes);
#: ``tests/engine/test_schema.py`` checks both agree and that this list names every model.
MODELS: list[type[BaseModel]] = [
    Environment,
    Target,
    TargetEnvironment,
    TargetRole,
    Project,
    Variable,
    User,
    Team,
    TeamMember,
    TeamRole,
    ApiKey,
    LoginSession,
    AuditEvent,
    ServerTask,
    TaskTargetResult,
    TaskLogLine,
    Lifecycle,
    ProjectSettings,
    ProjectProcess,
    LibraryVariableSet,
    LibraryVariable,
    Release,
    Deployment,
    Interruption,
    Package,
    ReleasePackage,
    RegistrationToken,
    Node,
    RelayNode,
    RelayAgent,
    RelayCall,
    RelayEvent,
    RelayChunk,
]

#: (model, column) pairs holding values sealed by the vault with ``row.aad(column)``.
SEALED_COLUMNS: list[tuple[type[BaseModel], str]] = [
    (Variable, "sealed_value"),
    (ServerTask, "sealed_arguments"),
    (TaskTargetResult, "sealed_output_variables"),
    (TaskLogLine, "message"),
    (LibraryVariable, "sealed_value"),
    (Release, "sealed_variables"),
    (Target, "sealed_credentials"),
]

__all__ = [
    "MODELS",
    "SEALED_COLUMNS",
    "ApiKey",
    "AuditEvent",
    "BaseModel",
    "Deployment",
    "Environment",
    "Interruption",
    "LibraryVariable",
    "LibraryVariableSet",
    "Lifecycle",
    "LoginSession",
    "Node",
    "Package",
    "Project",
    "ProjectProcess",
    "ProjectSettings",
    "RegistrationToken",
    "Release",
    "ReleasePackage",
    "ServerTask",
    "Target",
    "TargetEnvironment",
    "TargetRole",
    "TaskLogLine",
    "TaskTargetResult",
    "Team",
    "TeamMember",
    "TeamRole",
    "User",
    "Variable",
    "database_proxy",
    "new_id",
    "utcnow",
]
