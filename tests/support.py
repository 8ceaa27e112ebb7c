"""Helpers shared by the test modules."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pytest_smtp_sink import SinkConfig


def ipv6_loopback_available() -> bool:
    """Whether this host can bind [::1] (containers often have no IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@contextmanager
def local_tz(name: str) -> Iterator[None]:
    """Run with TZ=name (dump dates are local time), restoring the old zone afterwards."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def config(**options: Any) -> SinkConfig:
    """A SinkConfig from marker-style options."""
    return SinkConfig().replace(**options)


class Log:
    """Collects a server's ``log(level, text)`` calls."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def __call__(self, level: str, text: str) -> None:
        self.records.append((level, text))

    def texts(self, level: str | None = None) -> list[str]:
        return [t for lv, t in self.records if level is None or lv == level]

    def errors(self) -> list[str]:
        return self.texts("error")
