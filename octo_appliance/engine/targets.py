"""Which targets a task runs on, read from the database as transport addresses."""

from __future__ import annotations

from collections.abc import Iterable

from octo_appliance.db import Target, TargetEnvironment, TargetRole
from octo_appliance.transports.base import TargetAddress


def address_of(target: Target) -> TargetAddress:
    return TargetAddress(
        id=target.id,
        name=target.name,
        communication_style=target.communication_style,
        uri=target.uri,
        thumbprint=target.thumbprint,
        certificate=target.certificate,
    )


def select_targets(
    environment_id: str | None, roles: Iterable[str], target_ids: Iterable[str]
) -> list[Target]:
    """Enabled targets in the environment having any of the roles, plus those named.

    With roles but no environment, all environments; with neither, only the named targets.
    """
    roles, target_ids = list(roles), list(target_ids)
    chosen: dict[str, Target] = {}
    if environment_id is not None or roles:
        query = Target.select().where(Target.disabled == False)  # noqa: E712
        if environment_id is not None:
            query = query.join(TargetEnvironment).where(
                TargetEnvironment.environment == environment_id
            )
        if roles:
            with_role = TargetRole.select(TargetRole.target).where(TargetRole.role.in_(roles))
            query = query.where(Target.id.in_(with_role))
        chosen.update((t.id, t) for t in query)
    if target_ids:
        named = Target.select().where(Target.id.in_(target_ids), Target.disabled == False)  # noqa: E712
        chosen.update((t.id, t) for t in named)
    return sorted(chosen.values(), key=lambda t: t.name)


def load_addresses(target_ids: Iterable[str]) -> list[TargetAddress]:
    ids = list(target_ids)
    rows = Target.select().where(Target.id.in_(ids)) if ids else []
    return sorted((address_of(t) for t in rows), key=lambda a: a.name)


def trusted_agents() -> list[TargetAddress]:
    """Every enabled target with an agent certificate (whom the agent network trusts)."""
    rows = Target.select().where(
        Target.disabled == False,  # noqa: E712
        Target.certificate != "",
    )
    return [address_of(t) for t in rows]
