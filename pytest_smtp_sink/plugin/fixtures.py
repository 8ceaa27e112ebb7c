"""What the fixtures do: start the session's loop and sinks, configure a sink for each test
from its markers, check it after the test (expectations, strict mode, server errors) and
write its dumps. Imported on first use of a fixture (the plugin module itself stays light).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from ..core.config import SinkConfig
from ..core.errors import ConfigError
from .keys import DUMP_KEY, FAILED_KEY, HANDLE_KEY, NAMES_KEY, SETTINGS_KEY
from .seeds import seed_of_test
from .settings import (
    Asked,
    TestSettings,
    UnknownOption,
    build,
    ini_asked,
    ini_listen,
    is_random,
    marker_options,
)

if TYPE_CHECKING:
    import ssl

    from ..server.certs import TestCertificates
    from .handle import SmtpSink, SmtpSinkFactory
    from .loop import SinkThread

LOG = logging.getLogger("pytest_smtp_sink")
COMMAND_LOG = logging.getLogger("pytest_smtp_sink.commands")


def _log(level: str, text: str) -> None:
    LOG.log({"info": logging.INFO, "warning": logging.WARNING}.get(level, logging.ERROR), text)



def session_thread() -> Iterator[SinkThread]:
    """The background trio loop that hosts every sink of this session (or xdist worker)."""
    from .loop import SinkThread

    thread = SinkThread(_log)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()
    # Whatever went wrong after the last test looked is an error of the session's last test.
    _check(thread)


class LazyCertificates:
    """The session's test CA, made on first use (trustme costs ~50 ms to import)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._certificates: TestCertificates | None = None

    def __call__(self) -> TestCertificates:
        if self._certificates is None:
            from ..server.certs import TestCertificates

            self._certificates = TestCertificates(self._factory.mktemp("smtp-sink-tls"))
        return self._certificates


def _tls_context(request: pytest.FixtureRequest, cfg: SinkConfig) -> ssl.SSLContext | None:
    """The TLS context a sink with ``cfg`` needs, if any (asked for only then)."""
    if not cfg.tls or cfg.tls_cert is not None:
        return None
    context: ssl.SSLContext = request.getfixturevalue("smtp_sink_ssl_context")
    return context


def session_server(
    request: pytest.FixtureRequest,
    smtp_sink_thread: SinkThread,
    pytestconfig: pytest.Config,
    _smtp_sink_lazy_certificates: LazyCertificates,
) -> SmtpSink:
    """The session's sink, listening on ini ``smtp_sink_listen``."""
    base = ini_asked(pytestconfig).config
    return _start(
        smtp_sink_thread, base, ini_listen(pytestconfig), "smtp_sink_listen",
        _tls_context(request, base), _smtp_sink_lazy_certificates,
    )  # fmt: skip


def _start(
    thread: SinkThread,
    cfg: SinkConfig,
    listen: str | None,
    what: str,
    ssl_context: ssl.SSLContext | None,
    certificates: Callable[[], TestCertificates],
) -> SmtpSink:
    """A new sink in ``thread``; a listen error fails the test with a one-line message."""
    from .loop import SinkError

    if listen is None:
        listen = "[::1]:0" if cfg.family == "inet6" else "127.0.0.1:0"
    try:
        sink = thread.start_server(
            cfg, listen, ssl_context=ssl_context, certificates=certificates
        )
    except OSError as exc:
        pytest.fail(f"{what}: cannot listen on {listen}: {exc}", pytrace=False)
    except SinkError as exc:
        pytest.fail(str(exc), pytrace=False)
    sink.server.command_log = COMMAND_LOG.info
    return sink


def _check(thread: SinkThread) -> None:
    """Fail the current test (or its setup/teardown) if the sink's server had an error."""
    from .loop import SinkError

    try:
        thread.check()
    except SinkError as exc:
        message = str(exc)
    else:
        return
    pytest.fail(message, pytrace=False)


def _fail_config(where: str, exc: ConfigError) -> NoReturn:
    if isinstance(exc, UnknownOption):
        pytest.fail(f"{where}: {exc}", pytrace=False)
    pytest.fail(f"{where}: bad value for {exc.option or '?'}: {exc}", pytrace=False)


