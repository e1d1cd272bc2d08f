"""What the portal's forms share: a signed-in form post, its strings as the API's request
model, a write through the API, and the API's ``details[].field`` errors placed next to the
form's fields (errors naming no field of the form are shown above it: nothing is lost).

A write either succeeds (the caller redirects: POST-redirect-GET) or raises the API's own
refusal, which comes back as errors the view renders again with what was typed: the project
pages use :func:`attempt` (a :class:`Refused`), the admin pages :func:`save` and
:func:`submit` (errors by field, :data:`PROBLEM` above the form). The rules stay the API's:
nothing here decides what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import validation_details, write_in_worker
from octo_appliance.exceptions import ApiError, ValidationFailed
from octo_appliance.portal.session import read_form

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

M = TypeVar("M", bound=BaseModel)
#: the key of errors that name no field of the form: shown above it
PROBLEM = ""
#: how the API words a unique name already in use (``refs.require_unique_name`` and others)
TAKEN = "already exists"
#: refusals a form shows next to its fields; any other (403, 404) is a page of its own
FORM_REFUSALS = frozenset({400, 409, 422})


@dataclass(frozen=True)
class Again:
    """An admin page's form drawn again after a refusal: what was typed (None: the record's
    own values), errors by field, the refusal's status. ``Again()``: the page as first shown."""

    typed: dict[str, Any] | None = None
    errors: dict[str, str] = field(default_factory=dict)
    status_code: int = 200


@dataclass
class Refused:
    """A refused write: errors by form field, and what belongs to no field of this form."""

    status_code: int
    fields: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, name: str, message: str) -> None:
        self.fields.setdefault(name, message)


#: a project page's form drawn again: what was typed, and the API's refusal of it
Retry = tuple[dict[str, str], Refused]


def refused(
    exc: ApiError, place: Callable[[str], str | None], conflict: str | None = None
) -> Refused:
    """The API's refusal as form errors; ``place`` maps a ``details[].field`` to a form field
    (None: not a field of this form, shown above the form); a 409 (a name taken) goes next
    to the ``conflict`` field when given."""
    result = Refused(exc.status_code)
    if conflict is not None and exc.status_code == 409:
        result.add(conflict, exc.message.capitalize() + (f": {exc.hint}." if exc.hint else "."))
        return result
    details = exc.details if isinstance(exc.details, list) else []
    for detail in details:
        name = place(str(detail.get("field") or ""))
        if name is None:
            result.problems.append(f"{detail.get('field')}: {detail.get('message')}")
        else:
            result.add(name, str(detail.get("message")))
    if not result.fields and not result.problems:
        result.problems.append(exc.message + (f" ({exc.hint})" if exc.hint else ""))
    return result


