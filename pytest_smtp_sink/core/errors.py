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


def printable(text: str) -> str:
    """A diagnostic as Postfix prints one: every octet that is not printable ASCII (tabs
    and 8-bit octets included) becomes ``?``. Non-ASCII characters count by their octets as
    they were typed (UTF-8, or the raw octets of a command-line argument)."""
    if text.isascii() and text.isprintable():
        return text
    data = text.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if 0x20 <= b < 0x7F else "?" for b in data)
