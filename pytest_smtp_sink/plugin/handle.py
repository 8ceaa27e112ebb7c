"""SmtpSink, the handle tests use, and ``open_sink`` for trio code.

``async with open_sink(hostname="mx.test") as sink:`` runs a sink in the caller's own
nursery; the pytest fixtures hand out the same SmtpSink for servers in the plugin's thread.
"""

from __future__ import annotations

import re
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import trio

from ..core.config import SinkConfig, from_options
from ..core.errors import ConfigError
from ..core.options import LISTENER_NAMES
from ..core.rules import Rule, parse_rule
from ..dump.transaction import Transaction
from ..server.certs import TestCertificates
from ..server.server import LogFunc, SinkServer
from .capture import ANY, Capture, Criteria, Transcript, summary

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import SinkOptions

T = TypeVar("T")


class Control(Protocol):
    """How a handle reaches its server's trio loop (the plugin's loop thread)."""

    def call(self, fn: Callable[..., T], *args: Any) -> T: ...

    def stop_server(self, sink: SmtpSink) -> None: ...

    def restart_server(self, sink: SmtpSink) -> None: ...


class _SameLoop:
    """``open_sink``: the caller runs in the server's own trio loop."""

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def stop_server(self, sink: SmtpSink) -> None:
        raise RuntimeError("stop() and start() are for the pytest fixtures' sinks")

    restart_server = stop_server


class SmtpSinkFactory(Protocol):
    """The ``smtp_sink_factory`` fixture: ``backup = smtp_sink_factory(name="backup",
    soft_reject="RCPT")`` starts a sink of its own for the test."""

    def __call__(self, name: str | None = None, **options: Unpack[SinkOptions]) -> SmtpSink:
        """A new sink for this test, with ``options`` over the ini settings; ``name`` is how
        reports call it (default: its hostname). It stops after the test."""
        ...


def _set_config(server: SinkServer, config: SinkConfig) -> None:
    server.config = config


