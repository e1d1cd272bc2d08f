"""The dashboard with many projects: PAGE_SIZE rows a page, paging links, a name filter; each page
holds only its own projects' cells (what keeps it small and fast, bench/portal.py)."""

from __future__ import annotations

import re

from octo_appliance.db import Environment, Project
from octo_appliance.db.base import new_id
from octo_appliance.portal.dashboard import PAGE_SIZE
from tests.api.test_dashboard import deployment
from tests.portal.admin_support import field_error, signed_in


def test_the_dashboard_pages_and_finds_projects(octo_appliance_factory) -> None:  # type: ignore[no-untyped-def]
    octo = octo_appliance_factory()
    env = Environment.create_new(name="Dev")
    rows = [{"id": new_id("prj"), "name": f"p-{n:03d}"} for n in range(120)]
    Project.insert_many(rows).execute()
    deployment(rows[0]["id"], env.id, "1.0.0", "success", 5)
    later = PAGE_SIZE + 10  # the tenth project of the second page
    deployment(rows[later]["id"], env.id, "6.0.0", "failed", 5)
    client = signed_in(octo)
    first = client.get("/").text
    names = re.findall(r'<th scope="row">([^<]+)</th>', first)
    assert names == [f"p-{n:03d}" for n in range(PAGE_SIZE)]
    assert "1.0.0" in first and "6.0.0" not in first
    assert f"Projects 1 to {PAGE_SIZE} of 120" in first
    assert f'<a href="/?skip={PAGE_SIZE}" rel="next">' in first and 'rel="prev"' not in first
    second = client.get(f"/?skip={PAGE_SIZE}").text
    assert re.findall(r'<th scope="row">([^<]+)</th>', second)[10] == f"p-{later:03d}"
    assert "6.0.0" in second and "1.0.0" not in second
    following = f'<a href="/?skip={2 * PAGE_SIZE}" rel="next">'
    assert '<a href="/" rel="prev">' in second and following in second
    found = client.get("/?name=p-06").text
    assert re.findall(r'<th scope="row">([^<]+)</th>', found) == [f"p-06{n}" for n in range(10)]
    assert 'value="p-06"' in found and 'rel="next"' not in found
    none = client.get("/?name=zzz").text
    assert "No project's name contains “zzz”." in none
    bad = client.get("/?skip=-1&name=p-1")
    assert bad.status_code == 422
    assert 'value="p-1"' in bad.text
    assert field_error(bad.text, "dashboard-name") == "Input should be greater than or equal to 0"
