"""The ``#{...}`` variable substitution engine, shared by the runner and the appliance.

Syntax (Octopus "Octostache" users will recognise it):

- ``#{Name}``: the value of variable ``Name``; names are case-insensitive and may hold spaces,
  dots and brackets (``#{Octopus.Action[Deploy web].Output.Port}``).
- Values are templates too: a value holding ``#{Other}`` is expanded when used, recursively;
  a reference cycle raises ``VariableLoopError``. A name may itself contain a reference:
  ``#{Port[#{Environment}]}``.
- Filters: ``#{Name | Trim | ToUpper}``; see ``FILTERS``.
- ``#{if Name}...#{else}...#{/if}``: truthy means non-empty and not ``false``/``0`` (any case);
  a missing variable is false, not an error. ``#{if Name == "text"}`` and ``!=`` compare
  with a quoted literal. ``#{unless Name}...#{/unless}`` is the negation.
- ``#{each item in List}...#{item}...#{/each}``: ``List`` is comma-separated; items are trimmed
  and empty items skipped; ``item`` shadows a variable of the same name inside the block.
- ``##{Name}`` is the escape: it renders the literal text ``#{Name}``.
- A ``#{`` with no closing ``}`` is literal text.

Strict mode (the default, used for scripts) raises ``UnresolvedVariablesError`` naming every
missing variable; lenient mode leaves an unresolved ``#{Name}`` as written, like Octopus.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Union

from .errors import SubstitutionError
from .substitution_filters import FILTERS, apply_filters


class TemplateSyntaxError(SubstitutionError):
    """Unbalanced ``#{if}``/``#{each}`` blocks, an unknown filter or a malformed tag."""


class VariableLoopError(SubstitutionError):
    """Variables refer to each other in a cycle."""

    def __init__(self, chain: list[str]) -> None:
        super().__init__(
            "variable reference loop: " + " -> ".join(chain),
            hint="break the cycle: one of these variables must not refer back to the others",
        )
        self.chain = chain


class UnresolvedVariablesError(SubstitutionError):
    """Strict evaluation met references to variables that do not exist."""

    def __init__(self, names: list[str]) -> None:
        listed = ", ".join(names)
        super().__init__(
            f"unresolved variable reference(s): {listed}",
            hint="define these variables for this scope, or escape a literal as ##{Name}",
        )
        self.names = names


# ---- parse tree ---------------------------------------------------------------------------


@dataclass
class _Text:
    text: str


@dataclass
class _Ref:
    name: list[_Node]
    filters: list[str]
    raw: str


@dataclass
class _If:
    name: list[_Node]
    negate: bool
    operator: str | None
    literal: str
    then: list[_Node] = field(default_factory=list)
    otherwise: list[_Node] = field(default_factory=list)
    raw: str = ""


@dataclass
class _Each:
    item: str
    name: list[_Node]
    body: list[_Node] = field(default_factory=list)
    raw: str = ""


_Node = Union[_Text, _Ref, _If, _Each]

_IF = re.compile(r'(?P<kw>if|unless)\s+(?P<name>.+?)(?:\s*(?P<op>==|!=)\s*"(?P<lit>[^"]*)")?\s*\Z')
_EACH = re.compile(r"each\s+(?P<item>[A-Za-z_][\w.]*)\s+in\s+(?P<name>.+?)\s*\Z")


def _tokens(template: str) -> Iterable[tuple[str, str, int, int]]:
    """Yield ("text", text, start, end) and ("tag", inner, start, end) pieces."""
    position = 0
    text_start = 0
    while True:
        start = template.find("#{", position)
        if start < 0:
            break
        if start > 0 and template[start - 1] == "#":
            # "##{" is the escape for a literal "#{".
            if text_start < start - 1:
                yield "text", template[text_start : start - 1], text_start, start - 1
            text_start = start
            position = start + 2
            continue
        end = _closing_brace(template, start + 2)
        if end < 0:
            position = start + 2  # unterminated: literal text
            continue
        if text_start < start:
            yield "text", template[text_start:start], text_start, start
        yield "tag", template[start + 2 : end], start, end + 1
        position = text_start = end + 1
    if text_start < len(template):
        yield "text", template[text_start:], text_start, len(template)


