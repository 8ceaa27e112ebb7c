"""SinkThread: a trio loop in a background thread that hosts the plugin's sink servers.

pytest-trio only allows function-scoped trio fixtures, so the session server lives in its own
``trio.run`` (DESIGN §5). Servers are started inside that loop's nursery with
``nursery.start``; the thread is joined at the end of the session.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from .capture import Capture
from .config import SinkConfig
from .server import LogFunc, SinkServer
from .sink import SmtpSink, attach_capture

T = TypeVar("T")


class SinkError(RuntimeError):
    """The sink's trio loop failed; the message says how."""


class SinkThread:
    """Owns one background trio loop; starts and stops sink servers inside it."""

    def __init__(self, log: LogFunc) -> None:
        self.log = log
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self.error: BaseException | None = None
        self.server_errors: list[str] = []

    # -------------------------------------------------------------- life cycle

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="smtp-sink", daemon=False
        )
        self._thread.start()
        ready.wait()
        if self.error is not None:
            raise SinkError(f"smtp-sink loop failed to start: {self.error!r}") from self.error

    def _thread_main(self, ready: threading.Event) -> None:
        try:
            trio.run(self._main, ready)
        except BaseException as exc:  # surfaced to the tests by check()
            self.error = exc
        finally:
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def stop(self) -> None:
        """Cancel every server and join the thread."""
        if self._thread is None:
            return
        if self._token is not None and self._stop is not None and self._thread.is_alive():
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join()
        self._thread = None

    def check(self) -> None:
        """Raise SinkError if the loop or a server died."""
        if self.error is not None:
            raise SinkError(f"the smtp-sink server crashed: {self.error!r}") from self.error
        if self.server_errors:
            errors, self.server_errors[:] = list(self.server_errors), []
            raise SinkError("the smtp-sink server crashed: " + "; ".join(errors))

    # ------------------------------------------------------------ calls inside

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a plain function inside the loop's thread and return its result."""
        self.check()
        assert self._token is not None
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def run(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        self.check()
        assert self._token is not None
        return trio.from_thread.run(afn, *args, trio_token=self._token)

    def start_server(self, config: SinkConfig, address: str, backlog: int = 100) -> SmtpSink:
        """Start a sink server in the loop; returns its handle once it listens."""
        server = SinkServer(config, address, backlog, log=self.log)
        capture = Capture()
        attach_capture(server, capture)
        self.run(self._start, server)
        return SmtpSink(server, capture)

    async def _start(self, server: SinkServer) -> None:
        assert self._nursery is not None
        await self._nursery.start(self._serve, server)

    async def _serve(self, server: SinkServer, task_status: trio.TaskStatus[Any]) -> None:
        try:
            await server.run(task_status=task_status)
        except trio.Cancelled:
            raise
        except Exception as exc:
            if not task_status_started(server):
                raise  # a listen error: nursery.start re-raises it in the caller
            self.server_errors.append(f"{type(exc).__name__}: {exc}")
            self.log("error", f"server crashed: {exc!r}")

    def stop_server(self, sink: SmtpSink) -> None:
        if self._thread is None or self.error is not None:
            return
        self.call(sink.server.stop)


def task_status_started(server: SinkServer) -> bool:
    return bool(server.addresses)
