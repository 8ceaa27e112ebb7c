"""The portable driver: one trio task per session, over any ``Transport``.

It serves every session where the selector driver does not: sessions that must wait (delays),
sessions handed over by the selector driver, every session where no pollable selector exists
(Windows), and TLS (STARTTLS upgrades, implicit TLS).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import trio

from .session import DONE, READ, SEND, SLEEP, UPGRADE, Session
from .tls import TlsError, TlsTransport
from .transport import PlainTransport

NAME = "portable"


async def serve(session: Session, lock: AbstractContextManager[object]) -> None:
    """Serve ``session`` to its end. Its connection is closed when this returns, also when
    the server shuts down (the session is then not counted). ``lock``: the server's, held
    whenever the session is touched (the selector thread serves others meanwhile)."""
    with lock:
        session.drivers.append(NAME)
    try:
        await _serve(session, lock)
    except Exception as exc:
        with lock:
            session.crashed(exc)
    finally:
        # Still open here: the server is shutting down (cancelled, -M, -n, a signal). Such a
        # session is not counted; Postfix exits without reporting it either.
        with lock:
            session.close(counted=False)


async def _serve(session: Session, lock: AbstractContextManager[object]) -> None:
    waiting = "read"
    # One cancel scope for the session's life; waits move its deadline (a scope per wait
    # costs more than the wait).
    with trio.CancelScope() as scope:

        def rearm() -> None:  # installed while waiting for the client only
            scope.deadline = session.read_deadline()

        def write_progressed() -> None:  # -t limits each stall of a write, as in Postfix
            scope.deadline = trio.current_time() + session.timeout

        while True:
            with lock:
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
                with lock:
                    session.rearm = None
                    scope.deadline = math.inf
                    session.received(data, trio.current_time())
            elif step == SEND:
                ok = await transport.send_all(data, write_progressed)
                with lock:
                    scope.deadline = math.inf
                    if ok:
                        session.sent(len(data))
                    else:
                        session.lost()
            elif step == SLEEP:
                await trio.sleep(seconds)  # -t limits only waiting for the client
                with lock:
                    session.slept()
            elif step == UPGRADE:
                assert isinstance(transport, PlainTransport)
                tls = TlsTransport.over(transport, context)
                try:
                    description = await tls.handshake()
                except TlsError as exc:
                    with lock:
                        scope.deadline = math.inf
                        session.upgrade_failed(str(exc))
                    continue
                with lock:
                    scope.deadline = math.inf
                    session.upgraded(tls, description)
            else:
                assert step == DONE
                return
    if scope.cancelled_caught:
        with lock:
            session.timed_out(waiting)
