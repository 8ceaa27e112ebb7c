"""The portable driver: one trio task per session, over any ``Transport``.

It serves every session where the selector driver does not: sessions that must wait (delays),
sessions handed over by the selector driver, every session where no pollable selector exists
(Windows), and TLS (STARTTLS upgrades, implicit TLS).
"""

from __future__ import annotations

import math
from typing import Protocol

import trio

from .session import DONE, READ, SEND, SLEEP, UPGRADE, Session
from .tls import TlsError, TlsTransport
from .transport import PlainTransport

NAME = "portable"


_LOCK_RETRY = 0.001  # seconds between tries for the lock while the selector thread holds it


class _Locked:
    """``async with``: the server's lock, held whenever a session is touched, taken without
    blocking trio's thread (the selector thread holds it while it serves a batch, and a
    hook there may wait for trio meanwhile). Taken also when cancelled (shielded): the
    cancellation comes at the next wait."""

    __slots__ = ("lock",)

    def __init__(self, lock: Lock) -> None:
        self.lock = lock

    async def __aenter__(self) -> None:
        lock = self.lock
        if not lock.acquire(blocking=False):
            with trio.CancelScope(shield=True):
                while not lock.acquire(blocking=False):
                    await trio.sleep(_LOCK_RETRY)

    async def __aexit__(self, *exc: object) -> None:
        self.lock.release()


class Lock(Protocol):
    def acquire(self, blocking: bool = ...) -> bool: ...

    def release(self) -> None: ...


async def serve(session: Session, lock: Lock) -> None:
    """Serve ``session`` to its end. Its connection is closed when this returns, also when
    the server shuts down (the session is then not counted). ``lock``: the server's (the
    selector thread serves other sessions meanwhile)."""
    locked = _Locked(lock)
    async with locked:
        session.drivers = f"{session.drivers}+{NAME}" if session.drivers else NAME
    try:
        await _serve(session, locked)
    except Exception as exc:
        async with locked:
            session.crashed(exc)
    finally:
        # Still open here: the server is shutting down (cancelled, -M, -n, a signal). Such a
        # session is not counted; Postfix exits without reporting it either.
        async with locked:
            session.close(counted=False)


async def _serve(session: Session, locked: _Locked) -> None:
    waiting = "read"
    # One cancel scope for the session's life; waits move its deadline (a scope per wait
    # costs more than the wait).
    with trio.CancelScope() as scope:

        def rearm() -> None:  # installed while waiting for the client only
            scope.deadline = session.read_deadline()

        def write_progressed() -> None:  # -t limits each stall of a write, as in Postfix
            scope.deadline = trio.current_time() + session.timeout

        while True:
            async with locked:
                transport = session.transport
                step = session.next_step()
                if step == READ:
                    waiting = "read"
                    session.waiting(trio.current_time())
                    scope.deadline = session.read_deadline()
                    session.rearm = rearm
                elif step == SEND:
                    waiting = "write"
                    data = session.outbox
                    scope.deadline = trio.current_time() + session.timeout
                elif step == SLEEP:
                    pause = session.pause
                    assert pause is not None and hasattr(pause, "seconds")
                    seconds = pause.seconds
                elif step == UPGRADE:
                    waiting = "read"
                    scope.deadline = trio.current_time() + session.timeout
                    context = session.tls_context()
            if step == READ:
                data = await transport.receive()
                async with locked:
                    session.rearm = None
                    scope.deadline = math.inf
                    session.received(data, trio.current_time())
            elif step == SEND:
                ok = await transport.send_all(data, write_progressed)
                async with locked:
                    scope.deadline = math.inf
                    if ok:
                        session.sent(len(data))
                    else:
                        session.lost()
            elif step == SLEEP:
                await trio.sleep(seconds)  # -t limits only waiting for the client
                async with locked:
                    session.slept()
            elif step == UPGRADE:
                assert isinstance(transport, PlainTransport)
                tls = TlsTransport.over(transport, context)
                try:
                    description = await tls.handshake()
                except TlsError as exc:
                    async with locked:
                        scope.deadline = math.inf
                        session.upgrade_failed(str(exc))
                    continue
                async with locked:
                    scope.deadline = math.inf
                    session.upgraded(tls, description)
            else:
                assert step == DONE
                return
    if scope.cancelled_caught:
        async with locked:
            session.timed_out(waiting)
