"""The trio server: listeners, the -m limit, timeouts, delays and counters around SinkProtocol.

``SinkServer.run`` is meant for ``nursery.start``: it binds every listener, reports the bound
addresses through ``task_status`` and serves until cancelled (or until -M / -n ask it to stop).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import random
import socket as stdsocket
import stat
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..core.config import SinkConfig
from ..core.protocol import (
    ABORT_REPLY,
    Abort,
    Close,
    CommandLogged,
    Delay,
    LogLine,
    MessageEnd,
    MessageReceived,
    QuitReceived,
    ReadDelay,
    SinkProtocol,
    Tables,
)
from ..dump.transaction import Transaction
from ..dump.writer import DumpWriter
from .selector import RECV_SIZE, Reactor

_INT_MAX = 2**31 - 1  # listen() backlog and socket buffer sizes are C ints
_EPHEMERAL_RETRIES = 10  # ":0" on both families: another port when the v6 twin is taken

LogFunc = Callable[[str, str], None]  # (level: "info"|"warning"|"error", text)
TransactionHook = Callable[[Transaction], None]


class ListenError(OSError):
    """A listener could not be set up; ``str()`` is a one-line explanation."""


class _TryAnotherPort(Exception):
    """The ephemeral port of the first family is taken on the second one."""


def stderr_logger(prog: str = "smtp-sink") -> LogFunc:
    """Postfix-style diagnostics: ``prog: text`` or ``prog: warning: text``."""

    def log(level: str, text: str) -> None:
        prefix = f"{prog}: " if level == "info" else f"{prog}: {level}: "
        sys.stderr.write(prefix + text + "\n")
        sys.stderr.flush()

    return log


@dataclass
class Counters:
    sessions: int = 0
    quits: int = 0
    messages: int = 0

    def line(self) -> str:
        return f"sess={self.sessions} quit={self.quits} mesg={self.messages}\r"


@dataclass(frozen=True)
class Endpoint:
    """A parsed listen address."""

    kind: str  # "inet" or "unix"
    host: str  # inet: host or "" for any; unix: the path
    port: str  # inet: port or service name

    @classmethod
    def parse(cls, address: str) -> Endpoint:
        if address.startswith("unix:"):
            path = address[5:]
            if not path:
                raise ListenError(f"bad address: {address}")
            return cls("unix", path, "")
        rest = address[5:] if address.startswith("inet:") else address
        host, sep, port = rest.rpartition(":")
        if not sep:
            host, port = "", rest
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not port:
            raise ListenError(f"bad address: {address}: missing port")
        return cls("inet", host, port)


def _client_addr(family: int, peer: object) -> tuple[str, str]:
    """(dump form, verbose-log form) of the client address."""
    if family == stdsocket.AF_INET and isinstance(peer, tuple):
        return str(peer[0]), f"AF_INET {peer[0]}"
    if family == stdsocket.AF_INET6 and isinstance(peer, tuple):
        host = str(peer[0]).split("%", 1)[0]
        return f"ipv6:{host}", f"AF_INET6 {host}"
    return "local", "AF_LOCAL local"


class SinkServer:
    """An smtp-sink server: one or more listeners sharing a configuration and counters."""

    def __init__(
        self,
        config: SinkConfig,
        address: str = "127.0.0.1:0",
        backlog: int = 100,
        *,
        log: LogFunc | None = None,
        command_log: Callable[[str], None] | None = None,
        counters_out: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = Endpoint.parse(address)
        self.backlog = backlog
        self.log = log or stderr_logger()
        self.command_log = command_log
        self.counters_out = counters_out
        self.counters = Counters()
        self.rng = rng or random.Random()
        self.subscribers: list[TransactionHook] = []
        self.addresses: list[tuple[str, int] | str] = []
        self._listeners: list[trio.socket.SocketType] = []
        self._unix_inode: tuple[int, int] | None = None  # our socket file, to remove
        self._scope: trio.CancelScope | None = None
        self._sessions: set[SinkProtocol] = set()
        self.stopped_by: str | None = None
        # transcript(session_id, client, "C"|"S", bytes): conversation recording (plugin)
        self.transcript: Callable[[int, str, str, bytes], None] | None = None
        self._session_count = 0
        self._apply(config)

    # ------------------------------------------------------------------ config

    @property
    def config(self) -> SinkConfig:
        return self._config

    @config.setter
    def config(self, config: SinkConfig) -> None:
        self._apply(config)

    def _apply(self, config: SinkConfig) -> None:
        """Use ``config`` from now on, also for the next command of open connections."""
        self._config = config
        self._tables = Tables(config)
        self._writer = DumpWriter(config, self.rng) if config.dumping else None
        self._collect = config.dumping or bool(self.subscribers)
        for proto in self._sessions:
            proto.set_tables(self._tables, self._collect)

    def subscribe(self, hook: TransactionHook) -> None:
        """Call ``hook(tx)`` for every stored transaction, before the client's reply.

        A hook that raises is logged and the client gets ``451 4.3.0`` for that message.
        """
        self.subscribers.append(hook)
        self._apply(self._config)

    def unsubscribe(self, hook: TransactionHook) -> None:
        """Stop calling ``hook`` (no error when it was not subscribed)."""
        with contextlib.suppress(ValueError):
            self.subscribers.remove(hook)
        self._apply(self._config)

    @property
    def listeners(self) -> list[trio.socket.SocketType]:
        """The listening sockets while ``run()`` serves (closed afterwards)."""
        return list(self._listeners)

    # --------------------------------------------------------------- listeners

    async def open_listeners(self) -> list[trio.socket.SocketType]:
        ep = self.endpoint
        if ep.kind == "unix":
            return [await self._open_unix(ep.host)]
        return await self._open_inet(ep.host, ep.port)

    async def _open_unix(self, path: str) -> trio.socket.SocketType:
        sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        try:
            try:
                # Postfix removes whatever is there; we spare directories.
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    os.unlink(path)
            except FileNotFoundError:
                pass
            await sock.bind(path)
            os.chmod(path, 0o666)
            sock.listen(min(self.backlog, _INT_MAX))
            st = os.stat(path)
        except OSError as exc:
            sock.close()
            raise ListenError(f"bind {path}: {exc.strerror or exc}") from exc
        self._unix_inode = (st.st_dev, st.st_ino)
        self.addresses.append(path)
        return sock

    async def _open_inet(self, host: str, port: str) -> list[trio.socket.SocketType]:
        family = {"inet": stdsocket.AF_UNSPEC, "inet4": stdsocket.AF_INET,
                  "inet6": stdsocket.AF_INET6}[self._config.family]  # fmt: skip
        try:
            infos = await trio.socket.getaddrinfo(
                host or None, port, family, stdsocket.SOCK_STREAM, 0, stdsocket.AI_PASSIVE
            )
        except (stdsocket.gaierror, UnicodeError, OverflowError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ListenError(f"host/service {host}:{port} not found: {reason}") from exc
        # The first address of each enabled family (Postfix binds only the very first; we
        # bind IPv4 and IPv6 both, as the man page promises).
        chosen: dict[int, tuple[str, int]] = {}
        for info in infos:
            fam, sockaddr = int(info[0]), info[4]
            if fam in (stdsocket.AF_INET, stdsocket.AF_INET6) and fam not in chosen:
                chosen[fam] = (str(sockaddr[0]), int(sockaddr[1]))
        if not chosen:
            raise ListenError(f"host/service {host}:{port} has no usable address")
        for attempt in range(_EPHEMERAL_RETRIES):
            socks: list[trio.socket.SocketType] = []
            bound_port: int | None = None
            try:
                for fam, (addr, want_port) in chosen.items():
                    use_port = want_port
                    if bound_port is not None and want_port == 0:
                        use_port = bound_port  # the same ephemeral port for both families
                    try:
                        sock = await self._bind_inet(fam, addr, use_port)
                    except OSError as exc:
                        if len(chosen) > 1 and exc.errno in (
                            errno.EADDRNOTAVAIL,
                            errno.EAFNOSUPPORT,
                        ):
                            continue  # e.g. no IPv6 on this host: serve the other family alone
                        if (
                            exc.errno == errno.EADDRINUSE
                            and use_port != want_port
                            and attempt + 1 < _EPHEMERAL_RETRIES
                        ):
                            raise _TryAnotherPort from None
                        raise ListenError(
                            f"bind {addr} port {use_port}: {exc.strerror or exc}"
                        ) from exc
                    socks.append(sock)
                    bound_port = int(sock.getsockname()[1])
            except _TryAnotherPort:
                for s in socks:
                    s.close()
                continue
            except BaseException:
                for s in socks:
                    s.close()
                raise
            if not socks:
                raise ListenError(f"cannot bind {host}:{port}")
            for sock in socks:
                name = sock.getsockname()
                self.addresses.append((str(name[0]), int(name[1])))
            return socks
        raise ListenError(f"cannot bind {host}:{port}")  # pragma: no cover

    async def _bind_inet(self, fam: int, addr: str, port: int) -> trio.socket.SocketType:
        """A listening TCP socket; OSError (EADDRINUSE and the like) when it cannot be had."""
        sock = trio.socket.socket(fam, stdsocket.SOCK_STREAM)
        try:
            sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
            if fam == stdsocket.AF_INET6:
                sock.setsockopt(stdsocket.IPPROTO_IPV6, stdsocket.IPV6_V6ONLY, 1)
            window = self._config.tcp_window
            if window:
                for opt in (stdsocket.SO_SNDBUF, stdsocket.SO_RCVBUF):
                    sock.setsockopt(stdsocket.SOL_SOCKET, opt, min(window, _INT_MAX))
            if self._config.verbose:
                self.log("info", f"trying... [{addr}]:{port}")
            await sock.bind((addr, port))
            sock.listen(min(self.backlog, _INT_MAX))
        except BaseException:
            sock.close()
            raise
        return sock

    # ------------------------------------------------------------------ serving

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[list[tuple[str, int] | str]] = trio.TASK_STATUS_IGNORED,
        before_serving: Callable[[], None] | None = None,
    ) -> None:
        """Bind, report the addresses, then serve until cancelled or stopped.

        Returns normally after ``stop()`` (and after -M / -n); re-raises cancellation.
        """
        self.addresses = []
        self.stopped_by = None
        self._unix_inode = None
        listeners = await self.open_listeners()
        self._listeners = listeners
        try:
            if before_serving is not None:
                before_serving()
            with trio.CancelScope() as scope:
                self._scope = scope
                limit = trio.Semaphore(self._config.max_connections)
                async with trio.open_nursery() as nursery:
                    reactor = Reactor(self, limit, nursery)
                    nursery.start_soon(reactor.run)
                    for sock in listeners:
                        nursery.start_soon(self._accept_loop, sock, limit, nursery, reactor)
                    task_status.started(list(self.addresses))
        finally:
            self._scope = None
            for sock in listeners:
                sock.close()
            self._remove_unix_socket()

    def _remove_unix_socket(self) -> None:
        """Remove our socket file, unless somebody has replaced it meanwhile."""
        if self.endpoint.kind != "unix" or self._unix_inode is None:
            return
        path = self.endpoint.host
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == self._unix_inode:
                os.unlink(path)
        self._unix_inode = None

    def stop(self, reason: str = "stopped") -> None:
        """Stop serving (from inside the trio loop)."""
        if self._scope is not None:
            self.stopped_by = self.stopped_by or reason
            self._scope.cancel()

    async def _accept_loop(
        self,
        listener: trio.socket.SocketType,
        limit: trio.Semaphore,
        nursery: trio.Nursery,
        reactor: Reactor,
    ) -> None:
        # Accept on a plain non-blocking socket (a duplicate of the listener's descriptor):
        # the connections are driven with raw sockets too, see _drive.
        raw = stdsocket.socket(fileno=os.dup(listener.fileno()))
        raw.setblocking(False)
        try:
            accepted = 0
            while True:
                # Excess connections wait in the kernel's queue, as with Postfix's -m.
                # Accept a burst without a trip through the scheduler for each connection.
                try:
                    limit.acquire_nowait()
                except trio.WouldBlock:
                    await limit.acquire()
                accepted += 1
                if accepted >= 64:
                    accepted = 0
                    await trio.lowlevel.checkpoint()
                while True:
                    try:
                        conn, peer = raw.accept()
                        break
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(raw)
                    except OSError as exc:
                        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            self.log("warning", f"accept: {exc.strerror}")
                            await trio.sleep(0.1)  # out of descriptors: let sessions finish
                            continue
                        if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                            continue
                        limit.release()
                        raise
                conn.setblocking(False)
                cfg = self._config
                if cfg.needs_task:
                    nursery.start_soon(self._session, conn, peer, limit)
                else:
                    reactor.add(conn, peer)
        finally:
            raw.close()

    def _start_session(
        self, sock: stdsocket.socket, peer: object
    ) -> tuple[SinkProtocol, Callable[[str, bytes], None] | None]:
        """Greet a new connection: its protocol object and its transcript recorder."""
        family = sock.family
        if family != stdsocket.AF_UNIX:
            with contextlib.suppress(OSError):
                sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
        addr, log_addr = _client_addr(family, peer)
        if self._config.verbose:
            self.log("info", f"connect ({log_addr})")
        proto = SinkProtocol(self._tables, addr, collect=self._collect, rng=self.rng)
        self._sessions.add(proto)
        proto.start()
        record: Callable[[str, bytes], None] | None = None
        if self.transcript is not None:
            self._session_count += 1
            sid, hook = self._session_count, self.transcript
            record = lambda direction, data: hook(sid, addr, direction, data)  # noqa: E731
        return proto, record

    def _end_session(
        self,
        sock: stdsocket.socket,
        proto: SinkProtocol | None,
        limit: trio.Semaphore,
        counted: bool,
    ) -> None:
        if proto is not None:
            self._sessions.discard(proto)
        sock.close()
        limit.release()
        if counted:
            self._session_ended()

    async def _session(self, sock: stdsocket.socket, peer: object, limit: trio.Semaphore) -> None:
        """A session in a task of its own (configurations with delays)."""
        proto: SinkProtocol | None = None
        try:
            proto, record = self._start_session(sock, peer)
            await self._drive(sock, proto, record)
        except Exception as exc:
            self.session_crashed(exc)
        finally:
            # A session cut off by the server's own shutdown (cancel, -M, -n, signal) is not
            # counted: Postfix exits without reporting it either.
            self._end_session(
                sock, proto, limit, counted=trio.current_effective_deadline() != -math.inf
            )

    async def _continue_session(
        self,
        sock: stdsocket.socket,
        proto: SinkProtocol,
        record: Callable[[str, bytes], None] | None,
        limit: trio.Semaphore,
        pending: bytes,
        stop: bool,
        closing: bool,
    ) -> None:
        """A session handed over by the reactor: it must wait for something."""
        try:
            await self._drive(sock, proto, record, pending, stop, closing)
        except Exception as exc:
            self.session_crashed(exc)
        finally:
            self._end_session(
                sock, proto, limit, counted=trio.current_effective_deadline() != -math.inf
            )

    def session_crashed(self, exc: Exception) -> None:
        """A bug while serving a session: logged as an error (before the socket closes, so
        that the plugin fails the running test); the other sessions go on."""
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.log("error", f"session crashed: {type(exc).__name__}: {exc}\n{trace.rstrip()}")

    def _session_ended(self) -> None:
        c = self.counters
        c.sessions += 1
        if self._config.counters and self.counters_out is not None:
            self.counters_out(c.line())
        n = self._config.max_sessions
        if n is not None and c.quits >= n:
            self.stop("max_sessions")

    def _sync_events(self, proto: SinkProtocol) -> tuple[bool, bool, bool]:
        """Act on the protocol's events up to the first one that needs waiting.

        Returns (closing, stop after the flush (-M), must wait); a Delay, ReadDelay or Abort
        is left at the head of ``proto.events`` for an async driver.
        """
        closing = stop = False
        while proto.events:
            events = proto.events
            proto.events = []
            for i, ev in enumerate(events):
                kind = type(ev)
                if kind is MessageEnd:
                    stop |= self._message_ended()
                elif kind is MessageReceived:
                    assert isinstance(ev, MessageReceived)
                    proto.message_stored(self._store(ev))
                elif kind is QuitReceived:
                    self.counters.quits += 1
                elif kind is Close:
                    assert isinstance(ev, Close)
                    closing = True
                    if ev.warning:
                        self.log("warning", ev.warning)
                elif kind is LogLine:
                    assert isinstance(ev, LogLine)
                    self.log("info", ev.text)
                elif kind is CommandLogged:
                    assert isinstance(ev, CommandLogged)
                    if self.command_log is not None:
                        self.command_log(ev.text)
                else:  # Delay, ReadDelay, Abort
                    proto.events[:0] = events[i:]
                    return closing, stop, True
        return closing, stop, False

    async def _drive(
        self,
        sock: stdsocket.socket,
        proto: SinkProtocol,
        record: Callable[[str, bytes], None] | None = None,
        pending: bytes = b"",
        stop_after_flush: bool = False,
        closing: bool = False,
    ) -> None:
        """Feed the socket to the protocol and carry out what it asks.

        ``pending`` is output already recorded but not yet sent (a hand-over from the
        reactor), with the -M and close decisions that came with it.
        """
        read_delay = 0.0
        abort_after: float | None = None
        waiting = "write" if pending else "read"
        ready_reads = 0  # reads in a row that did not wait: yield now and then for fairness
        line_since: float | None = None  # when the pending partial command line began
        lines = proto.lines
        with trio.CancelScope() as scope:
            if pending:
                if not await _send_all(sock, pending, scope, self._config.timeout):
                    self.log("warning", "lost connection")
                    closing = True
                if stop_after_flush:
                    self.stop("max_messages")
                    stop_after_flush = False
            while True:
                # 1. act on events; pauses (Delay, MessageReceived) come last in a batch
                while proto.events:
                    closing_now, stop_now, must_wait = self._sync_events(proto)
                    closing |= closing_now
                    stop_after_flush |= stop_now
                    if not must_wait:
                        break
                    ev = proto.events.pop(0)
                    if isinstance(ev, Delay):
                        scope.deadline = math.inf  # -t limits only waiting for the client
                        await trio.sleep(ev.seconds)
                        proto.resume()
                    elif isinstance(ev, ReadDelay):
                        read_delay = ev.seconds
                    elif isinstance(ev, Abort):
                        abort_after = ev.seconds
                # 2. flush: every complete command of the last read is answered
                if proto.output:
                    data = proto.take_output()
                    if record is not None:
                        record("S", data)
                    waiting = "write"
                    try:
                        sent = sock.send(data)  # almost always complete: no coroutine needed
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        sent = -1
                    if sent != len(data) and (
                        sent < 0
                        or not await _send_all(sock, data[sent:], scope, self._config.timeout)
                    ):
                        self.log("warning", "lost connection")
                        break
                if stop_after_flush:
                    self.stop("max_messages")
                if closing:
                    if self._config.verbose:
                        self.log("info", "disconnect")
                    break
                if abort_after is not None:
                    scope.deadline = math.inf
                    await trio.sleep(abort_after)
                    if record is not None:
                        record("S", ABORT_REPLY)
                    await _send_all(sock, ABORT_REPLY, scope, self._config.timeout)
                    break
                if read_delay:
                    scope.deadline = math.inf
                    await trio.sleep(read_delay)
                    read_delay = 0.0
                # 3. read. Plain non-blocking calls: trio's socket wrappers add a trip
                # through the scheduler to every call, which costs more than the syscall.
                waiting = "read"
                while True:
                    try:
                        chunk = sock.recv(RECV_SIZE)
                    except BlockingIOError:
                        ready_reads = 0
                        timeout = self._config.timeout
                        deadline = trio.current_time() + timeout
                        if line_since is not None:  # -t also bounds one command line
                            deadline = min(deadline, line_since + timeout)
                        scope.deadline = deadline
                        await trio.lowlevel.wait_readable(sock)
                        continue
                    except OSError:
                        chunk = b""
                    break
                ready_reads += 1
                if ready_reads >= 16:
                    ready_reads = 0
                    scope.deadline = math.inf
                    await trio.lowlevel.checkpoint()
                if record is not None and chunk:
                    record("C", chunk)
                proto.receive(chunk)
                if proto.partial_command:
                    if line_since is None or proto.lines != lines:
                        line_since = trio.current_time()
                else:
                    line_since = None
                lines = proto.lines
        if scope.cancelled_caught:
            self.log("warning", f"{waiting} timeout")

    def _message_ended(self) -> bool:
        c = self.counters
        c.messages += 1
        if self._config.counters and self.counters_out is not None:
            self.counters_out(c.line())
        m = self._config.max_messages
        return m is not None and c.messages >= m

    def _store(self, ev: MessageReceived) -> bool:
        tx = ev.transaction
        if self._writer is not None:
            try:
                tx = self._writer.write(tx, ev.timestamp)
            except OSError as exc:
                self.log("error", f"cannot write dump for {tx.queue_id}: {exc}")
                return False
        for hook in self.subscribers:
            try:
                hook(tx)
            except Exception as exc:  # a broken hook must not take the server down
                self.log("error", f"transaction hook {hook!r} failed: {exc!r}")
                return False
        return True


async def _send_all(
    sock: stdsocket.socket, data: bytes, scope: trio.CancelScope, timeout: float
) -> bool:
    """Send everything (waiting at most ``timeout`` per stall); False when the peer is gone."""
    view: bytes | memoryview = data
    while True:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            scope.deadline = trio.current_time() + timeout
            await trio.lowlevel.wait_writable(sock)
            continue
        except OSError:
            return False
        if sent >= len(view):
            return True
        view = memoryview(view)[sent:]
