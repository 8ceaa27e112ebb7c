"""Helpers shared by the test modules."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
import trio

from pytest_smtp_sink import SinkConfig, SinkServer
from pytest_smtp_sink.server import selector

# The drivers a server test runs on: the portable one everywhere, the selector one where the
# platform has a pollable selector. ``sink_driver`` (tests/conftest.py) sets ``DRIVER``.
DRIVERS = ["portable", *(["selector"] if selector.available() else [])]
DRIVER: str | None = None

# Platform facts, looked up: the simulated macOS/Windows env (tests/simulated_platform)
# takes them away on Linux and sets SMTP_SINK_SIMULATED_PLATFORM.
SIMULATED = bool(os.environ.get("SMTP_SINK_SIMULATED_PLATFORM"))
ON_LINUX = sys.platform.startswith("linux") and not SIMULATED
HAVE_UNIX_SOCKETS = hasattr(socket, "AF_UNIX")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_linux = pytest.mark.skipif(not ON_LINUX, reason="Linux only (/proc, Postfix binaries)")
needs_unix_sockets = pytest.mark.skipif(not HAVE_UNIX_SOCKETS, reason="no AF_UNIX here")


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
    """Run with TZ=name (dump dates are local time), restoring the old zone afterwards.

    Where the zone cannot be switched at run time (no ``time.tzset``: Windows), runs only if
    the local zone already is ``name``, and skips the test otherwise.
    """
    if not hasattr(time, "tzset"):
        if time.tzname[0] != name:
            pytest.skip(f"needs time.tzset to switch the local time zone to {name}")
        yield
        return
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


@asynccontextmanager
async def serving(
    cfg: SinkConfig | None = None,
    address: str = "127.0.0.1:0",
    *,
    check_errors: bool = False,
    **kwargs: Any,
) -> AsyncIterator[tuple[SinkServer, list[Any]]]:
    """A running server on the test's driver; shut down (cancelled) when the block ends.

    Afterwards every session must have been served by that driver (the selector driver
    hands sessions that must wait to the portable one), and with ``check_errors`` no
    session may have crashed.
    """
    log = kwargs.setdefault("log", Log())
    kwargs.setdefault("driver", DRIVER)
    server = SinkServer(cfg or SinkConfig(), address, **kwargs)
    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(server.run)
        yield server, addrs
        nursery.cancel_scope.cancel()
    check_served(server)
    if check_errors:
        assert log.errors() == [], log.errors()


def check_served(server: SinkServer) -> None:
    """Every session was served by the server's driver."""
    assert DRIVER is None or server.driver == DRIVER, (server.driver, DRIVER)
    if server.driver == "portable":
        assert set(server.served) <= {"portable"}, server.served
    elif server.driver == "selector":
        assert all(key in ("selector", "selector+portable") for key in server.served), (
            server.served
        )
