"""Helpers shared by the test modules."""

from __future__ import annotations

import os
import random
import socket
import sys
import threading
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


# Ports for servers whose address must be fixed before they start (Postfix's smtp-sink, a
# command line): below the ephemeral range, where no client's connect() takes one meanwhile
# (a CI run lost a race to one), a slice of it per xdist worker, none handed out twice.
_PORTS_SIZE = 12000
_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def _port_slice() -> range:
    low = 32768  # Linux's default; macOS/Windows start at 49152
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    start = max(1024, low - _PORTS_SIZE)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = (low - start) // max(count, 1)
    return range(start + index * size, start + (index + 1) * size)


def _bindable(family: int, host: str, port: int) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, port))
    except OSError:
        return False
    return True


def free_port(family: int = socket.AF_INET, host: str = "127.0.0.1", count: int = 1) -> int:
    """The first of ``count`` consecutive free TCP ports, none handed out before."""
    ports = _port_slice()
    with _ports_lock:
        if len(ports) > 2 * count:
            for _ in range(200):
                first = random.randrange(ports.start, ports.stop - count)
                run = range(first, first + count)
                if not _handed_out.intersection(run) and all(
                    _bindable(family, host, p) for p in run
                ):
                    _handed_out.update(run)
                    return first
        for _ in range(100):  # no room below the ephemeral range: the kernel's choice
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                first = int(s.getsockname()[1])
            run = range(first, first + count)
            if not _handed_out.intersection(run) and all(
                _bindable(family, host, p) for p in run[1:]
            ):
                _handed_out.update(run)
                return first
    raise RuntimeError("no free port found")


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
