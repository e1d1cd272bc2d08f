"""How another process talks to a running appliance: HTTPS pinned to its thumbprint, and
the API key the command line was given."""
