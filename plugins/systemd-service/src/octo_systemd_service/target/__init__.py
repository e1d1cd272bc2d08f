"""Target-side code of ``systemd-service``: shipped to agents in a bundle, run by the runner.

Standard library and ``octo_runner.plugin_api`` only: this package is all the target gets
(its parent ``octo_systemd_service`` arrives as an empty package)."""
