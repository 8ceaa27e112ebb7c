"""The portable driver: one trio task per session, over any ``Transport``.

It serves every session where the selector driver does not: sessions that must wait (delays),
sessions handed over by the selector driver, every session where no pollable selector exists
(Windows), and TLS (STARTTLS upgrades, implicit TLS).
"""

from __future__ import annotations

import math

import trio

from .session import DONE, READ, SEND, SLEEP, UPGRADE, Session
from .tls import TlsError, TlsTransport
from .transport import PlainTransport

NAME = "portable"


async def serve(session: Session) -> None:
    """Serve ``session`` to its end. Its connection is closed when this returns, also when
    the server shuts down (the session is then not counted)."""
    session.drivers.append(NAME)
    try:
        await _serve(session)
    except Exception as exc:
        session.crashed(exc)
    finally:
        # Still open here: the server is shutting down (cancelled, -M, -n, a signal). Such a
        # session is not counted; Postfix exits without reporting it either.
        session.close(counted=False)


async def _serve(session: Session) -> None:
    waiting = "read"
    # One cancel scope for the session's life; waits move its deadline (a scope per wait
    # costs more than the wait).
    with trio.CancelScope() as scope:

        def rearm() -> None:  # installed while waiting for the client only
            scope.deadline = session.read_deadline()

        def write_progressed() -> None:  # -t limits each stall of a write, as in Postfix
            scope.deadline = trio.current_time() + session.timeout

        while True:
            transport = session.transport
            step = session.next_step()
            if step == READ:
                waiting = "read"
                session.waiting(trio.current_time())
                scope.deadline = session.read_deadline()
                session.rearm = rearm
                data = await transport.receive()
                session.rearm = None
                scope.deadline = math.inf
                session.received(data, trio.current_time())
            elif step == SEND:
                waiting = "write"
                data = session.outbox
                scope.deadline = trio.current_time() + session.timeout
                ok = await transport.send_all(data, write_progressed)
                scope.deadline = math.inf
                if ok:
                    session.sent(len(data))
                else:
                    session.lost()
            elif step == SLEEP:
                pause = session.pause
                assert pause is not None and hasattr(pause, "seconds")
                await trio.sleep(pause.seconds)  # -t limits only waiting for the client
                session.slept()
            elif step == UPGRADE:
                waiting = "read"
                scope.deadline = trio.current_time() + session.timeout
                await _upgrade(session)
                scope.deadline = math.inf
            else:
                assert step == DONE
                return
    if scope.cancelled_caught:
        session.timed_out(waiting)


async def _upgrade(session: Session) -> None:
    """The server side of the TLS handshake on the session's connection."""
    plain = session.transport
    assert isinstance(plain, PlainTransport)
    tls = TlsTransport.over(plain, session.tls_context())
    try:
        description = await tls.handshake()
    except TlsError as exc:
        session.upgrade_failed(str(exc))
        return
    session.upgraded(tls, description)
