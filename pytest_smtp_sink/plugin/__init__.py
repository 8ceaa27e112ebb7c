"""The pytest plugin: a session sink server, the smtp_sink fixture, markers and ini options.

One sink server runs per pytest session (per xdist worker) in a background trio loop, started
by the first test that asks for it. ``smtp_sink`` applies the test's marker over the ini
defaults for the duration of the test and hands out what the test's clients sent.

Installed, the plugin is loaded by every pytest run, and pytest compiles it with assertion
rewriting each time bytecode is not cached: so this module holds only the hooks and thin
fixtures, and imports only pytest and light modules of its own (``ini_help``, generated from
the option table; ``keys``; ``seeds``). The options' converters come with an ini value or a
fixture, the server, trio and TLS when a fixture is used (``fixtures``).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .ini_help import INI_HELP
from .keys import FAILED_KEY, HANDLE_KEY, LOG_LEVEL_KEY, SETTINGS_KEY
from .seeds import session_seed

if TYPE_CHECKING:  # imported where used: a run that uses no sink never loads them
    import ssl

    from ..server.certs import TestCertificates
    from .fixtures import LazyCertificates
    from .handle import SmtpSink, SmtpSinkFactory
    from .loop import SinkThread

LOG = logging.getLogger("pytest_smtp_sink")


class SmtpSinkWarning(pytest.PytestWarning):
    """A marker or option of pytest-smtp-sink that has no effect."""


# ------------------------------------------------------------------- registration


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smtp-sink", "SMTP sink server (pytest-smtp-sink)")
    group.addoption(
        "--smtp-sink-dump",
        metavar="DIR",
        default=None,
        help="write every test's transactions in the smtp-sink dump format, one folder per "
        "test under DIR (replaced by each run), files in the order the mail came",
    )
    group.addoption(
        "--smtp-sink-dump-failed",
        action="store_true",
        default=False,
        help="with --smtp-sink-dump: keep the dumps of failed tests only",
    )
    group.addoption(
        "--smtp-sink-seed",
        metavar="N",
        type=int,
        default=None,
        help="seed of the sinks' random faults (rules with odds, -W dice): the same seed "
        "gives the same faults; default: pytest-randomly's seed, else a new one (printed "
        "in the header)",
    )
    group.addoption(
        "--smtp-sink-verbose",
        action="store_true",
        default=False,
        help="log every SMTP command the sink receives (logger 'pytest_smtp_sink')",
    )
    parser.addini(
        "smtp_sink_listen",
        "address of the session sink: host:port, [::1]:port or unix:/path (default "
        "127.0.0.1:0, an ephemeral port); per xdist worker: {worker} is its number, a port "
        "N+ is N plus that number",
        default="127.0.0.1:0",
    )
    for name, help_text in INI_HELP:
        parser.addini(f"smtp_sink_{name}", help_text)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "smtp_sink(**options): smtp-sink behaviour for this test, e.g. reject='RCPT', "
        "lmtp=True, delays={'DATA': 0.2}; names mirror the smtp-sink flags (see README)",
    )
    if _ini_given(config):  # the converters are loaded only for a run that sets options
        from .settings import check_ini

        check_ini(config)
    if config.getoption("smtp_sink_verbose", False) and LOG.getEffectiveLevel() > logging.INFO:
        # Without this the INFO lines die at the root logger's WARNING level.
        config.stash[LOG_LEVEL_KEY] = LOG.level
        LOG.setLevel(logging.INFO)


def _ini_given(config: pytest.Config) -> bool:
    names = ["listen", *(name for name, _ in INI_HELP)]
    return any(str(config.getini(f"smtp_sink_{name}")).strip() not in ("", "127.0.0.1:0")
               for name in names)  # fmt: skip


def pytest_unconfigure(config: pytest.Config) -> None:
    level = config.stash.get(LOG_LEVEL_KEY, None)
    if level is not None:
        LOG.setLevel(level)


def pytest_report_header(config: pytest.Config) -> str:
    seed = session_seed(config)
    return f"smtp-sink: seed {seed} (--smtp-sink-seed={seed} gives the same faults again)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("smtp_sink") is None:
            continue
        if "smtp_sink" not in getattr(item, "fixturenames", ()):
            item.warn(
                SmtpSinkWarning(
                    "@pytest.mark.smtp_sink has no effect on a test that does not use the"
                    " smtp_sink fixture (smtp_sink_factory takes its options as arguments)"
                )
            )


# ---------------------------------------------------------------------- fixtures
# Each one hands over to plugin/fixtures.py, imported when a test first uses a sink.


@pytest.fixture(scope="session")
def smtp_sink_thread() -> Iterator[SinkThread]:
    """The background trio loop that hosts every sink of this session (or xdist worker)."""
    from .fixtures import session_thread

    yield from session_thread()


@pytest.fixture(scope="session")
def _smtp_sink_lazy_certificates(tmp_path_factory: pytest.TempPathFactory) -> LazyCertificates:
    from .fixtures import LazyCertificates

    return LazyCertificates(tmp_path_factory)


@pytest.fixture(scope="session")
def smtp_sink_certificates(_smtp_sink_lazy_certificates: LazyCertificates) -> TestCertificates:
    """The session's test CA (trustme) and the server certificate it signed, for
    ``localhost``, ``127.0.0.1``, ``::1`` and ``smtp-sink``: ``ca_file``,
    ``client_context()``."""
    return _smtp_sink_lazy_certificates()


@pytest.fixture(scope="session")
def smtp_sink_ssl_context(smtp_sink_certificates: TestCertificates) -> ssl.SSLContext:
    """The server side of TLS for the sinks that use it (``starttls``, ``implicit_tls``).
    Override this session fixture to serve a certificate of your own."""
    return smtp_sink_certificates.server_context()


@pytest.fixture(scope="session")
def smtp_sink_server(
    request: pytest.FixtureRequest,
    smtp_sink_thread: SinkThread,
    pytestconfig: pytest.Config,
    _smtp_sink_lazy_certificates: LazyCertificates,
) -> SmtpSink:
    """The session's sink server, listening on ini ``smtp_sink_listen``. Session- and
    module-scoped fixtures take its address (``host``, ``port``); tests assert on it
    through ``smtp_sink``, which is this sink whenever no dedicated listener is asked for."""
    from .fixtures import session_server

    return session_server(request, smtp_sink_thread, pytestconfig, _smtp_sink_lazy_certificates)


@pytest.fixture
def smtp_sink(
    request: pytest.FixtureRequest,
    smtp_sink_server: SmtpSink,
    smtp_sink_thread: SinkThread,
    pytestconfig: pytest.Config,
    _smtp_sink_lazy_certificates: LazyCertificates,
) -> Iterator[SmtpSink]:
    """The sink for this test, configured by its ``smtp_sink`` marker; capture cleared."""
    from .fixtures import sink_for_test

    yield from sink_for_test(
        request, smtp_sink_server, smtp_sink_thread, pytestconfig, _smtp_sink_lazy_certificates
    )


@pytest.fixture
def smtp_sink_factory(
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
    from .fixtures import factory_for_test

    yield from factory_for_test(
        request, smtp_sink_thread, pytestconfig, _smtp_sink_lazy_certificates
    )


# ------------------------------------------------------------------ report section


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call":
        return
    item.stash[FAILED_KEY] = report.failed
    if not report.failed:
        return
    sinks = item.stash.get(HANDLE_KEY, [])
    if not sinks:
        return
    from .report import conversation, nobody_came
    from .settings import TestSettings

    settings = item.stash.get(SETTINGS_KEY, None) or TestSettings()
    text = conversation(sinks, settings)
    if text:
        report.sections.append(("Captured SMTP conversation", text))
    hint = nobody_came(sinks)
    if hint:
        report.sections.append(("smtp-sink", hint))
