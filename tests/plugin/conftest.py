"""The example package's own tests run against the package as installed, from tests/test_plugin.py: not here, where
it is not installed."""
collect_ignore = ["automator-example"]
