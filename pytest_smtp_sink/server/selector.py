"""The selector driver: one trio task serving every plain session from a private selector.

A task per connection costs a trip through trio's scheduler for every wait; for a sink whose
whole job is to answer quickly that was most of the CPU time. This driver keeps its sessions
registered in a selector of its own (epoll on Linux, kqueue on macOS), waits for that
selector's descriptor with ``trio.lowlevel.wait_readable`` and serves every ready session
synchronously: recv, protocol, send. A session that must wait (a -W/-H/-A delay, a send
that would block) is handed to the portable driver, which carries on from the same Session.
Where no selector has a pollable descriptor (Windows) ``available()`` is False and the
server uses the portable driver alone. Timeouts (-t) are swept a few times a second.
"""

from __future__ import annotations

import selectors
from collections.abc import Callable

import trio

from .session import DONE, READ, SEND, Session
from .transport import PlainTransport

NAME = "selector"

def available() -> bool:
    """A selector whose own descriptor can be waited for (epoll, kqueue, /dev/poll)."""
    return hasattr(selectors.DefaultSelector, "fileno")


class SelectorDriver:
    """Serves plain sessions that need no waiting, all in one task."""

    def __init__(
        self,
        hand_over: Callable[[Session], None],
        sweep_interval: Callable[[], float],
    ) -> None:
        self._hand_over = hand_over  # continue a session in the portable driver
        self._sweep_interval = sweep_interval
        self._selector = selectors.DefaultSelector()
        self._fd: int = self._selector.fileno()  # type: ignore[attr-defined,unused-ignore]
        self._sessions: dict[int, Session] = {}  # by descriptor

    def adopt(self, session: Session) -> None:
        """Greet and serve a new session (plain transport)."""
        session.drivers.append(NAME)
        try:
            self._pump(session, trio.current_time())
        except Exception as exc:
            self._crashed(session, exc)

    async def run(self) -> None:
        selector = self._selector
        sessions = self._sessions
        try:
            next_sweep = 0.0
            while True:
                interval = self._sweep_interval()
                with trio.move_on_after(interval):
                    await trio.lowlevel.wait_readable(self._fd)
                now = trio.current_time()
                for key, _mask in selector.select(0):
                    session = sessions.get(key.fd)
                    if session is not None:
                        self._readable(session, now)
                if now >= next_sweep:
                    next_sweep = now + interval
                    self._sweep(now)
        finally:
            for session in list(sessions.values()):
                self._forget(session)
                session.close(counted=False)  # the server shuts down
            selector.close()

    # ------------------------------------------------------------------ sessions

    def _readable(self, session: Session, now: float) -> None:
        transport = session.transport
        assert isinstance(transport, PlainTransport)
        data = transport.recv_nowait()
        if data is None:
            return
        try:
            session.received(data, now)
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
                session.waiting(now)
                if transport.fd not in self._sessions:
                    self._selector.register(transport.fd, selectors.EVENT_READ)
                    self._sessions[transport.fd] = session
                return
            elif step == DONE:
                self._forget(session)
                return
            else:  # SLEEP
                self._give_away(session)
                return

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
        if self._sessions.pop(transport.fd, None) is not None:
            self._selector.unregister(transport.fd)

    def _give_away(self, session: Session) -> None:
        self._forget(session)
        self._hand_over(session)
