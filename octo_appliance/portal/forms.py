"""What the portal's forms share: a signed-in post, and the API's refusals by form field.

A post is read (refused when cross-site) and its CSRF field checked before anything else. The
API names the field of each problem (``details[].field``, pydantic's location for a
schema mismatch); a form shows the message next to the field of the same name, and the
refusal's message on top when no field is named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request

from octo_appliance.api.routing import validation_details
from octo_appliance.exceptions import ApiError
from octo_appliance.portal.session import read_form

if TYPE_CHECKING:
    from octo_appliance.api.context import RequestContext
    from octo_appliance.portal.routes import Portal


async def posted(portal: Portal, request: Request) -> tuple[dict[str, str], RequestContext | None]:
    """The form and who posted it (None: no session, sign in first); a missing or wrong CSRF
    field is a 403, as in the API."""
    form = await read_form(portal.appliance, request)
    return form, await portal.signed_in(request, form)


def by_field(exc: ValidationError | ApiError) -> dict[str, str]:
    """``{field: message}`` (the first part of a dotted location: ``roles.0`` is ``roles``)."""
    details: list[dict[str, Any]]
    if isinstance(exc, ValidationError):
        details = validation_details(exc)
    else:
        details = [d for d in exc.details or [] if isinstance(d, dict)]
    errors: dict[str, str] = {}
    for detail in details:
        field = str(detail.get("field") or "").split(".")[0]
        if field:
            errors.setdefault(field, str(detail.get("message", "")))
    return errors


def problem(exc: ValidationError | ApiError) -> str:
    """The message shown above the form."""
    if isinstance(exc, ValidationError):
        return "Some fields need another value."
    return exc.message[:1].upper() + exc.message[1:] + (f" ({exc.hint})" if exc.hint else "")
