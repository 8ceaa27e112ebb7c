"""The selector driver: one thread accepting and serving every plain session.

Trio's per-wait machinery (a trip through the scheduler, re-arming the descriptor, a cancel
scope for the -t deadline) costs more than answering an SMTP command. This driver runs a
plain blocking poll loop in a thread of its own, started and joined by a task of the server's
nursery: it accepts on the listeners and serves every ready session synchronously (recv,
protocol, send) with no trio call in between. Cancelling the task stops the thread (a byte
on a wake-up socket) and waits for it, so the server still shuts down as a nursery does.
The command line starts the thread before trio is even imported (``start``), so that the
first client is greeted at once; the task then takes it over (``run``).

Sessions that must wait (a -W/-H/-A delay, a send that would block, TLS) are handed to the
portable driver's tasks, which carry on from the same Session. Server and session state is
shared with those tasks under the server's lock, which this thread holds while it serves
a batch of ready descriptors (never while it waits). -t deadlines are swept a few times a
second. Where no poller has a waitable descriptor (Windows) ``available()`` is False and
the server uses the portable driver alone.
"""

from __future__ import annotations

import contextlib
import select
import selectors
import socket as stdsocket
import threading
import time
from collections.abc import Callable
from typing import Protocol

from .session import DONE, READ, SEND, Session
from .transport import DONTWAIT, RECV_SIZE, PlainTransport, accept

NAME = "selector"
ACCEPT_BURST = 64  # connections accepted in a row before serving the rest


class Clock(Protocol):
    def current_time(self) -> float: ...


class MonotonicClock:
    """The clock before trio runs (``start``); trio's own replaces it (``switch_clock``)."""

    def current_time(self) -> float:
        return time.perf_counter()


def available() -> bool:
    """A poller the loop can block in: epoll, kqueue or /dev/poll."""
    return hasattr(selectors.DefaultSelector, "fileno")


class DriverHost(Protocol):
    """What the driver needs from its server (called with ``lock`` held, but for the
    read of ``accept_paused_until`` before a wait)."""

    lock: threading.RLock

    def has_room(self) -> bool:
        """Below the -m limit."""
        ...

    def accept_failed(self, exc: OSError, now: float) -> bool:
        """accept() failed: True to try again at once; False to pause (out of descriptors,
        see ``accept_paused_until``); raises what is a bug."""
        ...

    def accept_paused_until(self) -> float:
        """When accepting may go on after a failure (0: not paused)."""
        ...

    def open_session(self, conn: stdsocket.socket, peer: object, family: int) -> Session | None:
        """A session for a new connection (from a listener of ``family``); None when that
        failed (reported, closed)."""
        ...

    def wants_task(self, session: Session) -> bool:
        """A new session the portable driver serves from the start (TLS, delays)."""
        ...

    def hand_over(self, session: Session) -> None:
        """Carry on with ``session`` in a portable task (from any thread)."""
        ...

    def sweep_interval(self) -> float: ...


class _Poller:
    """Level-triggered readability of descriptors: epoll directly where there is one
    (no per-event objects), else the selectors module."""

    def __init__(self) -> None:
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._selector = selectors.DefaultSelector() if self._epoll is None else None
        # Ready descriptors and their masks, waiting at most ``timeout`` seconds (None: no
        # limit): epoll's own method where there is one (no call in between per wait).
        self.poll: Callable[[float | None], list[tuple[int, int]]] = (
            self._epoll.poll if self._epoll is not None else self._select
        )

    def add(self, fd: int) -> None:
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)
        else:
            assert self._selector is not None
            self._selector.register(fd, selectors.EVENT_READ)

    def remove(self, fd: int) -> None:
        with contextlib.suppress(OSError, KeyError, ValueError):
            if self._epoll is not None:
                self._epoll.unregister(fd)
            else:
                assert self._selector is not None
                self._selector.unregister(fd)

    def _select(self, timeout: float | None) -> list[tuple[int, int]]:
        assert self._selector is not None
        return [(key.fd, mask) for key, mask in self._selector.select(timeout)]

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        elif self._selector is not None:
            self._selector.close()


