"""`python -m octo_appliance` is the same as the `octo-appliance` command."""

from __future__ import annotations

from octo_appliance.cli import main

raise SystemExit(main())
