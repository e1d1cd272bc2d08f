"""Target-side code of ``http-check``: shipped to agents in a bundle, run by the runner.

Standard library and ``octo_runner.plugin_api`` only: this package is all the target gets
(its parent ``octo_http_check`` arrives as an empty package)."""
