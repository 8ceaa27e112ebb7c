"""The portable driver: one trio task per session, over any ``Transport``.

It serves every session where the selector driver does not: sessions that must wait (delays),
sessions handed over by the selector driver, every session where no pollable selector exists
(Windows), and the TLS sessions of the future.
"""

from __future__ import annotations

import math

import trio

from .session import DONE, READ, SEND, SLEEP, Session

NAME = "portable"


async def serve(session: Session) -> None:
    """Serve ``session`` to its end. Its connection is closed when this returns, also when
    the server shuts down (the session is then not counted)."""
    session.drivers.append(NAME)
    try:
        if not session.drivers[:-1]:  # a new session, not one handed over
            session.start(trio.current_time())
        await _serve(session)
    except Exception as exc:
        session.crashed(exc)
    finally:
        # Still open here: the server is shutting down (cancelled, -M, -n, a signal). Such a
        # session is not counted; Postfix exits without reporting it either.
        session.close(counted=False)


async def _serve(session: Session) -> None:
    transport = session.transport
    waiting = "read"
    # One cancel scope for the session's life; waits move its deadline (a scope per wait
    # costs more than the wait).
    with trio.CancelScope() as scope:

        def rearm() -> None:
            if waiting == "read":
                scope.deadline = session.read_deadline()

        while True:
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
                scope.deadline = trio.current_time() + session.timeout
                ok = await transport.send_all(session.outbox)
                scope.deadline = math.inf
                if ok:
                    session.sent_all()
                else:
                    session.lost()
            elif step == SLEEP:
                assert session.pause is not None
                await trio.sleep(session.pause.seconds)  # -t limits only waiting for the client
                session.slept()
            else:
                assert step == DONE
                return
    if scope.cancelled_caught:
        session.timed_out(waiting)
