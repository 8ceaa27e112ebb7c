"""The pytest plugin: a session sink server, the smtp_sink fixture, markers and ini options.

One sink server runs per pytest session (per xdist worker) in a background trio loop, started
by the first test that asks for it. ``smtp_sink`` applies the test's marker over the ini
defaults for the duration of the test and hands out what the test's clients sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import re
import ssl
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ..core.config import SinkConfig, from_options
from ..core.errors import ConfigError
from ..core.options import CLI_ONLY_NAMES, LISTENER_NAMES, OPTIONS, PYTEST_NAMES, ini_help
from ..dump.writer import CREATE_NEW, FILE_MODE
from ..server.certs import TestCertificates
from ..server.listeners import Endpoint, ListenError
from .handle import SmtpSink
from .loop import SinkError, SinkThread

LOG = logging.getLogger("pytest_smtp_sink")
COMMAND_LOG = logging.getLogger("pytest_smtp_sink.commands")


# Captured messages live in memory: a runaway client should fail its test, not the machine.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
# In pytest the defaults model a modern MTA (DESIGN §7); TLS only when a test asks for it.
PYTEST_DEFAULTS: dict[str, Any] = {
    "max_message_size": DEFAULT_MAX_MESSAGE_SIZE,  # and SIZE announced
    "smtputf8": True,
    "chunking": True,
    "auth_mechanisms": ("PLAIN", "LOGIN", "CRAM-MD5"),
}

_HANDLE_KEY = pytest.StashKey[list[SmtpSink]]()
_LOG_LEVEL_KEY = pytest.StashKey[int]()


# ------------------------------------------------------------------- registration


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smtp-sink", "SMTP sink server (pytest-smtp-sink)")
    group.addoption(
        "--smtp-sink-dump",
        metavar="DIR",
        default=None,
        help="write every captured transaction in the smtp-sink dump format, "
        "one folder per test under DIR",
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
        "address of the session sink: host:port, [::1]:port or unix:/path "
        "(default 127.0.0.1:0, an ephemeral port)",
        default="127.0.0.1:0",
    )
    helps = {o.name: ini_help(o) for o in reversed(OPTIONS)}  # -4 before -6
    for name in PYTEST_NAMES:
        parser.addini(f"smtp_sink_{name}", helps[name])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "smtp_sink(**options): smtp-sink behaviour for this test, e.g. reject='RCPT', "
        "lmtp=True, delays={'DATA': 0.2}; names mirror the smtp-sink flags (see README)",
    )
    # Bad ini values are a usage error of the whole run, named by option.
    try:
        _ini_config(config)
    except ConfigError as exc:
        raise pytest.UsageError(f"smtp_sink ini option: {exc}") from None
    listen = _ini_listen(config)
    try:
        Endpoint.parse(listen)
    except ListenError as exc:
        raise pytest.UsageError(f"smtp_sink ini option: smtp_sink_listen: {exc}") from None
    if config.getoption("smtp_sink_verbose", False) and LOG.getEffectiveLevel() > logging.INFO:
        # Without this the INFO lines die at the root logger's WARNING level.
        config.stash[_LOG_LEVEL_KEY] = LOG.level
        LOG.setLevel(logging.INFO)


_SEED_KEY = pytest.StashKey[int]()


def session_seed(config: pytest.Config) -> int:
    """The run's seed: --smtp-sink-seed, else pytest-randomly's, else a new one."""
    seed = config.stash.get(_SEED_KEY, None)
    if seed is None:
        chosen = config.getoption("smtp_sink_seed", None)
        if chosen is None:
            randomly = getattr(config.option, "randomly_seed", None)
            chosen = randomly if isinstance(randomly, int) else random.randrange(1, 2**31)
        seed = config.stash[_SEED_KEY] = int(chosen)
    return seed


def pytest_report_header(config: pytest.Config) -> str:
    seed = session_seed(config)
    return f"smtp-sink: seed {seed} (--smtp-sink-seed={seed} gives the same faults again)"


def seed_of_test(config: pytest.Config, nodeid: str) -> int:
    """One test's seed, from the run's and the test's id: a test gets the same faults
    whichever tests run before it."""
    digest = hashlib.sha256(f"{session_seed(config)}:{nodeid}".encode()).digest()
    return int.from_bytes(digest[:4], "big") | 1


def is_random(cfg: SinkConfig) -> bool:
    """The configuration draws random numbers for faults (rule odds, -W dice)."""
    return any(r.odds is not None for r in cfg.rules) or any(o for _, o in cfg.delays.values())


def pytest_unconfigure(config: pytest.Config) -> None:
    level = config.stash.get(_LOG_LEVEL_KEY, None)
    if level is not None:
        LOG.setLevel(level)


def _ini_listen(config: pytest.Config) -> str:
    return str(config.getini("smtp_sink_listen") or "127.0.0.1:0").strip()


def _ini_options(config: pytest.Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in PYTEST_NAMES:
        value = config.getini(f"smtp_sink_{name}")
        if isinstance(value, str) and value.strip() != "":
            out[name] = value.strip()
    return out


_BASE_KEY = pytest.StashKey[SinkConfig]()


def _ini_config(config: pytest.Config) -> SinkConfig:
    """The ini defaults (and --smtp-sink-verbose) as a config, computed once per run."""
    cached = config.stash.get(_BASE_KEY, None)
    if cached is not None:
        return cached
    options = {**PYTEST_DEFAULTS, **_ini_options(config)}
    if config.getoption("smtp_sink_verbose", False):
        options.setdefault("verbose", True)
    try:
        base = from_options(options)
    except ConfigError as exc:
        name = exc.option or "?"
        raise ConfigError(f"smtp_sink_{name}: {exc}", option=exc.option) from None
    config.stash[_BASE_KEY] = base
    return base


# ------------------------------------------------------------------------ logging


def _log(level: str, text: str) -> None:
    LOG.log({"info": logging.INFO, "warning": logging.WARNING}.get(level, logging.ERROR), text)


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def smtp_sink_thread() -> Iterator[SinkThread]:
    """The background trio loop that hosts every sink of this session (or xdist worker)."""
    thread = SinkThread(_log)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()
    # Whatever went wrong after the last test looked is an error of the session's last test.
    _check(thread)


class _LazyCertificates:
    """The session's test CA, made on first use (trustme costs ~50 ms to import)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._certificates: TestCertificates | None = None

    def __call__(self) -> TestCertificates:
        if self._certificates is None:
            self._certificates = TestCertificates(self._factory.mktemp("smtp-sink-tls"))
        return self._certificates


