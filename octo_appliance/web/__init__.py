"""Serving HTTP: Hypercorn wiring (h1/h2 on TCP, HTTP/3 on UDP), its guards, the Starlette app."""
