"""The portal's route table and what every page shares: rendering, errors, signing in first.

A view is an ``async`` function of the :class:`Portal` and the request. Database work runs in
the API's worker threads (``in_worker``), through the same handler and service functions the
API calls, so a page can never show or do more than the API would let the same person.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from octo_appliance.api import API_PREFIX
from octo_appliance.api.auth import SAFE_METHODS
from octo_appliance.api.context import RequestContext
from octo_appliance.api.errors import http_error
from octo_appliance.api.routing import in_worker
from octo_appliance.exceptions import ApiError
from octo_appliance.portal.assets import STATIC_PREFIX, Assets
from octo_appliance.portal.project_routes import PROJECT_NAVIGATION
from octo_appliance.portal.session import csrf_token, here, page_context, sign_in_redirect
from octo_appliance.portal.templating import Templates

if TYPE_CHECKING:
    from octo_appliance.appliance import Appliance

View = Callable[["Portal", Request], Awaitable[Response]]
#: the pages of the navigation bar: (path, label)
NAVIGATION = (
    ("/", "Dashboard"),
    # -- portal-proj: projects and library sets
    *PROJECT_NAVIGATION,
    # -- end portal-proj
    # -- portal-tasks: tasks, script console, packages
    ("/tasks", "Tasks"),
    ("/scripts", "Script console"),
    ("/packages", "Packages"),
    # -- end portal-tasks
    # portal-admin: environments, targets and administration
    ("/environments", "Environments"),
    ("/users", "Users"),
    ("/teams", "Teams"),
    ("/keys", "API keys"),
    ("/audit", "Audit"),
    ("/plugins", "Plugins"),
    # end portal-admin
    ("/about", "About"),
)


class Portal:
    """The portal of one appliance: its assets, templates and pages."""

    def __init__(self, appliance: Appliance) -> None:
        self.appliance = appliance
        self.assets = Assets()
        self.templates = Templates(self.assets)

    def routes(self) -> list[BaseRoute]:
        from octo_appliance.portal import about, dashboard, project_routes, signin
        from octo_appliance.portal.admin_routes import ADMIN_PAGES
        from octo_appliance.portal.task_routes import TASK_PAGES

        pages: list[tuple[str, View, list[str]]] = [
            ("/", dashboard.show, ["GET"]),
            ("/signin", signin.show, ["GET"]),
            ("/signin", signin.submit, ["POST"]),
            ("/signout", signin.leave, ["POST"]),
            ("/about", about.show, ["GET"]),
            # -- portal-proj: projects, process, variables, library sets, releases
            *project_routes.pages(),
            # -- end portal-proj
            *ADMIN_PAGES,
            *TASK_PAGES,  # portal-tasks: tasks, live dashboard, scripts, packages
        ]
        routes: list[BaseRoute] = [
            Route(path, self._page(view), methods=methods) for path, view, methods in pages
        ]
        return [*routes, self.assets.route()]

    def _page(self, view: View) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await view(self, request)
            except ApiError as exc:  # a refusal of the API's rules, shown as a page
                return await self.error_page(request, exc.status_code, exc.message, exc.hint)

        endpoint.__name__ = f"portal_{view.__module__.rsplit('.', 1)[-1]}_{view.__name__}"
        return endpoint

    async def signed_in(
        self, request: Request, form: dict[str, str] | None = None
    ) -> RequestContext | None:
        """The session's context (a ``form``'s CSRF token checked), or None: sign in first."""
        ctx: RequestContext | None = await in_worker(
            self.appliance, lambda: page_context(self.appliance, request, form)
        )
        return ctx

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Blocking (database) work, in the API's worker threads."""
        return await in_worker(self.appliance, fn)

    def sign_in_first(self, request: Request) -> Response:
        return sign_in_redirect(here(request))

    def render(
        self,
        request: Request,
        ctx: RequestContext | None,
        template: str,
        context: dict[str, Any],
        status_code: int = 200,
    ) -> Response:
        """A page of the layout: the navigation and sign-out form only for a signed-in user."""
        shared = {
            "user": ctx.user.username if ctx is not None and ctx.principal else None,
            "csrf_token": csrf_token(request),
            "navigation": NAVIGATION,
            "current": request.url.path,
        }
        return self.templates.render(template, {**shared, **context}, status_code)

    async def error_page(
        self, request: Request, status_code: int, message: str, hint: str | None = None
    ) -> Response:
        """A refusal or an unknown path, in the layout (with the navigation when signed in)."""
        ctx = await self.signed_in(request) if request.method in SAFE_METHODS else None
        context = {"status": status_code, "message": message, "hint": hint}
        return self.render(request, ctx, "error.html", context, status_code)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """Unknown paths: the API keeps its JSON errors, every other path gets a page."""
        assert isinstance(exc, HTTPException)
        path = request.url.path
        if path == API_PREFIX or path.startswith((API_PREFIX + "/", STATIC_PREFIX)):
            return await http_error(request, exc)
        message = {404: "There is no page at this address."}.get(exc.status_code, exc.detail)
        return await self.error_page(request, exc.status_code, message)
