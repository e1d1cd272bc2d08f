"""The web portal at ``/``: server-rendered pages over the API's own rules (docs/portal.md)."""
