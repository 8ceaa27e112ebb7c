"""SinkServer: listeners, the -m limit, counters, -M/-n and observers around the sessions.

``SinkServer.run`` is meant for ``nursery.start``: it binds every listener, reports the bound
addresses through ``task_status`` and serves until cancelled (or until -M / -n ask it to stop).
Each accepted connection becomes a ``Session``, served by the selector driver (a thread of
the server's nursery that also accepts) where it can be and by the portable driver (a task
per session) otherwise. Sessions, counters and hooks are touched under ``lock`` by whichever
driver serves.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import os
import random
import socket as stdsocket
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.config import SinkConfig
from ..core.endpoint import Endpoint, ListenError
from ..core.envelope import Envelope
from ..core.errors import printable
from ..core.protocol import SinkProtocol
from ..core.replies import Tables
from ..dump.transaction import Transaction
from ..dump.writer import DumpStream, DumpWriter
from . import selector
from .listeners import Address, Listeners, unix_family
from .session import Recorder, Session
from .transport import DONTWAIT, PlainTransport, accept

if TYPE_CHECKING:
    import ssl

    import trio

# trio is imported when the server starts serving: the command line binds and serves its
# first clients from the selector thread while trio still loads (``start_early``).
PORTABLE = "portable"  # portable.NAME, without importing the module (it imports trio)

LogFunc = Callable[[str, str], None]  # (level: "info"|"warning"|"error", text)
TransactionHook = Callable[[Transaction], None]

DRIVERS = ("auto", PORTABLE, selector.NAME)
_ACCEPT_PAUSE = 0.1  # out of descriptors: let sessions finish before accepting again
_UNIX = unix_family()
_NODELAY_INHERITED = sys.platform.startswith("linux")  # from the listener (listeners.py)


def _errnos(*names: str) -> frozenset[int]:
    """The errno values of these names that exist here (Windows adds WSA ones)."""
    return frozenset(getattr(errno, n) for n in names if hasattr(errno, n))


# accept(): out of descriptors (wait for sessions to end) / the client gave up (go on)
_ACCEPT_EXHAUSTED = _errnos("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM", "WSAEMFILE", "WSAENOBUFS")
_ACCEPT_RETRY = _errnos(
    "ECONNABORTED", "ECONNRESET", "EPROTO", "EINTR", "WSAECONNABORTED", "WSAECONNRESET"
)


def stderr_logger(prog: str = "smtp-sink") -> LogFunc:
    """Postfix-style diagnostics: ``prog: text`` or ``prog: warning: text``."""

    def log(level: str, text: str) -> None:
        prefix = f"{prog}: " if level == "info" else f"{prog}: {level}: "
        # line by line: a logged traceback keeps its lines
        sys.stderr.write("\n".join(prefix + printable(line) for line in text.split("\n")) + "\n")
        sys.stderr.flush()

    return log


@dataclass
class Counters:
    sessions: int = 0
    quits: int = 0
    messages: int = 0

    def line(self) -> str:
        return f"sess={self.sessions} quit={self.quits} mesg={self.messages}\r"


def _client_addr(family: int, peer: object) -> tuple[str, str]:
    """(dump form, verbose-log form) of the client address."""
    if family == stdsocket.AF_INET and isinstance(peer, tuple):
        return str(peer[0]), f"AF_INET {peer[0]}"
    if family == stdsocket.AF_INET6 and isinstance(peer, tuple):
        host = str(peer[0]).split("%", 1)[0]
        return f"ipv6:{host}", f"AF_INET6 {host}"
    return "local", "AF_LOCAL local"


def _choose_driver(driver: str | None) -> str:
    name = driver or os.environ.get("SMTP_SINK_DRIVER") or "auto"
    if name not in DRIVERS:
        raise ValueError(f"unknown driver {name!r}: use one of {', '.join(DRIVERS)}")
    if name == selector.NAME and not selector.available():
        raise ValueError("the selector driver needs epoll, kqueue or /dev/poll")
    return name


class SinkServer:
    """An smtp-sink server: one or more listeners sharing a configuration and counters.

    ``ssl_context``: the server side of TLS (STARTTLS, implicit TLS); without it the config's
    ``tls_cert``/``tls_key`` are loaded. ``driver``: ``"auto"`` (the default, or env
    ``SMTP_SINK_DRIVER``) serves plain sessions
    from the selector driver where the platform has one; ``"portable"`` serves every session
    in a task of its own; ``"selector"`` starts every session in the selector driver (it
    hands over those that must wait). ``served`` counts the closed sessions by the drivers
    that served them (``"selector"``, ``"portable"``, ``"selector+portable"``).

    Hooks (``subscribe``, ``on_answered``, ``log``, ``counters_out``, ``transcript``) run in
    the thread that serves the session, the selector driver's or trio's, with ``lock``
    held. They must be thread-safe and quick, and must never wait for the trio loop (no
    ``trio.from_thread.run``/``run_sync``: that loop may be waiting for the lock); to tell
    trio something, use a ``TrioToken``'s ``run_sync_soon``, which does not wait.
    """

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
        driver: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = Endpoint.parse(address)
        # TLS: this context, else one made from the config's tls_cert / tls_key
        self.ssl_context = ssl_context
        self._file_contexts: dict[tuple[str, str | None], ssl.SSLContext] = {}
        self.backlog = backlog
        self.driver = _choose_driver(driver)
        self.log = log or stderr_logger()
        self.command_log = command_log
        self.counters_out = counters_out
        self.counters = Counters()
        self.rng = rng or random.Random(config.seed)
        self.subscribers: list[TransactionHook] = []
        self.answer_hooks: list[TransactionHook] = []
        self._unanswered: dict[int, Transaction] = {}  # by id() of the stored envelope
        self.addresses: list[Address] = []
        self.served: collections.Counter[str] = collections.Counter()
        self.stopped_by: str | None = None
        # transcript(session_id, client, "C"|"S", bytes): conversation recording (plugin)
        self.transcript: Callable[[int, str, str, bytes], None] | None = None
        self._listeners: Listeners | None = None
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._trio_thread = 0
        self._limit: trio.Semaphore | None = None  # -m, when trio tasks accept
        self._selector: selector.SelectorDriver | None = None
        # start_early: the listeners and the selector thread, serving before run() does
        self._early: tuple[Listeners, selector.SelectorDriver | None] | None = None
        self._early_handovers: list[Session] = []  # sessions for portable tasks, meanwhile
        self._early_stop: str | None = None  # -M/-n reached meanwhile
        # sessions, counters, hooks: shared by the selector thread and the trio tasks
        self.lock = threading.RLock()
        self._sessions: set[Session] = set()
        self._session_count = 0
        self._open = 0  # sessions not closed yet (-m, when the selector thread accepts)
        self._max_open = config.max_connections
        self._accept_pause = 0.0  # out of descriptors: accept again from then on
        self._apply(config)

    # ------------------------------------------------------------------ config

    @property
    def config(self) -> SinkConfig:
        return self._config

    @config.setter
    def config(self, config: SinkConfig) -> None:
        self._apply(config)

    def _apply(self, config: SinkConfig) -> None:
        """Use ``config`` from now on, also on open connections (from their next command
        outside a transaction)."""
        with self.lock:
            self._config = config
            self._needs_task = config.needs_task  # (asked per new connection)
            self._tables = Tables(config)
            self._writer = DumpWriter(config, self.rng) if config.dumping else None
            self._collect = (
                config.dumping or bool(self.subscribers) or bool(self.answer_hooks)
            )
            for session in self._sessions:
                session.proto.set_tables(self._tables, self._collect)
                session.config_changed()
            if self._selector is not None:
                self._selector.config_changed()

    def set_config_here(self, config: SinkConfig) -> bool:
        """Use ``config`` from now on, from any thread, when nothing needs trio's thread
        for it: no session waits in a portable task (its -t deadline is a trio cancel
        scope, moved only from trio's thread). False when something does: nothing is
        done, and ``config`` must be set from trio's thread."""
        with self.lock:
            if any(session.rearm is not None for session in self._sessions):
                return False
            self._apply(config)
            return True

    def reset_rule_counters(self) -> None:
        """Rules counted per sink start counting again (the plugin does it per test; from
        any thread)."""
        with self.lock:
            self._tables.counters.reset()

    def subscribe(self, hook: TransactionHook) -> None:
        """Call ``hook(tx)`` for every stored transaction, before the client's reply.

        A hook that raises is logged and the client gets ``451 4.3.0`` for that message.
        """
        with self.lock:
            self.subscribers.append(hook)
            self._apply(self._config)

    def unsubscribe(self, hook: TransactionHook) -> None:
        """Stop calling ``hook`` (no error when it was not subscribed)."""
        with self.lock, contextlib.suppress(ValueError):
            self.subscribers.remove(hook)
        with self.lock, contextlib.suppress(ValueError):
            self.answer_hooks.remove(hook)
        self._apply(self._config)

    def on_answered(self, hook: TransactionHook) -> None:
        """Call ``hook(tx)`` once a stored transaction got its reply to the end of data
        (``tx.reply``, ``tx.replies``, ``tx.accepted``), before that reply is sent."""
        with self.lock:
            self.answer_hooks.append(hook)
            self._apply(self._config)

    @property
    def listeners(self) -> list[stdsocket.socket]:
        """The listening sockets while ``run()`` serves (closed afterwards)."""
        return list(self._listeners.sockets) if self._listeners is not None else []

    # ------------------------------------------------------------------ serving

    @staticmethod
    def preload() -> None:
        """Import now what serving imports later (trio, the portable driver, TLS): before a
        chroot or a switch to another user, after which the files may be out of reach."""
        import trio  # noqa: F401

        from . import portable, tls  # noqa: F401

    def start_early(self, before_serving: Callable[[], None] | None = None) -> None:
        """Bind, call ``before_serving``, and start the selector thread now, before trio
        runs (the command line: the first client is greeted while trio still loads).
        ``run`` then takes over; ``close_early`` undoes it when ``run`` never comes."""
        self._check_tls()
        listeners = self._bind()
        try:
            if before_serving is not None:
                before_serving()
            driver = self._new_selector(listeners)
            self._early = (listeners, driver)
            if driver is not None:
                driver.start(selector.MonotonicClock())
        except BaseException:
            self._early = None
            self._selector = None
            listeners.close()
            raise

    def close_early(self) -> None:
        """Stop what ``start_early`` started, when ``run`` did not take it over."""
        early, self._early = self._early, None
        if early is None:
            return
        listeners, driver = early
        try:
            if driver is not None:
                driver.close()  # its thread closes its sessions
        finally:
            self._selector = None
            self._close_left()
            listeners.close()

    def _new_selector(self, listeners: Listeners) -> selector.SelectorDriver | None:
        """The selector driver for these listeners, where it serves (it then accepts)."""
        if self.driver == PORTABLE or not selector.available():
            return None
        self._selector = selector.SelectorDriver(self, listeners.sockets)
        return self._selector

    def _close_left(self) -> None:
        """Close the sessions no driver will finish (shutting down), freeing their -m slots."""
        with self.lock:
            for session in self._early_handovers + list(self._sessions):
                with contextlib.suppress(Exception):
                    session.close(counted=False)
            self._early_handovers.clear()

    def _check_tls(self) -> None:
        if self._config.tls:
            import ssl

            try:
                self.tls_context()
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise ListenError(str(exc)) from exc

    def _bind(self) -> Listeners:
        self.addresses = []
        self.stopped_by = None
        self._early_stop = None
        listeners = Listeners(self.endpoint, self.backlog)
        try:
            listeners.open(self._config, self.log)
        except BaseException:
            listeners.close()
            raise
        self._listeners = listeners
        self.addresses = list(listeners.addresses)
        self._max_open = self._config.max_connections
        self._accept_pause = 0.0
        return listeners

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[list[Address]] | None = None,
        before_serving: Callable[[], None] | None = None,
    ) -> None:
        """Bind, report the addresses, then serve until cancelled or stopped (after
        ``start_early``: serve what it bound; ``before_serving`` was called then).

        Returns normally after ``stop()`` (and after -M / -n); re-raises cancellation.
        """
        import trio

        if task_status is None:
            task_status = trio.TASK_STATUS_IGNORED
        early = self._early
        driver: selector.SelectorDriver | None = None
        if early is None:
            self._check_tls()
            listeners = self._bind()
        else:
            listeners, driver = early
        driver_runs = False
        try:
            if early is None and before_serving is not None:
                before_serving()
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    with self.lock:  # the selector thread may be serving already
                        self._scope = scope
                        self._nursery = nursery
                        self._token = trio.lowlevel.current_trio_token()
                        self._trio_thread = threading.get_ident()
                        if driver is not None:
                            self._switch_clock(driver, trio.lowlevel.current_clock())
                        self._early = None
                        for session in self._early_handovers:
                            self._start_portable(session)
                        self._early_handovers.clear()
                    if early is None:
                        # the selector thread accepts, and serves what needs no waiting
                        driver = self._new_selector(listeners)
                    if driver is not None:
                        nursery.start_soon(driver.run)
                        driver_runs = True
                    else:
                        self._limit = trio.Semaphore(self._max_open)
                        for sock in listeners.sockets:
                            nursery.start_soon(self._accept_loop, sock)
                    task_status.started(list(self.addresses))
                    if self._early_stop is not None:
                        self.stop(self._early_stop)  # -M / -n came before trio did
        finally:
            if driver is not None and not driver_runs:  # the take-over failed (a bug)
                with contextlib.suppress(Exception):
                    driver.close()
            self._early = None
            self._scope = self._nursery = self._selector = self._limit = None
            self._close_left()  # none is left but after a bug
            listeners.close()

    def _switch_clock(self, driver: selector.SelectorDriver, clock: selector.Clock) -> None:
        """Times taken before trio ran move to trio's clock (lock held)."""
        delta = driver.switch_clock(clock)
        for session in self._sessions:
            session.shift_clock(delta)
        if self._accept_pause:
            self._accept_pause += delta

    def stop(self, reason: str = "stopped") -> None:
        """Stop serving (from the trio loop or the selector thread)."""
        driver = self._selector
        scope = self._scope
        if scope is None:
            if self._early is not None:  # before trio runs: run() stops at once
                self._early_stop = self._early_stop or reason
                self.stopped_by = self.stopped_by or reason
                if driver is not None:
                    driver.stop()
            return
        self.stopped_by = self.stopped_by or reason
        if driver is not None:
            driver.stop()  # serves nothing more, also before trio cancels it
        if threading.get_ident() == self._trio_thread:
            scope.cancel()
        elif self._token is not None:
            import trio

            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(scope.cancel)

    # ------------------------------------------ the selector thread's host

    def sweep_interval(self) -> float:
        return min(1.0, max(0.01, self._config.timeout / 10))

    def has_room(self) -> bool:
        return self._open < self._max_open

    def accept_failed(self, exc: OSError, now: float) -> bool:
        if exc.errno in _ACCEPT_EXHAUSTED:
            self.log("warning", f"accept: {exc.strerror}")
            self._accept_pause = now + _ACCEPT_PAUSE
            return False
        if exc.errno in _ACCEPT_RETRY:
            return True
        raise exc

    def accept_paused_until(self) -> float:
        return self._accept_pause

    def open_session(self, conn: stdsocket.socket, peer: object, family: int) -> Session | None:
        try:
            return self._open_session(conn, peer, family)
        except Exception as exc:
            conn.close()
            self.session_crashed(exc)
            return None

    def wants_task(self, session: Session) -> bool:
        if self.driver == selector.NAME:
            return False  # every session starts in the selector driver (tests)
        return self._needs_task or session.implicit_tls

    def hand_over(self, session: Session) -> None:
        if self._early is not None:  # trio is not running yet (lock held): it starts them
            self._early_handovers.append(session)
            return
        if threading.get_ident() == self._trio_thread:
            self._start_portable(session)
            return
        import trio

        token = self._token
        try:
            if token is None:
                raise trio.RunFinishedError
            token.run_sync_soon(self._start_portable, session)
        except trio.RunFinishedError:
            session.close(counted=False)

    async def _accept_loop(self, listener: stdsocket.socket) -> None:
        import trio

        limit = self._limit
        assert limit is not None
        accepted = 0
        family = int(listener.family)
        while True:
            # Excess connections wait in the kernel's queue, as with Postfix's -m.
            # Accept a burst without a trip through the scheduler for each connection.
            try:
                limit.acquire_nowait()
            except trio.WouldBlock:
                await limit.acquire()
            accepted += 1
            if accepted >= selector.ACCEPT_BURST:  # then other tasks get a turn
                accepted = 0
                await trio.lowlevel.checkpoint()
            while True:
                try:
                    conn, peer = accept(listener, family)
                    break
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(listener)
                except OSError as exc:
                    if exc.errno in _ACCEPT_EXHAUSTED:
                        self.log("warning", f"accept: {exc.strerror}")
                        await trio.sleep(_ACCEPT_PAUSE)
                        continue
                    if exc.errno in _ACCEPT_RETRY:
                        continue
                    limit.release()
                    raise
            with self.lock:
                session = self.open_session(conn, peer, family)
            if session is None:
                limit.release()
            else:
                self._start_portable(session)

    def _open_session(self, conn: stdsocket.socket, peer: object, family: int) -> Session:
        if not DONTWAIT or conn.gettimeout() is not None:
            # (else only once a portable task serves it; a default timeout someone set,
            # socket.setdefaulttimeout, would make each call wait despite the flag)
            conn.setblocking(False)
        if family != _UNIX and not _NODELAY_INHERITED:
            with contextlib.suppress(OSError):
                conn.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
        addr, log_addr = _client_addr(family, peer)
        if self._config.verbose:
            self.log("info", f"connect ({log_addr})")
        proto = SinkProtocol(self._tables, addr, collect=self._collect, rng=self.rng)
        self._session_count += 1
        number = self._session_count
        record: Recorder | None = None
        if self.transcript is not None:
            hook = self.transcript
            record = lambda direction, data: hook(number, addr, direction, data)  # noqa: E731
        session = Session(
            self, PlainTransport(conn), proto, record, implicit_tls=self._config.implicit_tls
        )
        session.number = number
        self._sessions.add(session)
        self._open += 1
        return session

    def _start_portable(self, session: Session) -> None:
        """A task of the nursery serves ``session`` from now on (in the trio thread)."""
        from . import portable

        nursery = self._nursery
        try:
            if nursery is None:
                raise RuntimeError("the server has stopped")
            if isinstance(session.transport, PlainTransport):
                session.transport.nonblocking()
            nursery.start_soon(portable.serve, session, self.lock)
        except RuntimeError:  # shutting down: the nursery takes no new tasks
            with self.lock:
                session.close(counted=False)

    # ------------------------------------------------------- the sessions' host

    def command_logged(self, text: str) -> None:
        if self.command_log is not None:
            self.command_log(text)

    def open_stream(self, envelope: Envelope) -> DumpStream | None:
        """A -d dump the message is written to as it arrives, when nothing else needs it
        whole (no observers); None: it is kept until the end of data."""
        config = envelope.config or self._config
        writer = self._writer
        if (
            writer is None
            or config is not self._config
            or config.dump_template is None
            or self.subscribers
            or self.answer_hooks
        ):
            return None
        try:
            return writer.open_stream(Transaction.from_envelope(envelope), envelope.timestamp)
        except OSError:
            return None  # kept whole; the write at the end reports what fails

    def store(self, envelope: Envelope, stream: DumpStream | None = None) -> bool:
        if stream is not None:
            return self._finish_stream(envelope, stream)
        # Where and how: the configuration the transaction began with.
        config = envelope.config or self._config
        writer = self._writer if config is self._config else None
        if writer is None and config.dumping:
            writer = DumpWriter(config, self.rng)
        if not self.subscribers and not self.answer_hooks:
            if writer is None:
                return True  # collected for observers that have left since
            try:  # nobody observes: no Transaction is made
                writer.write_envelope(envelope)
            except OSError as exc:
                self.log("error", f"cannot write dump for {envelope.queue_id}: {exc}")
                return False
            return True
        tx = Transaction.from_envelope(envelope)
        if writer is not None:
            try:
                tx = writer.write(tx, envelope.timestamp)
            except OSError as exc:
                self.log("error", f"cannot write dump for {tx.queue_id}: {exc}")
                return False
        return self._observe(envelope, tx)

    def _finish_stream(self, envelope: Envelope, stream: DumpStream) -> bool:
        try:
            tx = stream.finish(envelope.data)
        except OSError as exc:
            self.log("error", f"cannot write dump for {stream.tx.queue_id}: {exc}")
            return False
        if not self.subscribers and not self.answer_hooks:
            return True
        try:  # observers that came during DATA: they get the whole message
            data = stream.data()
        except OSError as exc:
            self.log("error", f"cannot read back dump {stream.path}: {exc}")
            return False
        return self._observe(envelope, dataclasses.replace(tx, data=data))

    def _observe(self, envelope: Envelope, tx: Transaction) -> bool:
        """The observers see a stored transaction: False when one failed."""
        for hook in self.subscribers:
            try:
                hook(tx)
            except Exception as exc:  # a broken hook must not take the server down
                self.log("error", f"transaction hook {hook!r} failed: {exc!r}")
                return False
        if self.answer_hooks:
            self._unanswered[id(envelope)] = tx
        return True

    @property
    def sessions_opened(self) -> int:
        """How many connections were accepted so far (sessions are numbered from 1)."""
        return self._session_count

    def message_answered(self, session: int, envelope: Envelope, replies: tuple[str, ...]) -> None:
        tx = self._unanswered.pop(id(envelope), None)
        if tx is None:
            return
        tx = dataclasses.replace(
            tx, reply=replies[0] if replies else None, replies=replies, session=session
        )
        for hook in self.answer_hooks:
            try:
                hook(tx)
            except Exception as exc:
                self.log("error", f"transaction hook {hook!r} failed: {exc!r}")

    def awaits_reply(self, envelope: Envelope) -> bool:
        return id(envelope) in self._unanswered

    def message_ended(self) -> bool:
        c = self.counters
        c.messages += 1
        if self._config.counters and self.counters_out is not None:
            self.counters_out(c.line())
        m = self._config.max_messages
        return m is not None and c.messages >= m

    def quit_received(self) -> None:
        self.counters.quits += 1

    def session_closed(self, session: Session, counted: bool) -> None:
        self._sessions.discard(session)
        self._open -= 1
        self.served[session.drivers] += 1
        if self._limit is not None:
            self._limit.release()
        elif self._selector is not None:
            self._selector.room_freed()
        if not counted:
            return
        c = self.counters
        c.sessions += 1
        if self._config.counters and self.counters_out is not None:
            self.counters_out(c.line())
        n = self._config.max_sessions
        if n is not None and c.quits >= n:
            self.stop("max_sessions")

    def tls_context(self) -> ssl.SSLContext:
        """The server-side TLS context: ``ssl_context``, or the config's certificate."""
        if self.ssl_context is not None:
            return self.ssl_context
        cfg = self._config
        if cfg.tls_cert is None:
            raise ValueError(
                "TLS needs a certificate: tls_cert (--tls-cert FILE) or an ssl_context"
            )
        key = (cfg.tls_cert, cfg.tls_key)
        context = self._file_contexts.get(key)
        if context is None:
            from .tls import server_context

            context = self._file_contexts[key] = server_context(cfg.tls_cert, cfg.tls_key)
        return context

    def session_crashed(self, exc: Exception) -> None:
        """A bug while serving a session: logged as an error (before the socket closes, so
        that the plugin fails the running test); the other sessions go on."""
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.log("error", f"session crashed: {type(exc).__name__}: {exc}\n{trace.rstrip()}")