def _closing_brace(template: str, position: int) -> int:
    depth = 1
    while position < len(template):
        if template.startswith("#{", position):
            depth += 1
            position += 2
            continue
        if template[position] == "}":
            depth -= 1
            if depth == 0:
                return position
        position += 1
    return -1


def parse(template: str) -> list[_Node]:
    """Parse ``template`` into nodes; raise ``TemplateSyntaxError`` for unbalanced blocks."""
    root: list[_Node] = []
    stack: list[tuple[_If | _Each, int, list[_Node]]] = []
    current = root
    for kind, text, start, end in _tokens(template):
        if kind == "text":
            current.append(_Text(text))
            continue
        inner = text.strip()
        word = inner.split(None, 1)[0] if inner else ""
        if word in ("if", "unless"):
            node: _If | _Each = _parse_if(inner)
        elif word == "each":
            each = _EACH.match(inner)
            if each is None:
                raise TemplateSyntaxError(
                    f"malformed each block: #{{{inner}}}", hint="write #{each item in ListName}"
                )
            node = _Each(each["item"], _parse_name(each["name"]))
        elif inner in ("else", "/if", "/unless", "/each"):
            current = _close_block(inner, stack, template, end, current)
            continue
        else:
            current.append(_parse_reference(inner, template[start:end]))
            continue
        current.append(node)
        stack.append((node, start, current))
        current = node.then if isinstance(node, _If) else node.body
    if stack:
        opened = stack[-1][0]
        kind = "each" if isinstance(opened, _Each) else "if"
        raise TemplateSyntaxError(
            f"#{{{kind}}} block is never closed", hint=f"add #{{/{kind}}} where the block ends"
        )
    return root


def _close_block(
    tag: str,
    stack: list[tuple[_If | _Each, int, list[_Node]]],
    template: str,
    end: int,
    current: list[_Node],
) -> list[_Node]:
    if not stack:
        raise TemplateSyntaxError(f"#{{{tag}}} without a matching opening block")
    node, start, parent = stack[-1]
    if tag == "else":
        if not isinstance(node, _If) or current is node.otherwise:
            raise TemplateSyntaxError("#{else} outside an #{if} block or used twice")
        return node.otherwise
    expected = "/each" if isinstance(node, _Each) else ("/unless" if node.negate else "/if")
    if tag != expected and not (tag == "/if" and expected == "/unless"):
        raise TemplateSyntaxError(f"#{{{tag}}} closes a block opened as #{{{expected[1:]}}}")
    node.raw = template[start:end]
    stack.pop()
    return parent


def _parse_if(inner: str) -> _If:
    match = _IF.match(inner)
    if match is None or re.search(r"[=!]=", match["name"]):
        raise TemplateSyntaxError(
            f"malformed condition: #{{{inner}}}",
            hint='write #{if Name}, or compare with a quoted literal: #{if Name == "text"}',
        )
    return _If(_parse_name(match["name"]), match["kw"] == "unless", match["op"], match["lit"] or "")


def _parse_name(text: str) -> list[_Node]:
    return parse(text.strip())


def _parse_reference(inner: str, raw: str) -> _Ref:
    pieces = _split_top_level(inner, "|")
    filters = [piece.strip() for piece in pieces[1:]]
    unknown = [f for f in filters if f.lower() not in FILTERS]
    if unknown:
        raise TemplateSyntaxError(
            f"unknown filter(s) {', '.join(unknown)} in {raw}",
            hint="known filters: " + ", ".join(sorted(FILTERS.values())),
        )
    return _Ref(_parse_name(pieces[0]), filters, raw)


