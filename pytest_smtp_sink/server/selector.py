"""The fast path: one trio task serving every plain session from a private epoll set.

A task per connection costs a trip through trio's scheduler and an epoll_ctl for every wait;
for a sink whose whole job is to answer quickly that was most of the CPU time. The reactor
keeps the connections registered (level-triggered) in its own epoll object, waits for that
object with ``trio.lowlevel.wait_readable`` and serves every ready connection synchronously:
recv, feed the protocol, send the replies. Whatever needs waiting (a -W/-H/-A delay, a send
that would block) moves the session to a task of its own (``SinkServer._session``), which
carries on from the same protocol state. Timeouts (-t) are swept a few times a second: a
session is closed after ``-t`` seconds without input, or ``-t`` seconds after the first
byte of a command line that is still unfinished.
"""

from __future__ import annotations

import select
import socket as stdsocket
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..core.protocol import SinkProtocol

if TYPE_CHECKING:
    from .server import SinkServer

RECV_SIZE = 65536  # one recv per readable socket; also the session tasks' read size


class _Conn:
    __slots__ = ("last", "line_since", "lines", "proto", "record", "sock")

    def __init__(
        self,
        sock: stdsocket.socket,
        proto: SinkProtocol,
        record: Callable[[str, bytes], None] | None,
        now: float,
    ) -> None:
        self.sock = sock
        self.proto = proto
        self.record = record
        self.last = now
        self.line_since: float | None = None  # when the pending partial command line began
        self.lines = 0


class Reactor:
    """Serves sessions whose configuration needs no waiting, all in one task."""

    def __init__(self, server: SinkServer, limit: trio.Semaphore, nursery: trio.Nursery) -> None:
        self.server = server
        self.limit = limit
        self.nursery = nursery
        self.epoll = select.epoll()
        self.conns: dict[int, _Conn] = {}

    def add(self, sock: stdsocket.socket, peer: object) -> None:
        """Start a session on an accepted (non-blocking) socket: greet and register it."""
        proto, record = self.server._start_session(sock, peer)
        conn = _Conn(sock, proto, record, trio.current_time())
        fd = sock.fileno()
        self.conns[fd] = conn
        self.epoll.register(fd, select.EPOLLIN)
        try:
            self._pump(conn)
        except Exception as exc:
            self._crashed(conn, exc)

    async def run(self) -> None:
        try:
            next_sweep = 0.0
            while True:
                timeout = self.server.config.timeout
                sweep_every = min(1.0, max(0.01, timeout / 10))
                with trio.move_on_after(sweep_every):
                    await trio.lowlevel.wait_readable(self.epoll)
                now = trio.current_time()
                conns = self.conns
                for fd, _mask in self.epoll.poll(0):
                    conn = conns.get(fd)
                    if conn is not None:
                        self._readable(conn, now)
                if now >= next_sweep:
                    next_sweep = now + sweep_every
                    self._sweep(now, timeout)
        finally:
            for conn in list(self.conns.values()):
                self._forget(conn)
                self.server._end_session(conn.sock, conn.proto, self.limit, counted=False)
            self.epoll.close()

    # ------------------------------------------------------------------ sessions

    def _readable(self, conn: _Conn, now: float) -> None:
        try:
            chunk = conn.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        conn.last = now
        try:
            if conn.record is not None and chunk:
                conn.record("C", chunk)
            proto = conn.proto
            proto.receive(chunk)
            if proto.partial_command:
                if conn.line_since is None or proto.lines != conn.lines:
                    conn.line_since = now
            else:
                conn.line_since = None
            conn.lines = proto.lines
            self._pump(conn)
        except Exception as exc:
            self._crashed(conn, exc)

    def _crashed(self, conn: _Conn, exc: Exception) -> None:
        """A bug while serving one session: report it, close that session, serve the rest."""
        self.server.session_crashed(exc)
        if conn.sock.fileno() in self.conns:
            self._close(conn)

    def _pump(self, conn: _Conn) -> None:
        """Act on the protocol's events and send its replies; hand over what must wait."""
        proto = conn.proto
        server = self.server
        closing = stop = False
        if proto.events:
            closing, stop, must_wait = server._sync_events(proto)
            if must_wait:
                self._hand_over(conn, b"", stop)
                return
        if proto.output:
            data = proto.take_output()
            if conn.record is not None:
                conn.record("S", data)
            try:
                sent = conn.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                server.log("warning", "lost connection")
                self._close(conn)
                return
            if sent < len(data):
                self._hand_over(conn, data[sent:], stop, closing)
                return
        if stop:
            server.stop("max_messages")
        if closing:
            if server.config.verbose:
                server.log("info", "disconnect")
            self._close(conn)

    def _sweep(self, now: float, timeout: float) -> None:
        expired = [
            c
            for c in self.conns.values()
            if now - c.last >= timeout
            or (c.line_since is not None and now - c.line_since >= timeout)
        ]
        for conn in expired:
            self.server.log("warning", "read timeout")
            self._close(conn)

    def _forget(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if self.conns.pop(fd, None) is not None:
            self.epoll.unregister(fd)

    def _close(self, conn: _Conn) -> None:
        self._forget(conn)
        self.server._end_session(conn.sock, conn.proto, self.limit, counted=True)

    def _hand_over(self, conn: _Conn, pending: bytes, stop: bool, closing: bool = False) -> None:
        """Continue this session in a task of its own (delays, a full send buffer)."""
        self._forget(conn)
        self.nursery.start_soon(
            self.server._continue_session,
            conn.sock,
            conn.proto,
            conn.record,
            self.limit,
            pending,
            stop,
            closing,
        )
