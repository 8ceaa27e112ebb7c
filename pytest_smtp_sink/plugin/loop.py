"""SinkThread: a trio loop in a background thread that hosts the plugin's sink servers.

pytest-trio only allows function-scoped trio fixtures, so the session server lives in its own
``trio.run`` (DESIGN §5). Servers are started inside that loop's nursery with
``nursery.start``; the thread is joined at the end of the session.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from ..core.config import SinkConfig
from ..core.endpoint import Endpoint
from ..server.certs import TestCertificates
from ..server.server import LogFunc, SinkServer
from .capture import Capture
from .handle import SmtpSink, attach_capture

T = TypeVar("T")


class SinkError(RuntimeError):
    """The sink's trio loop failed; the message says how."""


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``[exc]``."""
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, (list, tuple)) and isinstance(exc, BaseException):
        return [leaf for sub in inner for leaf in leaf_exceptions(sub)]
    return [exc]


def describe_crash(exc: BaseException) -> str:
    """``Type: message`` of each real error, then its traceback (for a bug report)."""
    leaves = leaf_exceptions(exc)
    head = "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
    tb = "".join(
        line for e in leaves for line in traceback.format_exception(type(e), e, e.__traceback__)
    )
    return f"{head}\n{tb.rstrip()}"


class SinkThread:
    """Owns one background trio loop; starts and stops sink servers inside it."""

    def __init__(self, log: LogFunc) -> None:
        self._log = log
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self.error: BaseException | None = None
        self.server_errors: list[str] = []
        # Servers serving in the loop, each with the event set when its task has ended.
        self._running: dict[SinkServer, trio.Event] = {}
        self._errors_lock = threading.Lock()

    def _add_error(self, text: str) -> None:
        with self._errors_lock:
            self.server_errors.append(text)

    def log(self, level: str, text: str) -> None:
        """The servers' log: errors are also kept for ``check()`` (they fail the test)."""
        if level == "error":
            self._add_error(f"smtp-sink server error: {text}")
        self._log(level, text)

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
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()
        self._thread = None

    def check(self) -> None:
        """Raise SinkError (once per error) if the loop or a server failed."""
        if self.error is not None:
            raise SinkError(f"the smtp-sink loop crashed: {describe_crash(self.error)}")
        with self._errors_lock:
            errors, self.server_errors[:] = list(self.server_errors), []
        if errors:
            raise SinkError("\n".join(errors))

    def _alive(self) -> trio.lowlevel.TrioToken:
        if self.error is not None:
            raise SinkError(f"the smtp-sink loop crashed: {describe_crash(self.error)}")
        if self._token is None or self._thread is None or not self._thread.is_alive():
            raise SinkError("the smtp-sink loop is not running")
        return self._token

    # ------------------------------------------------------------ calls inside

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a plain function inside the loop's thread and return its result."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._alive())

    def run(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(afn, *args, trio_token=self._alive())

    def start_server(
        self,
        config: SinkConfig,
        address: str,
        backlog: int = 100,
        *,
        ssl_context: ssl.SSLContext | None = None,
        certificates: Callable[[], TestCertificates] | None = None,
    ) -> SmtpSink:
        """Start a sink server in the loop; returns its handle once it listens."""
        server = SinkServer(  # ListenError: bad address
            config, address, backlog, log=self.log, ssl_context=ssl_context
        )
        capture = Capture()
        attach_capture(server, capture)
        self.run(self._start, server)
        return SmtpSink(server, capture, certificates, control=self)

    def restart_server(self, sink: SmtpSink) -> None:
        """Serve ``sink`` again (after a crash or a stop) on the address it had, same
        capture; nothing when it serves."""
        server = sink.server
        if server in self._running:
            return
        old = server.addresses[0] if server.addresses else None
        if isinstance(old, tuple):
            host, port = old
            server.endpoint = Endpoint("inet", host, str(port))
        self.run(self._start, server)

    def is_running(self, sink: SmtpSink) -> bool:
        return sink.server in self._running

    async def _start(self, server: SinkServer) -> None:
        assert self._nursery is not None
        await self._nursery.start(self._serve, server)

    async def _serve(self, server: SinkServer, task_status: trio.TaskStatus[Any]) -> None:
        done = trio.Event()
        started = False

        class Status:
            def started(self, value: Any = None) -> None:
                nonlocal started
                started = True
                task_status.started(value)

        self._running[server] = done
        try:
            await server.run(task_status=Status())
        except Exception as exc:
            if not started:
                raise  # a listen error: nursery.start re-raises it in the caller
            # Not re-raised: the other servers of the loop keep serving. Not running any
            # more before the error is seen, so that the next test restarts it.
            self._running.pop(server, None)
            self._add_error(f"the smtp-sink server crashed: {describe_crash(exc)}")
            self._log("error", "server crashed: " + "; ".join(map(repr, leaf_exceptions(exc))))
        finally:
            self._running.pop(server, None)
            done.set()

    def stop_server(self, sink: SmtpSink) -> None:
        """Stop serving ``sink`` and wait until its sockets are closed."""
        if self._thread is None or self.error is not None or not self._thread.is_alive():
            return
        self.run(self._stop_server, sink.server)

    async def _stop_server(self, server: SinkServer) -> None:
        done = self._running.get(server)
        if done is None:
            return
        server.stop()
        await done.wait()