@pytest.fixture(scope="session")
def _smtp_sink_lazy_certificates(tmp_path_factory: pytest.TempPathFactory) -> _LazyCertificates:
    return _LazyCertificates(tmp_path_factory)


@pytest.fixture(scope="session")
def smtp_sink_certificates(_smtp_sink_lazy_certificates: _LazyCertificates) -> TestCertificates:
    """The session's test CA (trustme) and the server certificate it signed, for
    ``localhost``, ``127.0.0.1``, ``::1`` and ``smtp-sink``: ``ca_file``,
    ``client_context()``."""
    return _smtp_sink_lazy_certificates()


@pytest.fixture(scope="session")
def smtp_sink_ssl_context(smtp_sink_certificates: TestCertificates) -> ssl.SSLContext:
    """The server side of TLS for the sinks that use it (``starttls``, ``implicit_tls``).
    Override this session fixture to serve a certificate of your own."""
    return smtp_sink_certificates.server_context()


def _tls_context(request: pytest.FixtureRequest, cfg: SinkConfig) -> ssl.SSLContext | None:
    """The TLS context a sink with ``cfg`` needs, if any (asked for only then)."""
    if not cfg.tls or cfg.tls_cert is not None:
        return None
    context: ssl.SSLContext = request.getfixturevalue("smtp_sink_ssl_context")
    return context


@pytest.fixture(scope="session")
def smtp_sink_server(
    request: pytest.FixtureRequest,
    smtp_sink_thread: SinkThread,
    pytestconfig: pytest.Config,
    _smtp_sink_lazy_certificates: _LazyCertificates,
) -> SmtpSink:
    """The session's sink server, listening on ini ``smtp_sink_listen``."""
    base = _ini_config(pytestconfig)
    return _start(
        smtp_sink_thread, base, _ini_listen(pytestconfig), "smtp_sink_listen",
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
    try:
        thread.check()
    except SinkError as exc:
        message = str(exc)
    else:
        return
    pytest.fail(message, pytrace=False)


def _marker_options(item: pytest.Item) -> dict[str, Any]:
    """Marker kwargs, farthest (module) first so that the closest (function) wins."""
    options: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers("smtp_sink"))):
        if mark.args:
            raise ConfigError(
                f"smtp_sink marker takes keyword arguments only, got {mark.args!r}",
                option="smtp_sink",
            )
        options.update(mark.kwargs)
    return options


def _build_config(
    base: SinkConfig, options: dict[str, Any]
) -> tuple[SinkConfig, str | None, bool]:
    """(config, listen address or None, needs a dedicated listener)."""
    options = dict(options)
    listen = options.pop("listen", None)
    for name in options:
        if name in CLI_ONLY_NAMES:
            raise ConfigError(
                f"{name} is a command-line option of smtp-sink; it cannot be used in a test",
                option=name,
            )
    if listen is not None:
        if not isinstance(listen, str):
            raise ConfigError(f"listen must be an address string, not {listen!r}", option="listen")
        try:
            Endpoint.parse(listen)
        except ListenError as exc:
            raise ConfigError(str(exc), option="listen") from None
    # No options: the very same object, so that the fixture can skip the config swap.
    cfg = from_options(options, base=base) if options else base
    dedicated = listen is not None or any(n in LISTENER_NAMES for n in options)
    return cfg, listen, dedicated


def _fail_config(exc: ConfigError) -> NoReturn:
    name = exc.option or "?"
    pytest.fail(f"@pytest.mark.smtp_sink: bad value for {name}: {exc}", pytrace=False)


