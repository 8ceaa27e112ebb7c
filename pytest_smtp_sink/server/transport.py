"""Transports: how a session's bytes reach the client.

The portable driver needs only ``Transport`` (``receive``, ``send_all``, ``close``), so a TLS
transport plugs in there. ``PlainTransport`` is a non-blocking socket driven with plain calls
(trio's socket wrappers add a trip through the scheduler to every call, which costs more than
the syscall); the selector driver uses its non-waiting calls directly.
"""

from __future__ import annotations

import socket as stdsocket
from collections.abc import Callable
from typing import Any, Protocol

# trio is imported by the waiting methods only: the command line serves its first clients
# from the selector thread while trio still loads.

RECV_SIZE = 65536  # one recv per readable socket
# Where the flag exists, a plain session's socket stays blocking while the selector driver
# serves it (each call says not to wait: no ioctl per connection); a portable task makes it
# non-blocking (``nonblocking``), as trio needs. Elsewhere every socket is non-blocking.
DONTWAIT: int = getattr(stdsocket, "MSG_DONTWAIT", 0)
_FAIR_READS = 16  # reads in a row that did not wait: then let other tasks run


class Transport(Protocol):
    """One client connection, as the portable driver uses it."""

    async def receive(self) -> bytes:
        """The next bytes from the client; ``b""`` at end of file or on a broken connection."""
        ...

    async def send_all(self, data: bytes, progressed: Callable[[], None]) -> bool:
        """Send everything, calling ``progressed()`` whenever a stalled write moves on;
        False when the client is gone."""
        ...

    def close(self) -> None:
        """Close the connection (once; later calls do nothing)."""
        ...


class _Fair(Protocol):
    _ready_reads: int


async def fair_turn(transport: _Fair) -> None:
    """Every so many reads that found data waiting, let the other tasks run (before the
    next read: a read never loses what it got to a deadline that passes meanwhile)."""
    transport._ready_reads += 1
    if transport._ready_reads >= _FAIR_READS:
        import trio

        transport._ready_reads = 0
        await trio.lowlevel.checkpoint()


def accept(listener: stdsocket.socket, family: int) -> tuple[stdsocket.socket, Any]:
    """``listener.accept()`` without its two look-ups of the listener's family and type per
    connection (enum conversions: a measurable share of a new connection's cost).
    ``family``: the listener's, as an int. The listener does not block: neither does this."""
    fd, peer = listener._accept()  # type: ignore[attr-defined]  # (_socket.socket's)
    return stdsocket.socket(family, stdsocket.SOCK_STREAM, 0, fileno=fd), peer


class PlainTransport:
    """A connected, non-blocking socket."""

    __slots__ = ("_ready_reads", "before_close", "fd", "sock")

    def __init__(self, sock: stdsocket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # kept: the selector driver forgets sessions by it after close
        self._ready_reads = 0
        self.before_close: Callable[[int], None] | None = None  # called with fd (selector)

    # -- without waiting (the selector driver)
    def nonblocking(self) -> None:
        """For the portable driver and TLS (trio's waits): the socket itself never blocks."""
        self.sock.setblocking(False)

    def recv_nowait(self) -> bytes | None:
        """Bytes that are there, ``b""`` at end of file or error, None when none are yet."""
        try:
            return self.sock.recv(RECV_SIZE, DONTWAIT)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def send_nowait(self, data: bytes | memoryview) -> int:
        """How many octets the kernel took (0 when its buffer is full); -1 when gone."""
        try:
            return self.sock.send(data, DONTWAIT)
        except BlockingIOError:
            return 0
        except OSError:
            return -1

    # -- waiting (the portable driver)
    async def receive(self) -> bytes:
        import trio

        await fair_turn(self)
        while True:
            data = self.recv_nowait()
            if data is None:
                self._ready_reads = 0
                await trio.lowlevel.wait_readable(self.sock)
                continue
            return data

    async def send_all(self, data: bytes, progressed: Callable[[], None]) -> bool:
        import trio

        view: bytes | memoryview = data
        while True:
            sent = self.send_nowait(view)
            if sent < 0:
                return False
            if sent >= len(view):
                return True
            view = memoryview(view)[sent:]
            await trio.lowlevel.wait_writable(self.sock)
            progressed()

    def close(self) -> None:
        before, self.before_close = self.before_close, None
        try:
            if before is not None:
                before(self.fd)
        finally:
            self.sock.close()