class SmtpSink:
    """A running sink: where it listens, what it is configured to do, what it captured.

    The ``smtp_sink`` fixture, ``smtp_sink_factory`` and ``open_sink`` make them; each sees
    only the mail of its own test. Point the code under test at ``host`` and ``port``, then
    read ``transactions`` (or wait for mail with ``wait_for``).
    """

    # certificates: where the test CA comes from (made on first use), for ca_file and
    # client_ssl_context(); control: how to reach the server's loop.

    def __init__(
        self,
        server: SinkServer,
        capture: Capture,
        certificates: Callable[[], TestCertificates] | None = None,
        control: Control | None = None,
    ) -> None:
        self.server = server
        self.capture = capture
        self._certificates = certificates
        self._control: Control = control or _SameLoop()
        # the seed of random faults added mid-test (the fixture sets the test's seed)
        self.seed: int | None = None
        self.expectations: list[tuple[int, Criteria, float]] = []  # see expect()

    # -- changes mid-test (thread-safe: under the server's lock, or in its loop)
    def configure(self, **options: Unpack[SinkOptions]) -> None:
        """Apply marker-style ``options`` over the current configuration, from now on
        (on open connections from their next transaction); the fixture undoes it."""
        fixed = sorted(n for n in options if n in LISTENER_NAMES)
        if fixed:
            raise ConfigError(
                f"{', '.join(fixed)} need a listener of their own: use the marker or"
                " smtp_sink_factory",
                option=fixed[0],
            )
        config = from_options(options, base=self.config)
        if config.seed is None and self.seed is not None and "seed" not in options:
            config = config.replace(seed=self.seed)
        self.use_config(config)

    def use_config(self, config: SinkConfig) -> None:
        """Serve with ``config`` from now on: set from this thread where the server allows
        it (a call into the loop's thread and back costs more than a whole test), else
        from the loop's."""
        if not self.server.set_config_here(config):
            self._control.call(_set_config, self.server, config)

    @contextmanager
    def configured(self, **options: Unpack[SinkOptions]) -> Iterator[SmtpSink]:
        """``with smtp_sink.configured(reject="RCPT"):`` the options for the block only."""
        before = self.config
        self.configure(**options)
        try:
            yield self
        finally:
            self.use_config(before)

    def rule(self, rule: Rule | str, *args: Any, **kw: Any) -> Rule:
        """Add a failure rule from now on: ``smtp_sink.rule("RCPT bad@*: 550 5.1.1 No")``
        or ``smtp_sink.rule("RCPT", "bad@*", reply="550 5.1.1 No", times=2)``."""
        if isinstance(rule, Rule):
            made = rule
        elif ":" in rule and not args and not kw:
            made = parse_rule(rule)
        else:
            made = Rule(rule, *args, **kw)
        self.configure(rules=(*self.config.rules, made))
        return made

    def stop(self) -> None:
        """Stop listening and close every connection (an outage); ``start()`` serves
        again on the same address. A stopped sink is started again after the test."""
        self._control.stop_server(self)

    def start(self) -> None:
        """Listen again on the address the sink had, after ``stop()``."""
        self._control.restart_server(self)

    # -- TLS
    def _test_certificates(self) -> TestCertificates:
        if self._certificates is None:
            raise RuntimeError("this sink has no test CA: it was given its own TLS context")
        return self._certificates()

    @property
    def ca_file(self) -> str:
        """The PEM file of the test CA that signed the sink's certificate (for curl,
        nodemailer, Django's ``EMAIL_SSL_CERTFILE``-style settings)."""
        return str(self._test_certificates().ca_file)

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the sink's certificate (host names checked):
        ``smtplib.SMTP(...).starttls(context=smtp_sink.client_ssl_context())``."""
        return self._test_certificates().client_context()

    # -- where
    @property
    def address(self) -> tuple[str, int] | str:
        """``(host, port)`` of the first listener, or the unix socket path."""
        return self.server.addresses[0]

    @property
    def addresses(self) -> list[tuple[str, int] | str]:
        """Every listener: IPv4 and IPv6 share one port when both are served."""
        return list(self.server.addresses)

    @property
    def host(self) -> str:
        """The host to connect to (a unix sink: its socket path)."""
        addr = self.address
        return addr if isinstance(addr, str) else addr[0]

    @property
    def port(self) -> int:
        """The TCP port to connect to (a unix-socket sink has none: see ``path``)."""
        addr = self.address
        if isinstance(addr, str):
            raise AttributeError(f"a unix-socket sink has no port; its path is {addr!r}")
        return addr[1]

    @property
    def path(self) -> str | None:
        """The unix socket path, or None for a TCP sink."""
        addr = self.address
        return addr if isinstance(addr, str) else None

    @property
    def name(self) -> str:
        """How reports name the sink: its hostname and address."""
        addr = self.address
        where = addr if isinstance(addr, str) else f"{addr[0]}:{addr[1]}"
        return f"{self.config.hostname} at {where}"

    # -- how
    @property
    def config(self) -> SinkConfig:
        """The configuration it serves with now (ini, marker, changes mid-test)."""
        return self.server.config

    # -- what
    @property
    def transactions(self) -> list[Transaction]:
        """The mail the client was told was accepted, in the order its end of data came."""
        return self.capture.transactions

    @property
    def refused(self) -> list[Transaction]:
        """Mail whose end of data was refused (``tx.reply``) or cut off (``tx.reply`` is
        None): the client was not told it was accepted."""
        return self.capture.refused

    @property
    def messages(self) -> list[EmailMessage]:
        """The accepted messages, parsed (``email.policy.default``)."""
        return [tx.message for tx in self.capture.transactions]

    @property
    def sessions(self) -> list[Transcript]:
        """One transcript per client connection."""
        return self.capture.transcripts

    @property
    def transcript(self) -> str:
        """Every conversation of the test, as text."""
        return self.transcript_text()

    def transcript_text(self, mode: str = "full", data_lines: int = 20) -> str:
        """The conversations, headed by the sink's name and a session number per test;
        ``mode`` ``envelope`` leaves the message data out."""
        return "\n".join(
            t.text(f"--- smtp-sink {self.name}: session {n} from {t.client}", mode, data_lines)
            for n, t in enumerate(self.capture.transcripts, 1)
        )

    def clear(self) -> None:
        """Forget what was captured."""
        self.capture.clear(self.server.sessions_opened)

    # -- waiting
    def wait(self, count: int = 1, timeout: float = 5.0) -> list[Transaction]:
        """Block until ``count`` transactions were accepted (clients in other threads)."""
        return self.capture.wait(count, timeout)

    async def wait_async(self, count: int = 1, timeout: float = 5.0) -> list[Transaction]:
        """Like ``wait`` without blocking the event loop (trio or asyncio)."""
        return await self._wait_async(count, timeout, ANY, 0)

    def wait_for(
        self,
        *,
        to: str | None = None,
        sender: str | None = None,
        subject: str | re.Pattern[str] | None = None,
        match: Callable[[Transaction], bool] | None = None,
        count: int = 1,
        new: bool = False,
        timeout: float = 5.0,
    ) -> list[Transaction]:
        """Block until ``count`` accepted transactions match (recipient ``to``, MAIL FROM
        ``sender``, ``subject`` text or pattern, ``match(tx)``); they are returned. ``new``:
        only mail after the last transaction an earlier wait returned (whether it came before
        this call or not: ``send(); wait_for(new=True)`` has no race). The TimeoutError lists
        what did arrive."""
        criteria = Criteria(to, sender, subject, match)
        return self.capture.wait(count, timeout, criteria, self.capture.unseen() if new else 0)

    async def wait_for_async(
        self,
        *,
        to: str | None = None,
        sender: str | None = None,
        subject: str | re.Pattern[str] | None = None,
        match: Callable[[Transaction], bool] | None = None,
        count: int = 1,
        new: bool = False,
        timeout: float = 5.0,
    ) -> list[Transaction]:
        """``wait_for`` without blocking the event loop (trio or asyncio)."""
        criteria = Criteria(to, sender, subject, match)
        return await self._wait_async(
            count, timeout, criteria, self.capture.unseen() if new else 0
        )

    def assert_no_mail(
        self,
        within: float = 0.2,
        *,
        to: str | None = None,
        sender: str | None = None,
        subject: str | re.Pattern[str] | None = None,
        match: Callable[[Transaction], bool] | None = None,
    ) -> None:
        """Fail if mail (matching, if criteria are given) is accepted within ``within``
        seconds from now; returns as soon as the time is up, fails as soon as mail comes."""
        criteria = Criteria(to, sender, subject, match)
        start = self.capture.mark()
        try:
            [tx, *_] = self.capture.wait(1, within, criteria, start)
        except TimeoutError:
            return
        raise AssertionError(f"smtp_sink: expected no mail within {within:g} s, got {summary(tx)}")

    def expect(
        self,
        count: int = 1,
        *,
        to: str | None = None,
        sender: str | None = None,
        subject: str | re.Pattern[str] | None = None,
        match: Callable[[Transaction], bool] | None = None,
        timeout: float = 5.0,
    ) -> None:
        """After the test, ``count`` accepted transactions must match (waiting up to
        ``timeout`` for them); the fixture fails the test otherwise."""
        self.expectations.append((count, Criteria(to, sender, subject, match), timeout))

    def check_expectations(self) -> list[str]:
        """The expectations not met (each waited for up to its timeout)."""
        unmet = []
        for count, criteria, timeout in self.expectations:
            try:
                self.capture.wait(count, timeout, criteria)
            except TimeoutError as exc:
                unmet.append(str(exc))
        self.expectations.clear()
        return unmet

    async def _wait_async(
        self, count: int, timeout: float, criteria: Criteria, start: int
    ) -> list[Transaction]:
        import sniffio

        if sniffio.current_async_library() == "trio":
            return await self._wait_trio(count, timeout, criteria, start)
        return await self._wait_asyncio(count, timeout, criteria, start)

    def _enough(self, count: int, criteria: Criteria, start: int) -> bool:
        return len(self.capture.matching(criteria, start)) >= count

    async def _wait_trio(
        self, count: int, timeout: float, criteria: Criteria, start: int
    ) -> list[Transaction]:
        token = trio.lowlevel.current_trio_token()
        with trio.move_on_after(timeout):
            while not self._enough(count, criteria, start):
                event = trio.Event()

                def wake(event: trio.Event = event) -> None:
                    token.run_sync_soon(event.set)

                self.capture.add_listener(wake)
                try:
                    if not self._enough(count, criteria, start):
                        await event.wait()
                finally:
                    self.capture.remove_listener(wake)
        return self.capture.result(count, timeout, criteria, start)  # TimeoutError if short

    async def _wait_asyncio(
        self, count: int, timeout: float, criteria: Criteria, start: int
    ) -> list[Transaction]:
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._enough(count, criteria, start):
            event = asyncio.Event()

            def wake(event: asyncio.Event = event) -> None:
                loop.call_soon_threadsafe(event.set)

            self.capture.add_listener(wake)
            try:
                if not self._enough(count, criteria, start):
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        await asyncio.wait_for(event.wait(), left)
                    except asyncio.TimeoutError:
                        break
            finally:
                self.capture.remove_listener(wake)
        return self.capture.result(count, timeout, criteria, start)

    def __repr__(self) -> str:
        return f"<SmtpSink {self.address!r} transactions={len(self.capture)}>"


def attach_capture(server: SinkServer, capture: Capture) -> None:
    """Send the server's transactions and conversations to ``capture``."""

    server.on_answered(capture.add)
    server.transcript = capture.record


