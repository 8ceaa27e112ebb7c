"""SinkServer.start_early: the command line binds and serves from the selector thread
before trio is imported; ``run`` takes the same listeners, thread and sessions over."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio
from support import Log, config

from pytest_smtp_sink.server import selector
from pytest_smtp_sink.server.server import SinkServer

LIMIT = 10.0
MESSAGE = b"HELO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
BODY = b"Subject: hi\r\n\r\nbody\r\n.\r\n"
needs_selector = pytest.mark.skipif(
    not selector.available(), reason="no selector driver on this platform"
)


def _inet_addr(addr: Any) -> tuple[str, int]:
    host, port = addr
    return str(host), int(port)


def _inet(server: SinkServer) -> tuple[str, int]:
    return _inet_addr(server.addresses[0])


def _early_client(addr: Any) -> socket.socket:
    client = socket.create_connection(_inet_addr(addr), timeout=LIMIT)
    assert client.recv(100) == b"220 smtp-sink ESMTP\r\n"  # greeted with no trio running
    return client


def _serve_then(server: SinkServer, check: Callable[[], Any]) -> None:
    """trio takes the early server over; ``check`` runs in a thread meanwhile."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            await trio.to_thread.run_sync(check)
            nursery.cancel_scope.cancel()

    trio.run(main)


@needs_selector
def test_start_early_serves_before_trio_runs_and_run_takes_over() -> None:
    server = SinkServer(config(), log=Log(), driver="selector")
    server.start_early()
    try:
        client = _early_client(server.addresses[0])
        client.sendall(b"HELO x\r\nMAIL FROM:<a@example.com>\r\n")
        assert client.recv(100) == b"250 smtp-sink\r\n250 2.1.0 Ok\r\n"

        def rest() -> None:  # the same session goes on, served by the running server
            client.sendall(b"RCPT TO:<b@example.com>\r\nDATA\r\n")
            assert client.recv(100) == b"250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
            client.sendall(BODY + b"QUIT\r\n")
            assert client.recv(100) == b"250 2.0.0 Ok\r\n221 Bye\r\n"

        _serve_then(server, rest)
    finally:
        server.close_early()
    assert (server.counters.messages, server.counters.quits) == (1, 1)


def _greeted_once_trio_runs(server: SinkServer) -> None:
    """A client that connects after ``start_early`` is greeted once ``run`` serves."""
    server.start_early()
    try:
        client = socket.create_connection(_inet(server), timeout=LIMIT)

        def greeted() -> None:
            assert client.recv(100) == b"220 smtp-sink ESMTP\r\n"

        _serve_then(server, greeted)
    finally:
        server.close_early()


@needs_selector
def test_start_early_sessions_that_wait_start_with_trio() -> None:
    """A session for a portable task, accepted before trio runs, is served once it does."""
    _greeted_once_trio_runs(
        SinkServer(config(delays={"CONNECT": 0.01}), log=Log(), driver="auto")
    )


@needs_selector
def test_start_early_stop_before_trio_runs() -> None:
    """-M reached before trio runs: run() stops at once, saying why."""
    server = SinkServer(config(max_messages=1), log=Log(), driver="selector")
    server.start_early()
    try:
        client = _early_client(server.addresses[0])
        client.sendall(MESSAGE + BODY)
        assert client.recv(1000).endswith(b"250 2.0.0 Ok\r\n")

        async def main() -> None:
            with trio.fail_after(LIMIT):
                await server.run()

        trio.run(main)
    finally:
        server.close_early()
    assert server.stopped_by == "max_messages"


@needs_selector
def test_start_early_timeout_survives_the_switch_to_trio_clock() -> None:
    """-t of a session that began before trio ran still counts from its last command."""
    import time

    server = SinkServer(config(timeout=1), log=Log(), driver="selector")
    server.start_early()
    try:
        client = _early_client(server.addresses[0])
        began = time.monotonic()

        def idle() -> None:
            assert client.recv(100) == b""  # closed by -t
            assert time.monotonic() - began >= 0.9

        _serve_then(server, idle)
    finally:
        server.close_early()


@pytest.mark.parametrize("driver", ["portable", "selector"])
def test_portable_start_early_binds_and_run_serves(driver: str) -> None:
    if driver == "selector" and not selector.available():
        pytest.skip("no selector driver on this platform")
    _greeted_once_trio_runs(SinkServer(config(), log=Log(), driver=driver))


def test_close_early_without_run() -> None:
    """A start that trio never takes over (Ctrl-C while it loads) is undone: the port is
    free again, the greeted client is disconnected."""
    server = SinkServer(config(), log=Log())
    server.start_early()
    addr = _inet(server)
    client = socket.create_connection(addr, timeout=LIMIT)
    greeted = selector.available()  # (without the selector thread nothing serves yet)
    if greeted:
        assert client.recv(100).startswith(b"220 ")
    server.close_early()
    server.close_early()  # once or twice: the same
    if greeted:
        assert client.recv(100) == b""
    client.close()
    with pytest.raises(ConnectionRefusedError):  # the listener is closed
        socket.create_connection(addr, timeout=LIMIT).close()