def _split_top_level(text: str, separator: str) -> list[str]:
    pieces: list[str] = []
    depth = 0
    start = 0
    index = 0
    while index < len(text):
        if text.startswith("#{", index):
            depth += 1
            index += 2
            continue
        char = text[index]
        if char == "}" and depth:
            depth -= 1
        elif char == separator and not depth:
            pieces.append(text[start:index])
            start = index + 1
        index += 1
    pieces.append(text[start:])
    return pieces


# ---- evaluation ---------------------------------------------------------------------------


class _Evaluator:
    def __init__(self, variables: Mapping[str, str], strict: bool) -> None:
        self.values = {name.lower(): value for name, value in variables.items()}
        self.names = {name.lower(): name for name in variables}
        self.strict = strict
        self.unresolved: dict[str, None] = {}
        self.expanding: list[str] = []
        self.expanded: dict[str, str] = {}

    def render(self, nodes: list[_Node], scope: Mapping[str, str]) -> str:
        return "".join(self._render_node(node, scope) for node in nodes)

    def _render_node(self, node: _Node, scope: Mapping[str, str]) -> str:
        if isinstance(node, _Text):
            return node.text
        if isinstance(node, _Ref):
            name = self.render(node.name, scope).strip()
            value = self.lookup(name, scope)
            if value is None:
                return self._missing(name, node.raw)
            return apply_filters(value, node.filters)
        if isinstance(node, _If):
            value = self.lookup(self.render(node.name, scope).strip(), scope)
            if node.operator is None:
                holds = _truthy(value)
            else:
                holds = (value or "") == node.literal
                holds = holds if node.operator == "==" else not holds
            branch = node.then if holds != node.negate else node.otherwise
            return self.render(branch, scope)
        name = self.render(node.name, scope).strip()
        listed = self.lookup(name, scope)
        if listed is None:
            return self._missing(name, node.raw)
        items = [item.strip() for item in listed.split(",") if item.strip()]
        inner = {**scope}
        out = []
        for item in items:
            inner[node.item.lower()] = item
            out.append(self.render(node.body, inner))
        return "".join(out)

    def _missing(self, name: str, raw: str) -> str:
        if self.strict:
            self.unresolved.setdefault(name, None)
            return ""
        return raw

    def lookup(self, name: str, scope: Mapping[str, str]) -> str | None:
        key = name.lower()
        if key in scope:
            return scope[key]
        if key in self.expanded:
            return self.expanded[key]
        raw = self.values.get(key)
        if raw is None:
            return None
        if "#{" not in raw:
            return raw
        if key in self.expanding:
            chain = [*self.expanding[self.expanding.index(key) :], key]
            raise VariableLoopError([self.names[k] for k in chain])
        self.expanding.append(key)
        try:
            value = self.render(parse(raw), {})
        finally:
            self.expanding.pop()
        self.expanded[key] = value
        return value


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "false", "0")


def substitute(template: str, variables: Mapping[str, str], *, strict: bool = True) -> str:
    """Evaluate ``template`` against ``variables``; see the module docstring for the syntax."""
    if "#{" not in template:
        return template
    evaluator = _Evaluator(variables, strict)
    result = evaluator.render(parse(template), {})
    if evaluator.unresolved:
        raise UnresolvedVariablesError(list(evaluator.unresolved))
    return result


def evaluate_variables(variables: Mapping[str, str]) -> dict[str, str]:
    """Expand references inside every value, leniently: a value that cannot be evaluated
    (syntax error, loop) is kept as written, and unresolved references stay as written."""
    evaluator = _Evaluator(variables, strict=False)
    result: dict[str, str] = {}
    for name, value in variables.items():
        try:
            expanded = evaluator.lookup(name, {}) if "#{" in value else value
        except SubstitutionError:
            evaluator.expanding.clear()
            expanded = value
        result[name] = value if expanded is None else expanded
    return result


__all__ = [
    "FILTERS",
    "SubstitutionError",
    "TemplateSyntaxError",
    "UnresolvedVariablesError",
    "VariableLoopError",
    "evaluate_variables",
    "parse",
    "substitute",
]
