"""Finding third-party plugins (entry points, wheels, package folders) and the operator's
on/off switches for them; :mod:`octo_appliance.plugins` registers what this package finds."""
