"""The errors of building a configuration (marker, ini, factory and command line alike)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad option value. ``str(err)`` is the Postfix-style message (no prefix)."""

    def __init__(self, message: str, *, option: str | None = None, usage: bool = False):
        super().__init__(message)
        self.option = option
        self.usage = usage  # Postfix follows this error with the usage text


class UsageError(ConfigError):
    """Postfix prints ``fatal: usage: ...`` for these."""