@asynccontextmanager
async def open_sink(
    config: SinkConfig | None = None,
    address: str = "127.0.0.1:0",
    *,
    backlog: int = 100,
    log: LogFunc | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> AsyncIterator[SmtpSink]:
    """Run a sink in the caller's trio nursery for the duration of the block.

    ``options`` are SinkConfig fields (the marker names), applied over ``config``. With
    TLS asked for (``starttls``, ``implicit_tls``) and neither ``ssl_context`` nor
    ``tls_cert``, a test CA signs the sink's certificate: ``sink.client_ssl_context()``.
    """
    cfg = from_options(options, base=config) if options else (config or SinkConfig())
    with ExitStack() as stack:
        certificates: TestCertificates | None = None
        if ssl_context is None and cfg.tls and cfg.tls_cert is None:
            # TLS without a certificate of the caller's: a test CA, for this sink only
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="smtp-sink-tls-"))
            certificates = TestCertificates(folder)
            ssl_context = certificates.server_context()
        server = SinkServer(cfg, address, backlog, log=log or _quiet, ssl_context=ssl_context)
        capture = Capture()
        attach_capture(server, capture)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            try:
                yield SmtpSink(
                    server, capture, (lambda: certificates) if certificates else None
                )
            finally:
                nursery.cancel_scope.cancel()


def _quiet(level: str, text: str) -> None:
    import logging

    logging.getLogger("pytest_smtp_sink").log(
        logging.WARNING if level != "info" else logging.INFO, text
    )

