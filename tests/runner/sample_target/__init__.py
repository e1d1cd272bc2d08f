"""A step plugin's target-side package for the tests: standard library and
``octo_runner.plugin_api`` only, like any bundle."""