class SelectorDriver:
    """Serves plain sessions that need no waiting, all in one thread."""

    def __init__(self, host: DriverHost, listeners: list[stdsocket.socket]) -> None:
        self._host = host
        self._lock = host.lock
        self._poller = _Poller()
        self._sessions: dict[int, Session] = {}  # by descriptor
        self._listeners = {sock.fileno(): sock for sock in listeners}
        self._accepting = False
        self._wake_r, self._wake_w = stdsocket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = False
        self._thread = 0  # its ident, once it runs
        # (set by start: the clock the thread begins with; trio's once it runs: session
        # times are in it)
        self._clock: Clock = MonotonicClock()
        self._next_sweep = 0.0
        self._runner: threading.Thread | None = None
        self._failure: list[BaseException] = []  # a bug in the thread, for run() to raise
        self._exited = threading.Event()
        self._on_exit: list[Callable[[], None]] = []  # called once the thread ends

    # --------------------------------------------------------- the trio side

    def start(self, clock: Clock) -> None:
        """Start the thread, times on ``clock`` (``run`` starts it when this did not)."""
        self._clock = clock
        self._runner = threading.Thread(target=self._main, name="smtp-sink selector", daemon=True)
        self._runner.start()

    def _main(self) -> None:
        self._thread = threading.get_ident()
        try:
            self._serve()
        except BaseException as exc:  # a bug: re-raised in the server's nursery
            self._failure.append(exc)
        finally:
            self._exited.set()
            for callback in list(self._on_exit):
                callback()

    def switch_clock(self, clock: Clock) -> float:
        """Measure time on ``clock`` from now on (lock held); returns what to add to the
        times taken on the old one."""
        delta = clock.current_time() - self._clock.current_time()
        self._clock = clock
        self._next_sweep += delta
        self.wake()  # its wait was computed on the old clock
        return delta

    async def run(self) -> None:
        """Serve until cancelled (or ``stop``); the thread has ended when this returns."""
        import trio

        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def ended() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        self._on_exit.append(ended)
        if self._runner is None:
            # Read from the thread too: SystemClock and MockClock compute the time, they
            # keep no state a read changes.
            self.start(trio.lowlevel.current_clock())
        if self._exited.is_set():
            done.set()  # (it ended before it knew whom to tell)
        try:
            await done.wait()
        finally:
            self.stop()
            with trio.CancelScope(shield=True):
                await done.wait()
            self.close()

    def close(self) -> None:
        """Stop the thread, wait for it, and raise what failed in it (a bug)."""
        self.stop()
        if self._runner is not None:
            self._runner.join()
        self._wake_r.close()
        self._wake_w.close()
        if self._failure:  # a bug in the thread, also when the task was cancelled meanwhile
            raise self._failure[0]

    def stop(self) -> None:
        """Make the thread leave its loop (from any thread)."""
        self._stopping = True
        self.wake()

    def wake(self) -> None:
        """Interrupt the thread's wait (from another thread; the thread itself does not
        wait while it runs): it looks at its listeners and deadlines again."""
        if threading.get_ident() == self._thread:
            return
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def room_freed(self) -> None:
        """A session ended (lock held): accept again if the -m limit stopped it."""
        if not self._accepting and not self._stopping:
            self.wake()

    def config_changed(self) -> None:
        """A new configuration (lock held): its -t applies from the next sweep, at once."""
        self._next_sweep = 0.0
        self.wake()

    def now(self) -> float:
        """trio's clock, read from any thread."""
        return self._clock.current_time()

    # ----------------------------------------------- the thread (lock held)

    def adopt(self, session: Session, now: float) -> None:
        """Greet and serve a new session (plain transport)."""
        session.drivers = NAME  # (a session starts here or never comes here)
        try:
            if not session.implicit_tls and session.greet() and session.outbox:
                # The usual greeting, without the general steps (as in _readable).
                transport = session.transport
                assert isinstance(transport, PlainTransport)
                out = session.outbox
                try:
                    sent = transport.sock.send(out, DONTWAIT)
                except OSError:
                    sent = 0  # _pump tries again and sees what it is
                if sent == len(out):
                    session.outbox = b""
                    self._watch(session, transport, now)
                    return
                session.sent(sent)
            self._pump(session, now)
        except Exception as exc:
            self._crashed(session, exc)

    def _serve(self) -> None:
        poll = self._poller.poll
        sessions = self._sessions
        host = self._host
        lock = self._lock
        acquire, release = lock.acquire, lock.release
        wake_fd = self._wake_r.fileno()
        self._poller.add(wake_fd)
        try:
            with lock:
                now = self.now()
                self._update_accepting(now)
            while not self._stopping:
                # The wait is measured from the time read after the last one (one clock
                # read per turn): a sweep comes late by that turn's work at most. (When the
                # clock was switched meanwhile, the switch's wake-up ends this wait at once.)
                timeout: float | None = None
                if sessions:
                    timeout = self._next_sweep - now
                    if timeout < 0.0:
                        timeout = 0.0
                if not self._accepting:
                    wait = host.accept_paused_until() - now
                    if wait > 0:  # out of descriptors: accept again after a pause
                        timeout = wait if timeout is None else min(timeout, wait)
                events = poll(timeout)
                acquire()  # (not "with": its exit is a call more per turn)
                try:
                    # under the lock: run() may switch the clock meanwhile
                    now = self._clock.current_time()
                    for fd, _mask in events:
                        session = sessions.get(fd)
                        if session is not None:
                            self._readable(session, now)
                        elif fd == wake_fd:
                            with contextlib.suppress(OSError):
                                self._wake_r.recv(4096)
                        else:
                            listener = self._listeners.get(fd)
                            if listener is not None and self._accepting:
                                self._accept(listener, now)
                        if self._stopping:
                            break
                    if now >= self._next_sweep:
                        self._next_sweep = now + host.sweep_interval()
                        self._sweep(now)
                    if not self._accepting:  # (_accept stops it when it must)
                        self._update_accepting(now)
                finally:
                    release()
        finally:
            errors: list[Exception] = []
            with lock:
                for session in list(sessions.values()):
                    try:
                        self._forget(session)
                        session.close(counted=False)  # the server shuts down
                    except Exception as exc:  # the others are closed all the same
                        errors.append(exc)
            self._poller.close()
            if errors:
                raise errors[0]

    def _update_accepting(self, now: float) -> None:
        """Listen while the server has room and is not pausing."""
        resume = self._host.accept_paused_until()
        want = not self._stopping and self._host.has_room() and (not resume or now >= resume)
        if want == self._accepting:
            return
        self._accepting = want
        for fd in self._listeners:
            if want:
                self._poller.add(fd)
            else:
                self._poller.remove(fd)

    def _accept(self, listener: stdsocket.socket, now: float) -> None:
        host = self._host
        family = int(listener.family)
        for _ in range(ACCEPT_BURST):
            if self._stopping or not host.has_room():
                break
            try:
                conn, peer = accept(listener, family)
            except BlockingIOError:
                return
            except OSError as exc:
                if host.accept_failed(exc, now):
                    continue
                break
            session = host.open_session(conn, peer, family)
            if session is None:
                continue
            if host.wants_task(session):
                host.hand_over(session)
            else:
                self.adopt(session, now)
        self._update_accepting(now)

    def _readable(self, session: Session, now: float) -> None:
        # (only plain transports are polled here: no check per read)
        sock = session.transport.sock  # type: ignore[attr-defined]
        try:
            data = sock.recv(RECV_SIZE, DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        try:
            # The common case, without the general steps: the replies (if any) go out
            # whole and the session waits for the client again.
            if session.received(data, now):
                out = session.outbox
                if not out:
                    session.idle_since = now  # (Session.waiting)
                    return
                try:
                    sent = sock.send(out, DONTWAIT)
                except OSError:
                    sent = 0  # _pump tries again and sees what it is
                if sent == len(out):
                    session.outbox = b""
                    session.idle_since = now
                    return
                session.sent(sent)
            # (a close after the replies, a pause, a stop, a slow client: the general steps)
            self._pump(session, now)
        except Exception as exc:
            self._crashed(session, exc)

    def _pump(self, session: Session, now: float) -> None:
        """Carry out what the session asks until it must wait for the client."""
        transport = session.transport
        assert isinstance(transport, PlainTransport)
        while True:
            step = session.next_step()
            if step == SEND:
                sent = transport.send_nowait(session.outbox)
                if sent < 0:
                    session.lost()
                    continue
                session.sent(sent)
                if session.outbox:
                    self._give_away(session)  # the client reads slowly: wait elsewhere
                    return
            elif step == READ:
                self._watch(session, transport, now)
                return
            elif step == DONE:
                self._forget(session)
                return
            else:  # SLEEP, UPGRADE
                self._give_away(session)
                return

    def _watch(self, session: Session, transport: PlainTransport, now: float) -> None:
        """Wait for the client: its socket in the poll set (once)."""
        session.waiting(now)
        fd = transport.fd
        if fd not in self._sessions:
            self._poller.add(fd)
            self._sessions[fd] = session
            # Out of the poll set before the socket closes: a forked child may hold the
            # descriptor open, and its entry would stay and be reported.
            transport.before_close = self._poller.remove

    def _crashed(self, session: Session, exc: Exception) -> None:
        session.crashed(exc)
        self._forget(session)

    def _sweep(self, now: float) -> None:
        expired = [s for s in self._sessions.values() if now >= s.read_deadline()]
        for session in expired:
            session.timed_out("read")
            self._forget(session)

    def _forget(self, session: Session) -> None:
        transport = session.transport
        assert isinstance(transport, PlainTransport)
        # (a closed one left the poll set as it closed: before_close)
        if self._sessions.pop(transport.fd, None) is not None and transport.before_close:
            transport.before_close = None
            self._poller.remove(transport.fd)

    def _give_away(self, session: Session) -> None:
        self._forget(session)
        self._host.hand_over(session)

