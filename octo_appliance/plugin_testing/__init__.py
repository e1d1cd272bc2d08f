"""The plugin author's kit behind :mod:`octo_appliance.testing` (the pytest plugin): an
appliance with its background services running, a fake step context, and a real runner."""