def checked(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """``data`` as the API's request model; a mismatch is the API's own 422 with its details."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc)
        raise ValidationFailed(
            f"{len(details)} field(s) are not valid: {details[0]['message']}",
            details=details,
            hint="fix the fields marked",
        ) from None


async def attempt(
    ctx: RequestContext,
    write: Callable[[], Any],
    place: Callable[[str], str | None],
    conflict: str | None = None,
) -> tuple[Any, Refused | None]:
    """Run ``write`` in a write transaction; a refusal comes back as form errors, not raised.

    A 403 is raised on (a page, not a form): the user may not do this at all."""
    try:
        return await write_in_worker(ctx, write), None
    except ApiError as exc:
        if exc.status_code in (401, 403, 404):
            raise
        return None, refused(exc, place, conflict)


async def posted(portal: Portal, request: Request) -> tuple[RequestContext | None, dict[str, str]]:
    """The form and its signed-in context (CSRF field checked: a bad token is the API's 403)."""
    form = await read_form(portal.appliance, request)
    return await portal.signed_in(request, form), form


def render_form(
    portal: Portal,
    request: Request,
    ctx: RequestContext,
    template: str,
    data: dict[str, Any],
    typed: dict[str, str] | None = None,
    errors: Refused | None = None,
) -> Response:
    """A page with a form: what was typed, errors by field and the rest above the form; the
    refusal's status (422, 409, ...) or 200."""
    context = {
        **data,
        "typed": typed or {},
        "errors": errors.fields if errors else {},
        "problems": errors.problems if errors else [],
    }
    return portal.render(request, ctx, template, context, errors.status_code if errors else 200)


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def lines(text: str) -> list[str]:
    """A textarea or comma-separated field as a list: one item per line or comma, no blanks."""
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def checked_ids(form: dict[str, str], prefix: str, choices: Iterable[str]) -> list[str]:
    """The ids of the ticked ``prefix<id>`` checkboxes, in the order of ``choices``."""
    return [choice for choice in choices if form.get(prefix + choice)]


def whole_number(
    form: dict[str, str], name: str, errors: dict[str, str], label: str = "a whole number"
) -> int | None:
    """An optional integer field: empty is None; anything else not a number is an error."""
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        errors[name] = f"Enter {label}."
        return None


def by_field(exc: ValidationError | ApiError) -> dict[str, str]:
    """``{field: message}`` (the first part of a dotted location: ``roles.0`` is ``roles``)."""
    details: list[dict[str, Any]]
    if isinstance(exc, ValidationError):
        details = validation_details(exc)
    else:
        details = [d for d in exc.details or [] if isinstance(d, dict)]
    errors: dict[str, str] = {}
    for detail in details:
        name = str(detail.get("field") or "").split(".")[0]
        if name:
            errors.setdefault(name, str(detail.get("message", "")))
    return errors


def problem(exc: ValidationError | ApiError) -> str:
    """The message shown above the form."""
    if isinstance(exc, ValidationError):
        return "Some fields need another value."
    return exc.message[:1].upper() + exc.message[1:] + (f" ({exc.hint})" if exc.hint else "")


def number(value: str) -> int | str:
    """A number field: an int when it is one, else the text (the model then says what is
    wrong with it, as the API would for a JSON string)."""
    try:
        return int(value.strip())
    except ValueError:
        return value


def validate(model: type[M], values: dict[str, Any]) -> tuple[M | None, list[dict[str, Any]]]:
    """``values`` validated as ``model``: (the body, []) or (None, the API's error details)."""
    try:
        return model.model_validate(values), []
    except ValidationError as exc:
        return None, validation_details(exc)


def parse(model: type[M], values: dict[str, Any]) -> tuple[M | None, dict[str, str]]:
    """``values`` validated as ``model``: (the body, {}) or (None, errors by field name)."""
    body, details = validate(model, values)
    return body, field_errors(details)


def field_errors(details: Any, fields: tuple[str, ...] = ()) -> dict[str, str]:
    """``[{"field": "roles.0.role", "message": ...}]`` as ``{"roles": ...}``: the first part of
    the dotted path is the form's field; ``fields`` (when given) are the only ones it has."""
    errors: dict[str, str] = {}
    for detail in details if isinstance(details, list) else []:
        field = str(detail.get("field") or "").split(".", 1)[0]
        if fields and field not in fields:
            field = PROBLEM
        message = str(detail.get("message", "")).removeprefix("Value error, ")
        errors.setdefault(field, message[:1].upper() + message[1:])
    return errors


def refusal_errors(exc: ApiError, fields: tuple[str, ...], fallback: str = "") -> dict[str, str]:
    """An API refusal as errors by field: its details where they name a field; a taken name
    (the API's 409 "... already exists", which names no field) under ``fallback``; anything
    else above the form."""
    errors = field_errors(exc.details, fields)
    if not errors:
        message = exc.message[:1].upper() + exc.message[1:]
        hint = f" ({exc.hint})" if exc.hint else ""
        taken = fallback in fields and TAKEN in exc.message
        errors[fallback if taken else PROBLEM] = f"{message}{hint}."
    elif PROBLEM not in errors:
        errors[PROBLEM] = exc.message[:1].upper() + exc.message[1:] + "."
    return errors


def above_form(exc: ApiError) -> dict[str, str]:
    """A refusal of a form with no fields (a delete button): all of it above the form."""
    return refusal_errors(exc, ())


async def submit(
    ctx: RequestContext, write: Callable[[], Any], refusal: Callable[[ApiError], dict[str, str]]
) -> tuple[Any, dict[str, str]]:
    """Run ``write`` in a write transaction: (its result, {}) or, refused with a status a form
    shows (:data:`FORM_REFUSALS`), (None, ``refusal(exc)``: never empty). Other refusals are
    raised: a 403 or 404 is a page of its own."""
    try:
        return await write_in_worker(ctx, write), {}
    except ApiError as exc:
        if exc.status_code not in FORM_REFUSALS:
            raise
        return None, refusal(exc)


async def save(
    ctx: RequestContext,
    parsed: tuple[M | None, dict[str, str]],
    write: Callable[[M], Any],
    refusal: Callable[[ApiError], dict[str, str]],
) -> tuple[Any, dict[str, str]]:
    r""":func:`submit` of a :func:`parse`\ d body: the parse's errors when it did not parse."""
    body, errors = parsed
    if body is None:
        return None, errors
    return await submit(ctx, lambda: write(body), refusal)