@pytest.fixture
def smtp_sink(
    request: pytest.FixtureRequest,
    smtp_sink_server: SmtpSink,
    smtp_sink_thread: SinkThread,
    pytestconfig: pytest.Config,
    _smtp_sink_lazy_certificates: _LazyCertificates,
) -> Iterator[SmtpSink]:
    """The sink for this test, configured by its ``smtp_sink`` marker; capture cleared."""
    base = _ini_config(pytestconfig)
    error: ConfigError | None = None
    try:
        cfg, listen, dedicated = _build_config(base, _marker_options(request.node))
    except ConfigError as exc:
        error = exc
    if error is not None:  # outside the except block: the message is shown once
        _fail_config(error)
    seed = seed_of_test(pytestconfig, request.node.nodeid)
    if cfg.seed is None and is_random(cfg):
        cfg = cfg.replace(seed=seed)
    _check(smtp_sink_thread)
    ssl_context = _tls_context(request, cfg)
    if dedicated:
        sink = _start(
            smtp_sink_thread, cfg, listen, "@pytest.mark.smtp_sink", ssl_context,
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
        smtp_sink_thread.call(_set_config, sink, cfg)
    if cfg.rules:  # rules counted per sink count from 0 in every test
        smtp_sink_thread.call(sink.server.reset_rule_counters)
    sink.clear()
    sink.seed = seed
    _register(request, sink)
    try:
        yield sink
    finally:
        with contextlib.suppress(SinkError, OSError):  # reported by _after_test
            if sink.server.config is not base:
                smtp_sink_thread.call(_set_config, sink, base)
            smtp_sink_thread.restart_server(sink)  # after a stop() in the test
        _after_test(request, [sink], smtp_sink_thread)


def _set_config(sink: SmtpSink, cfg: SinkConfig) -> None:
    if sink.server.config is not cfg:
        sink.server.config = cfg


@pytest.fixture
def smtp_sink_factory(
    request: pytest.FixtureRequest,
    smtp_sink_thread: SinkThread,
    pytestconfig: pytest.Config,
    _smtp_sink_lazy_certificates: _LazyCertificates,
) -> Iterator[Callable[..., SmtpSink]]:
    """Start extra sinks for this test: ``backup = smtp_sink_factory(reject="RCPT")``.

    Options are the marker's (plus ``listen``); each sink gets its own port and capture and
    is stopped at the end of the test. A bad option raises ConfigError (a ValueError).
    """
    started: list[SmtpSink] = []
    base = _ini_config(pytestconfig)

    def factory(**options: Any) -> SmtpSink:
        try:
            cfg, listen, _ = _build_config(base, options)
        except ConfigError as exc:
            raise ConfigError(
                f"smtp_sink_factory: bad value for {exc.option}: {exc}", option=exc.option
            ) from None
        if listen is None:
            listen = "[::1]:0" if cfg.family == "inet6" else "127.0.0.1:0"
        sink = smtp_sink_thread.start_server(
            cfg, listen, ssl_context=_tls_context(request, cfg),
            certificates=_smtp_sink_lazy_certificates,
        )  # fmt: skip
        sink.server.command_log = COMMAND_LOG.info
        started.append(sink)
        _register(request, sink)
        return sink

    try:
        yield factory
    finally:
        for sink in started:
            smtp_sink_thread.stop_server(sink)
        _after_test(request, started, smtp_sink_thread, dump_suffix=True)


def _register(request: pytest.FixtureRequest, sink: SmtpSink) -> None:
    node = request.node
    node.stash.setdefault(_HANDLE_KEY, []).append(sink)


# ---------------------------------------------------------------- after each test


def _after_test(
    request: pytest.FixtureRequest,
    sinks: list[SmtpSink],
    thread: SinkThread,
    dump_suffix: bool = False,
) -> None:
    dump_dir = request.config.getoption("smtp_sink_dump")
    if dump_dir:
        handles = request.node.stash.get(_HANDLE_KEY, [])
        for sink in sinks:
            index = handles.index(sink) if sink in handles else 0
            folder = Path(dump_dir) / safe_name(request.node.nodeid)
            if dump_suffix or index:
                folder = folder / f"sink{index}"
            write_dumps(folder, sink)
    _check(thread)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(nodeid: str) -> str:
    """A folder name for a node id.

    ``tests/test_x.py::test_y[a-b]`` → ``tests_test_x.py_test_y_a-b``.
    """
    name = _UNSAFE.sub("_", nodeid).strip("._") or "test"
    return name[:200]


def write_dumps(folder: Path, sink: SmtpSink) -> None:
    """Each captured transaction as a -d style file named by its queue id."""
    txs = sink.transactions
    if not txs:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for tx in txs:
        path = folder / tx.queue_id
        n = 1
        while path.exists():
            path = folder / f"{tx.queue_id}.{n}"
            n += 1
        fd = os.open(path, CREATE_NEW, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(tx.render())


# ------------------------------------------------------------------ report section


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    handles = item.stash.get(_HANDLE_KEY, [])
    texts = [h.transcript for h in handles if h.sessions]
    if texts:
        report.sections.append(("Captured SMTP conversation", "\n".join(texts)))
