"""Octo Appliance step type ``systemd-service`` (the plugin module is
:mod:`octo_systemd_service.plugin`; the code that runs on targets is the package
:mod:`octo_systemd_service.target`)."""

from __future__ import annotations

__version__ = "0.1.0"
