"""Variable scoping, resolution and ``#{...}`` substitution for deployments.

A release snapshots its variables as ``{name, value, sensitive, scope, source}`` entries; a
value may be scoped by ``environments``, ``roles``, ``targets`` and ``steps``. For one context
(environment, step, target and its roles) a value is a *candidate* when every dimension it
names matches (any listed item matches within a dimension; an empty dimension matches all).
Among the candidates of one name (names are case-insensitive) the winner is the one with the
highest rank, compared left to right (docs/deployments.md, "Variable precedence"):

1. scoped to a step (the narrowest thing in a process: a per-step override),
2. scoped to a target,
3. scoped to a role,
4. scoped to an environment,
5. from the project rather than a library variable set,
6. earlier in the snapshot (project order, then library sets in the order the project lists).

So ``step`` beats ``target`` beats ``role`` beats ``environment`` beats unscoped, as in Octopus,
and a value scoped to both a step and an environment beats one scoped to the step alone.
System variables (``Octo.*`` / ``Octopus.*``) and output variables of earlier steps are set
by the engine and win over a project variable of the same name.

Substitution uses the runner's engine (:mod:`octo_runner.substitution`), strictly: an
unresolved reference or a loop is an error naming the variable, raised before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from octo_runner.substitution import (
    SubstitutionError,
    UnresolvedVariablesError,
    substitute,
)

from octo_appliance.exceptions import OctoError

PREFIXES = ("Octo", "Octopus")
PROJECT_SOURCE = "project"

#: ``Octo.Action[Step].Output.Name`` or ``...Output[Machine].Name`` (either prefix)
_OUTPUT_REF = re.compile(
    r"^(?:octo|octopus)\.action\[(?P<step>[^\]]+)\]\.output(?:\[[^\]]*\])?\..+$"
)


class VariableProblem(OctoError):
    """A property cannot be substituted: unresolved names, a loop or a template error."""


@dataclass(frozen=True)
class ScopedValue:
    """One value of a variable as the release snapshot holds it (sensitive value opened)."""

    name: str
    value: str
    sensitive: bool = False
    environments: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()
    steps: frozenset[str] = frozenset()
    from_project: bool = True
    position: int = 0

    @classmethod
    def from_snapshot(cls, position: int, raw: Mapping[str, Any], value: str | None) -> ScopedValue:
        scope = raw.get("scope") or {}
        source = raw.get("source") or PROJECT_SOURCE
        return cls(
            name=str(raw["name"]),
            value="" if value is None else str(value),
            sensitive=bool(raw.get("sensitive")),
            environments=frozenset(scope.get("environments") or ()),
            roles=frozenset(scope.get("roles") or ()),
            targets=frozenset(scope.get("targets") or ()),
            steps=frozenset(scope.get("steps") or ()),
            from_project=str(source) == PROJECT_SOURCE,
            position=position,
        )

    def rank(self) -> tuple[bool, bool, bool, bool, bool, int]:
        """Higher wins; see the module docstring."""
        return (
            bool(self.steps),
            bool(self.targets),
            bool(self.roles),
            bool(self.environments),
            self.from_project,
            -self.position,
        )


@dataclass(frozen=True)
class Scope:
    """Where a value is used: ids and names both match a scope entry."""

    environment_id: str = ""
    environment_name: str = ""
    step: str | None = None
    target_id: str | None = None
    target_name: str | None = None
    roles: frozenset[str] = frozenset()

    def matches(self, value: ScopedValue) -> bool:
        if value.environments and not value.environments & {
            self.environment_id,
            self.environment_name,
        }:
            return False
        if value.targets and (
            self.target_id is None or not value.targets & {self.target_id, self.target_name}
        ):
            return False
        if value.roles and not value.roles & self.roles:
            return False
        return not (value.steps and (self.step is None or self.step not in value.steps))


@dataclass(frozen=True)
class Resolved:
    name: str
    value: str
    sensitive: bool = False


def load_snapshot(
    snapshot: Sequence[Mapping[str, Any]], sensitive: Mapping[str, str]
) -> list[ScopedValue]:
    """The snapshot's entries with sensitive values taken from ``sensitive`` (index -> value)."""
    values = []
    for index, raw in enumerate(snapshot):
        value = sensitive.get(str(index)) if raw.get("sensitive") else raw.get("value")
        values.append(ScopedValue.from_snapshot(index, raw, value))
    return values


def resolve(values: Iterable[ScopedValue], scope: Scope) -> dict[str, Resolved]:
    """The winning value of every name for ``scope``, keyed by lower-case name."""
    winners: dict[str, ScopedValue] = {}
    for value in values:
        if not scope.matches(value):
            continue
        key = value.name.lower()
        best = winners.get(key)
        if best is None or value.rank() > best.rank():
            winners[key] = value
    return {k: Resolved(v.name, v.value, v.sensitive) for k, v in winners.items()}


def both_prefixes(values: Mapping[str, str]) -> dict[str, Resolved]:
    """``{"Project.Name": x}`` -> ``Octo.Project.Name`` and ``Octopus.Project.Name``."""
    named: dict[str, Resolved] = {}
    for key, value in values.items():
        for prefix in PREFIXES:
            name = f"{prefix}.{key}"
            named[name.lower()] = Resolved(name, value)
    return named


