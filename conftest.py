"""Project-wide test configuration: pytester for the plugin tests run as users run pytest."""

pytest_plugins = ["pytester"]
