"""``octo-appliance install``: what a package would do to put the appliance on a VM."""