@dataclass
class OutputVariables:
    """Output variables of finished steps, per step and machine, in the order they arrived."""

    #: lower step name -> (step name, machine name -> {lower name: value})
    _steps: dict[str, tuple[str, dict[str, dict[str, Resolved]]]] = field(default_factory=dict)
    #: bumped by every ``record``: what ``_shared`` was built from
    version: int = 0
    #: ``(version, names)``: the part of ``for_machine`` that is the same for every machine.
    #: Built once per change, not once per target: every machine's indexed values made
    #: each of N targets' variables cost O(N) Python work, O(N^2) per step (issue 14)
    _shared: tuple[int, dict[str, Resolved]] = field(
        default_factory=lambda: (-1, {}), repr=False, compare=False
    )

    def record(self, step: str, machine: str, values: Iterable[Resolved]) -> None:
        _, machines = self._steps.setdefault(step.lower(), (step, {}))
        machines.pop(machine, None)  # re-inserted last: the latest machine wins
        machines[machine] = {v.name.lower(): v for v in values}
        self.version += 1

    def values(self) -> list[Resolved]:
        return [
            v for _, machines in self._steps.values() for m in machines.values() for v in m.values()
        ]

    def for_machine(self, machine: str | None) -> dict[str, Resolved]:
        """``Octo.Action[S].Output[M].N`` for every machine, and ``Octo.Action[S].Output.N``:
        this machine's own value if it ran ``S``, else the value of the last machine to finish."""
        named = dict(self._shared_names())
        if machine is None:
            return named
        for step, machines in self._steps.values():
            # every own name is already a key (from the last machine's values): overwriting
            # keeps the order of the names
            for value in machines.get(machine, {}).values():
                for prefix in PREFIXES:
                    full = f"{prefix}.Action[{step}].Output.{value.name}"
                    named[full.lower()] = Resolved(full, value.value, value.sensitive)
        return named

    def _shared_names(self) -> dict[str, Resolved]:
        """Every machine's indexed values and each name's last value, as of ``version``."""
        if self._shared[0] == self.version:
            return self._shared[1]
        named: dict[str, Resolved] = {}
        for step, machines in self._steps.values():
            plain: dict[str, Resolved] = {}
            for name, outputs in machines.items():
                for value in outputs.values():
                    plain[value.name.lower()] = value
                    for prefix in PREFIXES:
                        full = f"{prefix}.Action[{step}].Output[{name}].{value.name}"
                        named[full.lower()] = Resolved(full, value.value, value.sensitive)
            for value in plain.values():
                for prefix in PREFIXES:
                    full = f"{prefix}.Action[{step}].Output.{value.name}"
                    named[full.lower()] = Resolved(full, value.value, value.sensitive)
        self._shared = (self.version, named)
        return named


@dataclass(frozen=True)
class VariableSet:
    """Every variable one runner command sees: resolved project/library values, then
    output variables, then system variables (later layers win a name clash)."""

    entries: dict[str, Resolved]

    @classmethod
    def layered(cls, *layers: Mapping[str, Resolved]) -> VariableSet:
        merged: dict[str, Resolved] = {}
        for layer in layers:
            merged.update(layer)
        return cls(merged)

    def mapping(self) -> dict[str, str]:
        return {v.name: v.value for v in self.entries.values()}

    def runner_list(self) -> list[dict[str, Any]]:
        """The runner's ``variables`` field (sensitive ones flagged, so it masks them)."""
        return [
            {"name": v.name, "value": v.value, "sensitive": v.sensitive}
            for v in self.entries.values()
        ]

    def sensitive_values(self) -> list[str]:
        return [v.value for v in self.entries.values() if v.sensitive and v.value]


def is_deferred_output(name: str, earlier_steps: Iterable[str]) -> bool:
    """True when ``name`` is an output variable of one of ``earlier_steps`` (not known yet)."""
    match = _OUTPUT_REF.match(name.lower())
    return match is not None and match["step"] in {s.lower() for s in earlier_steps}


def substitute_text(
    text: str, variables: Mapping[str, str], deferred_steps: Iterable[str] | None = None
) -> str:
    """Substitute strictly; with ``deferred_steps`` (validation before the run), references
    to output variables of those steps are allowed to be missing."""
    try:
        return substitute(text, variables)
    except UnresolvedVariablesError as exc:
        missing = list(exc.names)
        if deferred_steps is not None:
            steps = list(deferred_steps)
            missing = [name for name in missing if not is_deferred_output(name, steps)]
        if missing:
            raise VariableProblem(
                "unresolved variable reference(s): " + ", ".join(missing),
                hint="define them for this environment, target and step, or write a literal "
                "#{ as ##{",
            ) from None
        return ""
    except SubstitutionError as exc:
        raise VariableProblem(exc.message, hint=exc.hint) from None


def substitute_properties(
    properties: Any,
    variables: Mapping[str, str],
    deferred_steps: Iterable[str] | None = None,
    keep: Iterable[str] = (),
) -> Any:
    """Every string inside ``properties`` (dicts and lists walked) substituted, except the
    top-level properties named in ``keep`` (the runner substitutes those); a problem names
    the property it is in (``body``, ``responsible_teams[1]``)."""
    steps = None if deferred_steps is None else list(deferred_steps)
    kept = frozenset(keep)

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, str):
            try:
                return substitute_text(value, variables, steps)
            except VariableProblem as exc:
                where = f"in {path}: " if path else ""
                raise VariableProblem(where + exc.message, hint=exc.hint) from None
        if isinstance(value, Mapping):
            return {
                k: v if not path and k in kept else walk(v, f"{path}.{k}" if path else str(k))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    return walk(properties, "")