def _asked(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Asked:
    """The test's marker over the ini defaults; a bad marker fails it with one message."""
    base = ini_asked(pytestconfig)
    error: ConfigError | None = None
    try:
        asked = build(base.config, base.settings, marker_options(request.node))
    except ConfigError as exc:
        error = exc
    if error is not None:  # outside the except block: the message is shown once
        _fail_config("@pytest.mark.smtp_sink", error)
    return asked


def sink_for_test(
    request: pytest.FixtureRequest,
    smtp_sink_server: SmtpSink,
    smtp_sink_thread: SinkThread,
    pytestconfig: pytest.Config,
    _smtp_sink_lazy_certificates: LazyCertificates,
) -> Iterator[SmtpSink]:
    """The sink for this test, configured by its ``smtp_sink`` marker; capture cleared."""
    from .loop import SinkError

    asked = _asked(request, pytestconfig)
    base = ini_asked(pytestconfig).config
    cfg = asked.config
    seed = seed_of_test(pytestconfig, request.node.nodeid)
    if cfg.seed is None and is_random(cfg):
        cfg = cfg.replace(seed=seed)
    request.node.stash[SETTINGS_KEY] = asked.settings
    _check(smtp_sink_thread)
    ssl_context = _tls_context(request, cfg)
    if asked.dedicated:
        sink = _start(
            smtp_sink_thread, cfg, asked.listen, "@pytest.mark.smtp_sink", ssl_context,
            _smtp_sink_lazy_certificates,
        )  # fmt: skip
        sink.seed = seed
        _register(request, sink)
        try:
            yield sink
        finally:
            smtp_sink_thread.stop_server(sink)
            _after_test(request, [sink], smtp_sink_thread)
        return
    sink = smtp_sink_server
    if not smtp_sink_thread.is_running(sink):
        # It crashed in an earlier test (which got the error): serve again, same address.
        try:
            smtp_sink_thread.restart_server(sink)
        except (OSError, SinkError) as exc:
            pytest.fail(f"cannot restart the smtp-sink session server: {exc}", pytrace=False)
    if ssl_context is not None and sink.server.ssl_context is None:
        smtp_sink_thread.call(setattr, sink.server, "ssl_context", ssl_context)
    if sink.server.config is not cfg:
        sink.use_config(cfg)
    if cfg.rules:  # rules counted per sink count from 0 in every test
        sink.server.reset_rule_counters()
    sink.clear()
    sink.seed = seed
    _register(request, sink)
    try:
        yield sink
    finally:
        with contextlib.suppress(SinkError, OSError):  # reported by _after_test
            if sink.server.config is not base:
                sink.use_config(base)
            smtp_sink_thread.restart_server(sink)  # after a stop() in the test
        _after_test(request, [sink], smtp_sink_thread)




def factory_for_test(
    request: pytest.FixtureRequest,
    smtp_sink_thread: SinkThread,
    pytestconfig: pytest.Config,
    _smtp_sink_lazy_certificates: LazyCertificates,
) -> Iterator[SmtpSinkFactory]:
    """Start extra sinks for this test: ``backup = smtp_sink_factory(reject="RCPT")``.

    Options are the marker's (plus ``listen``); ``name`` names the sink in dumps. Each sink
    gets its own port and capture and is stopped at the end of the test. A bad option
    raises ConfigError (a ValueError).
    """
    started: list[SmtpSink] = []
    base = ini_asked(pytestconfig)

    def factory(name: str | None = None, **options: Any) -> SmtpSink:
        __tracebackhide__ = True
        try:
            asked = build(base.config, base.settings, options)
        except UnknownOption as exc:
            raise UnknownOption(f"smtp_sink_factory: {exc}", option=exc.option) from None
        except ConfigError as exc:
            raise ConfigError(
                f"smtp_sink_factory: bad value for {exc.option}: {exc}", option=exc.option
            ) from None
        cfg = asked.config
        seed = seed_of_test(pytestconfig, f"{request.node.nodeid}:{len(started)}")
        if cfg.seed is None and is_random(cfg):
            cfg = cfg.replace(seed=seed)
        listen = asked.listen or ("[::1]:0" if cfg.family == "inet6" else "127.0.0.1:0")
        sink = smtp_sink_thread.start_server(
            cfg, listen, ssl_context=_tls_context(request, cfg),
            certificates=_smtp_sink_lazy_certificates,
        )  # fmt: skip
        sink.server.command_log = COMMAND_LOG.info
        sink.seed = seed
        started.append(sink)
        _register(request, sink, name or f"sink{len(started) - 1}")
        return sink

    try:
        yield factory
    finally:
        for sink in started:
            smtp_sink_thread.stop_server(sink)
        _after_test(request, started, smtp_sink_thread)


def _register(request: pytest.FixtureRequest, sink: SmtpSink, name: str | None = None) -> None:
    node = request.node
    node.stash.setdefault(HANDLE_KEY, []).append(sink)
    if name is not None:
        node.stash.setdefault(NAMES_KEY, {})[id(sink)] = name


# ---------------------------------------------------------------- after each test


def _after_test(request: pytest.FixtureRequest, sinks: list[SmtpSink], thread: SinkThread) -> None:
    from .report import strict_problems

    node = request.node
    problems: list[str] = []
    settings = node.stash.get(SETTINGS_KEY, TestSettings())
    for sink in sinks:
        problems += sink.check_expectations()
        if settings.strict:
            problems += strict_problems(sink)
    _write_dumps(request, sinks)
    _check(thread)
    if problems:
        pytest.fail("smtp_sink: " + "\nsmtp_sink: ".join(problems), pytrace=False)


def _write_dumps(request: pytest.FixtureRequest, sinks: list[SmtpSink]) -> None:
    root = request.config.getoption("smtp_sink_dump")
    if not root:
        return
    from .dumps import fresh_folder, write_dumps

    node = request.node
    if request.config.getoption("smtp_sink_dump_failed") and not node.stash.get(
        FAILED_KEY, False
    ):
        return
    folder = node.stash.get(DUMP_KEY, None)
    if folder is None:
        folder = node.stash[DUMP_KEY] = fresh_folder(root, node.nodeid)
    names = node.stash.get(NAMES_KEY, {})
    for sink in sinks:
        name = names.get(id(sink))
        write_dumps(folder / name if name else folder, sink.capture.everything)
