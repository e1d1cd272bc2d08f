"""Octo Appliance step type ``http-check`` (the plugin module is :mod:`octo_http_check.plugin`;
the code that runs on targets is the package :mod:`octo_http_check.target`)."""

from __future__ import annotations

__version__ = "0.1.0"
