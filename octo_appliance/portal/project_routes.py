"""The routes of the project pages (projects, process, variables, library sets, releases),
kept in one table so ``routes.py`` only adds them: (path, view, methods)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from octo_appliance.portal.routes import View

#: the project pages' entries of the navigation bar
PROJECT_NAVIGATION = (("/projects", "Projects"), ("/library-sets", "Library sets"))


def pages() -> list[tuple[str, View, list[str]]]:
    from octo_appliance.portal import library_sets, process, projects, releases
    from octo_appliance.portal.variables import LIBRARY, PROJECT

    project = "/projects/{ref}"
    step = project + "/process/steps/{position:int}"
    library_set = "/library-sets/{ref}"
    return [
        ("/projects", projects.show_list, ["GET"]),
        ("/projects", projects.create, ["POST"]),
        (project, projects.overview, ["GET"]),
        (project + "/process", process.show, ["GET"]),
        (project + "/process/steps/new", process.new_step, ["GET"]),
        (project + "/process/steps", process.save_step, ["POST"]),
        (step, process.edit_step, ["GET"]),
        (step, process.save_step, ["POST"]),
        (step + "/{action}", process.act, ["POST"]),
        (project + "/variables", PROJECT.show, ["GET"]),
        (project + "/variables", PROJECT.save, ["POST"]),
        (project + "/variables/{variable}", PROJECT.edit, ["GET"]),
        (project + "/variables/{variable}", PROJECT.save, ["POST"]),
        (project + "/variables/{variable}/delete", PROJECT.delete, ["POST"]),
        (project + "/library-sets", PROJECT.include, ["POST"]),
        ("/library-sets", library_sets.show_list, ["GET"]),
        ("/library-sets", library_sets.create, ["POST"]),
        (library_set, LIBRARY.show, ["GET"]),
        (library_set + "/variables", LIBRARY.save, ["POST"]),
        (library_set + "/variables/{variable}", LIBRARY.edit, ["GET"]),
        (library_set + "/variables/{variable}", LIBRARY.save, ["POST"]),
        (library_set + "/variables/{variable}/delete", LIBRARY.delete, ["POST"]),
        (project + "/releases", releases.show_list, ["GET"]),
        (project + "/releases", releases.create, ["POST"]),
        (project + "/releases/new", releases.new, ["GET"]),
        (project + "/releases/{version}", releases.show, ["GET"]),
        (project + "/releases/{version}/deploy", releases.deploy, ["POST"]),
    ]
