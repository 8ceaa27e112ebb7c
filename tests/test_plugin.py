"""The pytest plugin, exercised the way users run it: pytest projects run by ``pytester``.

Each ``pytester`` run costs about a second, so each project groups several checks; the inner
tests assert the behaviour, the outer test checks that they all passed (or failed as meant).
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
from support import HAVE_UNIX_SOCKETS, ipv6_loopback_available

from pytest_smtp_sink import parse_dump
from pytest_smtp_sink.plugin.dumps import safe_name

pytest_plugins = ["pytester"]

# A module every inner project can import: a small smtplib client.
MAILHELP = """
import smtplib
from email.message import EmailMessage


def make(subject="hello", sender="from@example.com", to=("to@example.com",), body="body"):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def send(address, subject="hello", sender="from@example.com", to=("to@example.com",)):
    host, port = address
    with smtplib.SMTP(host, port, timeout=10) as smtp:
        smtp.send_message(make(subject, sender, to), sender, list(to))


def ehlo(sink):
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
        code, text = smtp.ehlo("client.test")
        assert code == 250
        return text.decode().splitlines()
"""


# Plugins the subprocess runs do not need; loading them costs a second per process.
LEAN = ("-p", "no:benchmark", "-p", "no:hypothesispytest", "-p", "no:trio")


def project(pytester: pytest.Pytester, ini: str = "", **files: str) -> None:
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:randomly\n" + ini)
    pytester.makepyfile(mailhelp=MAILHELP, **{k: textwrap.dedent(v) for k, v in files.items()})


# --------------------------------------------------------------------- sync tests

SYNC_CONFTEST = """
import json, os, socket, threading
import pytest

PORTS = set()


@pytest.fixture(autouse=True)
def _remember_session_port(request):
    yield
    server = request.node.funcargs.get("smtp_sink_server")
    if server is not None:
        PORTS.add(server.port)


def pytest_unconfigure(config):
    # Session fixtures are finalized by now: no sink thread, no listening socket.
    threads = [t.name for t in threading.enumerate()
               if t is not threading.main_thread() and not t.daemon]
    refused = []
    for port in sorted(PORTS):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            refused.append(False)
        except ConnectionRefusedError:
            refused.append(True)
    with open(os.environ["LEAK_REPORT"], "w") as fh:
        json.dump({"threads": threads, "ports": sorted(PORTS), "refused": refused}, fh)
"""

SYNC_BASICS = """
import smtplib, threading, time
import pytest
from mailhelp import send, ehlo


def test_send_and_assert(smtp_sink):
    send(smtp_sink.address, subject="Welcome", to=("new@example.com",))
    # No waiting: the transaction is captured before the client gets the reply to ".".
    [tx] = smtp_sink.transactions
    assert tx.mail_from == "from@example.com"
    assert tx.rcpt_to == ["new@example.com"]
    assert tx.message["Subject"] == "Welcome"
    assert tx.message.get_content() == "body\\n"
    assert tx.client_proto == "ESMTP"
    assert tx.reply == "250 2.0.0 Ok"
    assert "by mx.test (smtp-sink)" in tx.received  # the ini default
    assert [m["Subject"] for m in smtp_sink.messages] == ["Welcome"]
    assert len(smtp_sink.sessions) == 1
    assert "from:<from@example.com>" in smtp_sink.transcript.lower()  # 3.13: "mail from:"
    assert smtp_sink.host == "127.0.0.1" and smtp_sink.address == (smtp_sink.host, smtp_sink.port)


def test_capture_is_per_test(smtp_sink):
    assert smtp_sink.transactions == [] and smtp_sink.sessions == []
    assert smtp_sink.config.hostname == "mx.test"
    assert ehlo(smtp_sink)[0] == "mx.test"


@pytest.mark.smtp_sink(reject="RCPT")
def test_reject_rcpt(smtp_sink):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        send(smtp_sink.address)
    assert info.value.recipients == {"to@example.com": (500, b"5.3.0 Error: command failed")}
    assert smtp_sink.transactions == []
    assert "PIPELINING" not in ehlo(smtp_sink)


def test_config_restored(smtp_sink):
    assert smtp_sink.config.reject == frozenset()
    send(smtp_sink.address)
    assert len(smtp_sink.transactions) == 1


@pytest.mark.smtp_sink(lmtp=True)
def test_lmtp(smtp_sink):
    # smtplib's LMTP.sendmail reads one reply to ".": one recipient only.
    with smtplib.LMTP(smtp_sink.host, smtp_sink.port, timeout=10) as lmtp:
        msg = b"Subject: l\\r\\n\\r\\nhi\\r\\n"
        refused = lmtp.sendmail("a@example.com", ["b@example.com"], msg)
        assert refused == {}
    [tx] = smtp_sink.transactions
    assert tx.client_proto == "LMTP"
    assert tx.reply == "250 2.2.0 Ok"
    assert tx.helo is not None


@pytest.mark.smtp_sink(delays={"DATA": 0.2})
def test_data_delay(smtp_sink):
    assert smtp_sink.config.data_delay == 0.2
    started = time.monotonic()
    send(smtp_sink.address)
    assert time.monotonic() - started >= 0.2
    assert len(smtp_sink.transactions) == 1


def test_wait_for_a_client_thread(smtp_sink):
    def client():
        for i in range(3):
            send(smtp_sink.address, subject=f"s{i}")

    thread = threading.Thread(target=client)
    thread.start()
    txs = smtp_sink.wait(count=3, timeout=10)
    thread.join()
    assert sorted(tx.message["Subject"] for tx in txs) == ["s0", "s1", "s2"]


def test_wait_times_out(smtp_sink):
    send(smtp_sink.address)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"expected 2 transaction\\(s\\), got 1 within 0.3 s"):
        smtp_sink.wait(count=2, timeout=0.3)
    assert time.monotonic() - started >= 0.3


def test_factory_primary_refuses_backup_accepts(smtp_sink_factory, smtp_sink):
    primary = smtp_sink_factory(reject="MAIL", hostname="mx1.test")
    backup = smtp_sink_factory(hostname="mx2.test")
    assert len({primary.port, backup.port, smtp_sink.port}) == 3

    def deliver(mxs):
        for mx in mxs:
            try:
                send(mx.address)
                return mx
            except smtplib.SMTPSenderRefused:
                continue
        raise AssertionError("nobody took the mail")

    assert deliver([primary, backup]) is backup
    assert primary.transactions == [] and len(primary.sessions) == 1
    [tx] = backup.transactions
    assert "by mx2.test (smtp-sink)" in tx.received
    assert smtp_sink.transactions == []
    with pytest.raises(ValueError, match="bad value for reject"):
        smtp_sink_factory(reject=42)
"""

SYNC_MARKERS = """
import pytest
from mailhelp import ehlo

pytestmark = pytest.mark.smtp_sink(hostname="module.test", dsn=False)


def test_module_marker(smtp_sink):
    lines = ehlo(smtp_sink)
    assert lines[0] == "module.test"
    assert "DSN" not in lines and "PIPELINING" in lines


@pytest.mark.smtp_sink(hostname="class.test", pipelining=False)
class TestClassMarker:
    def test_class_marker(self, smtp_sink):
        lines = ehlo(smtp_sink)
        assert lines[0] == "class.test"
        assert "PIPELINING" not in lines and "DSN" not in lines

    @pytest.mark.smtp_sink(hostname="function.test")
    def test_function_marker_wins(self, smtp_sink):
        lines = ehlo(smtp_sink)
        assert lines[0] == "function.test"
        assert "PIPELINING" not in lines and "DSN" not in lines
"""

SYNC_CONNECTIONS = """
import os, smtplib, socket
import pytest
from mailhelp import send, ehlo

SOCK = {sock!r}
IPV6 = {ipv6!r}
UNIX = hasattr(socket, "AF_UNIX")


@pytest.fixture(scope="module")
def early_connection(smtp_sink_server):
    smtp = smtplib.SMTP(smtp_sink_server.host, smtp_sink_server.port, timeout=10)
    smtp.ehlo("early.test")
    yield smtp
    smtp.close()


def test_markers_restored_before(smtp_sink):
    lines = ehlo(smtp_sink)
    assert lines[0] == "mx.test" and "DSN" in lines and "PIPELINING" in lines


@pytest.mark.smtp_sink(reject="MAIL")
def test_marker_applies_to_an_open_connection(early_connection, smtp_sink):
    assert early_connection.mail("a@example.com")[0] == 500
    assert early_connection.rset()[0] == 250


def test_and_is_lifted_after_the_test(early_connection, smtp_sink):
    assert early_connection.mail("a@example.com")[0] == 250
    assert early_connection.rset()[0] == 250


@pytest.mark.skipif(not UNIX, reason="no AF_UNIX")
@pytest.mark.smtp_sink(listen="unix:" + SOCK, lmtp=True)
def test_unix_listener(smtp_sink, smtp_sink_server):
    assert smtp_sink.address == SOCK and smtp_sink.path == SOCK
    with smtplib.LMTP(SOCK, timeout=10) as lmtp:
        lmtp.sendmail("a@example.com", ["b@example.com"], b"Subject: u\\r\\n\\r\\nx\\r\\n")
    [tx] = smtp_sink.transactions
    assert tx.client_addr == "local" and tx.client_proto == "LMTP"
    assert smtp_sink_server.config.lmtp is False  # the session server is untouched


def test_unix_socket_removed_after_the_test():
    assert not os.path.exists(SOCK)


@pytest.mark.skipif(not IPV6, reason="no ::1")
@pytest.mark.smtp_sink(family="inet6")
def test_inet6_listener(smtp_sink, smtp_sink_server):
    assert smtp_sink.host == "::1" and smtp_sink.port != smtp_sink_server.port
    send(smtp_sink.address)
    [tx] = smtp_sink.transactions
    assert tx.client_addr == "ipv6:::1"


@pytest.mark.smtp_sink(max_connections=1)
def test_max_connections_listener(smtp_sink, smtp_sink_server):
    assert smtp_sink.port != smtp_sink_server.port
    assert smtp_sink.config.max_connections == 1
    send(smtp_sink.address)
    assert len(smtp_sink.transactions) == 1
"""


def test_sync_tests(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = str(pytester.path / "sink.sock")
    assert len(sock) < 100  # sun_path
    ipv6 = ipv6_loopback_available()
    project(
        pytester,
        ini="smtp_sink_hostname = mx.test\n",
        conftest=SYNC_CONFTEST,
        test_basics=SYNC_BASICS,
        test_markers=SYNC_MARKERS,
        test_connections=SYNC_CONNECTIONS.format(sock=sock, ipv6=ipv6),
    )
    report = pytester.path / "leaks.json"
    monkeypatch.setenv("LEAK_REPORT", str(report))
    result = pytester.runpytest_subprocess("-rs", *LEAN, timeout=120)
    skipped = (not ipv6) + (not HAVE_UNIX_SOCKETS)
    result.assert_outcomes(passed=19 - skipped, skipped=skipped)
    leaks = json.loads(report.read_text())
    assert leaks["threads"] == []
    assert len(leaks["ports"]) == 1  # one session server for the whole run
    assert leaks["refused"] == [True]


# --------------------------------------------------------- dumps, reports, errors

REPORTS = """
import smtplib
import pytest
from mailhelp import send


def test_dumped(smtp_sink):
    send(smtp_sink.address, subject="one")
    send(smtp_sink.address, subject="two", to=("x@example.com", "y@example.com"))


@pytest.mark.parametrize("n", ["a/b c"])
def test_dumped_factory(smtp_sink_factory, n):
    first, second = smtp_sink_factory(), smtp_sink_factory(lmtp=True)
    send(first.address, subject="first")
    with smtplib.LMTP(second.host, second.port) as lmtp:
        lmtp.sendmail("l@example.com", ["m@example.com"], b"Subject: second\\r\\n\\r\\nx\\r\\n")


def test_failing_shows_conversation(smtp_sink):
    send(smtp_sink.address, subject="shown in the report")
    assert smtp_sink.transactions == []


def test_passing_shows_nothing(smtp_sink):
    send(smtp_sink.address, subject="never shown")


@pytest.mark.smtp_sink(reject=42)
def test_bad_marker_value(smtp_sink):
    pass


@pytest.mark.smtp_sink(rejct="RCPT")
def test_misspelt_marker(smtp_sink):
    pass


@pytest.mark.smtp_sink(family="inet7")
def test_bad_family(smtp_sink):
    pass


@pytest.mark.smtp_sink(listen="unix:/nonexistent-dir/x.sock")
def test_cannot_listen(smtp_sink):
    pass


@pytest.mark.smtp_sink(dump_template="/dev/null/cannot/")
def test_dump_write_error(smtp_sink):
    with pytest.raises(smtplib.SMTPDataError) as info:
        send(smtp_sink.address)
    assert info.value.smtp_code == 451


def test_server_crash(smtp_sink, monkeypatch):
    def boom(self, data):
        raise RuntimeError("boom inside the protocol")

    monkeypatch.setattr("pytest_smtp_sink.core.protocol.SinkProtocol.receive", boom)
    with pytest.raises((smtplib.SMTPException, OSError)):
        send(smtp_sink.address)


def test_after_crash_the_server_serves_again(smtp_sink):
    send(smtp_sink.address, subject="after the crash")
    assert len(smtp_sink.transactions) == 1
"""


def test_dumps_reports_and_errors(pytester: pytest.Pytester) -> None:
    project(pytester, test_reports=REPORTS)
    dump = pytester.path / "dumps"
    result = pytester.runpytest("--smtp-sink-dump", str(dump), "--smtp-sink-verbose")
    result.assert_outcomes(passed=6, failed=1, errors=6)
    out = result.stdout.str()

    # --smtp-sink-dump: one folder per test, -d files that parse back
    txs = parse_dump(dump / safe_name("test_reports.py::test_dumped"))
    assert sorted(tx.message["Subject"] for tx in txs) == ["one", "two"]
    two = next(tx for tx in txs if tx.message["Subject"] == "two")
    assert two.rcpt_to == ["x@example.com", "y@example.com"]
    assert two.mail_from == "from@example.com"
    assert all(tx.client_addr == "127.0.0.1" for tx in txs)
    factory_dir = dump / safe_name("test_reports.py::test_dumped_factory[a/b c]")
    assert factory_dir.name == "test_reports.py_test_dumped_factory_a_b_c"
    [first] = parse_dump(factory_dir / "sink0")
    [second] = parse_dump(factory_dir / "sink1")
    assert first.message["Subject"] == "first"
    assert (second.client_proto, second.rcpt_to) == ("LMTP", ["m@example.com"])
    assert sorted(p.name for p in dump.iterdir()) == sorted(
        safe_name(f"test_reports.py::{name}")
        for name in (
            "test_dumped",
            "test_dumped_factory[a/b c]",
            "test_failing_shows_conversation",
            "test_passing_shows_nothing",
            "test_after_crash_the_server_serves_again",
        )
    )

    # the report section of the failed test, with --smtp-sink-verbose's log lines
    section = out[out.index("_ test_failing_shows_conversation _") :]
    section = section[: section.index("short test summary")]
    assert "Captured SMTP conversation" in section
    assert "C: b'Subject: shown in the report\\r\\n'" in section
    assert "S: b'250 2.0.0 Ok\\r\\n'" in section
    assert "connect (AF_INET 127.0.0.1)" in section
    assert "never shown" not in out

    # bad markers: the test fails naming the option, with no traceback
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_bad_marker_value*",
            "@pytest.mark.smtp_sink: bad value for reject: reject must be a command list, not 42",
            "*ERROR at setup of test_misspelt_marker*",
            "@pytest.mark.smtp_sink: unknown option rejct (did you mean reject*",
            "*ERROR at setup of test_bad_family*",
            "@pytest.mark.smtp_sink: bad value for family: *inet7*",
            "*ERROR at setup of test_cannot_listen*",
            "@pytest.mark.smtp_sink: cannot listen on unix:/nonexistent-dir/x.sock: *",
        ]
    )
    setup_errors = out[out.index("ERROR at setup of test_bad_marker_value") :]
    setup_errors = setup_errors[: setup_errors.index("ERROR at teardown")]
    # Log records of --smtp-sink-verbose (e.g. a late "disconnect" of an earlier test's
    # connection, "INFO pytest_smtp_sink:__init__.py:139 disconnect") name the plugin's
    # module too; they are not traceback frames.
    setup_errors = "\n".join(
        line
        for line in setup_errors.splitlines()
        if not re.match(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+:\S+\.py:\d+ ", line)
    )
    assert "Traceback" not in setup_errors and "config.py" not in setup_errors
    assert "__init__.py" not in setup_errors and "settings.py" not in setup_errors

    # a crash inside the server: an error of the test it happened in, then served again
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_dump_write_error*",
            "smtp-sink server error: cannot write dump for *: *Not a directory*",
            "*ERROR at teardown of test_server_crash*",
            "smtp-sink server error: session crashed: RuntimeError: boom inside the protocol",
        ]
    )
    assert (
        "test_after_crash_the_server_serves_again"
        not in result.stdout.str().split("short test summary info")[-1]
    )


def test_bad_ini_values_are_usage_errors(pytester: pytest.Pytester) -> None:
    project(pytester, ini="smtp_sink_timeout = soon\n", test_x="def test_x(): pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*smtp_sink ini option: smtp_sink_timeout: bad timeout: soon*"])
    assert "Traceback" not in result.stderr.str()

    project(pytester, ini="smtp_sink_listen = unix:\n", test_x="def test_x(): pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*smtp_sink_listen: chmod socket : No such file or directory (unix: needs a socket path)"]
    )


# ----------------------------------------------------------------- trio, asyncio

TRIO_TESTS = """
import smtplib
import pytest
import trio
from mailhelp import send
from pytest_smtp_sink import open_sink

MAIL = [b"EHLO trio.test\\r\\n", b"MAIL FROM:<t@example.com>\\r\\n",
        b"RCPT TO:<r@example.com>\\r\\n", b"DATA\\r\\n",
        b"Subject: trio\\r\\n\\r\\nhi\\r\\n.\\r\\n", b"QUIT\\r\\n"]


async def trio_client(address):
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        received = b""
        for line in MAIL:
            await stream.send_all(line)
        while not received.endswith(b"221 Bye\\r\\n"):
            chunk = await stream.receive_some()
            assert chunk
            received += chunk
    return received


@pytest.mark.trio
@pytest.mark.smtp_sink(lmtp=False, hostname="trio.sink")
async def test_wait_async_does_not_block_the_loop(smtp_sink):
    # The client runs in this very loop, after wait_async has started waiting.
    async with trio.open_nursery() as nursery:
        waited = []

        async def waiter():
            waited.extend(await smtp_sink.wait_async(count=1, timeout=10))

        nursery.start_soon(waiter)
        await trio.sleep(0)
        nursery.start_soon(trio_client, smtp_sink.address)
    [tx] = waited
    assert tx.message["Subject"] == "trio" and tx.helo == "trio.test"
    assert "by trio.sink (smtp-sink)" in tx.received


@pytest.mark.trio
async def test_smtplib_in_a_worker_thread(smtp_sink):
    await trio.to_thread.run_sync(send, smtp_sink.address)
    [tx] = await smtp_sink.wait_async()
    assert tx.rcpt_to == ["to@example.com"]


@pytest.mark.trio
async def test_wait_for_async_new(smtp_sink):
    await trio.to_thread.run_sync(send, smtp_sink.address)
    [first] = await smtp_sink.wait_for_async()
    await trio.to_thread.run_sync(send, smtp_sink.address)  # before the wait: still new
    [second] = await smtp_sink.wait_for_async(new=True)
    assert second is not first and second is smtp_sink.transactions[1]
    with pytest.raises(TimeoutError, match="expected 1 new transaction"):
        await smtp_sink.wait_for_async(new=True, timeout=0.1)


@pytest.mark.trio
async def test_wait_async_times_out(smtp_sink):
    with trio.fail_after(5):
        with pytest.raises(TimeoutError, match=r"expected 1 transaction\\(s\\), got 0 within 0.2"):
            await smtp_sink.wait_async(count=1, timeout=0.2)


@pytest.mark.trio
async def test_open_sink(smtp_sink_server):
    async with open_sink(hostname="own.test", lmtp=True) as sink:
        assert sink.port != smtp_sink_server.port
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio_client, sink.address)
            [tx] = await sink.wait_async(count=1, timeout=10)
        assert tx.client_proto == "LMTP" and "by own.test (smtp-sink)" in tx.received
        address = sink.address
    with pytest.raises(OSError):
        await trio.open_tcp_stream(*address)
"""

ASYNCIO_TESTS = """
import asyncio
import pytest


async def asyncio_client(address, subject):
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"HELO aio.test\\r\\nMAIL FROM:<a@example.com>\\r\\nRCPT TO:<b@example.com>\\r\\n"
                 b"DATA\\r\\n")
    writer.write(b"Subject: " + subject.encode() + b"\\r\\n\\r\\nx\\r\\n.\\r\\nQUIT\\r\\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


def test_asyncio_wait_async(smtp_sink):
    async def main():
        waiter = asyncio.ensure_future(smtp_sink.wait_async(count=2, timeout=10))
        await asyncio.sleep(0)
        assert not waiter.done()
        replies = await asyncio.gather(
            asyncio_client(smtp_sink.address, "a1"), asyncio_client(smtp_sink.address, "a2")
        )
        assert all(r.endswith(b"221 Bye\\r\\n") for r in replies)
        return await waiter

    txs = asyncio.run(main())
    assert sorted(tx.message["Subject"] for tx in txs) == ["a1", "a2"]


def test_asyncio_wait_async_times_out(smtp_sink):
    async def main():
        with pytest.raises(TimeoutError, match="got 0 within 0.2 s"):
            await smtp_sink.wait_async(timeout=0.2)

    asyncio.run(main())
"""


def test_trio_and_asyncio_tests(pytester: pytest.Pytester) -> None:
    project(pytester, test_trio=TRIO_TESTS, test_aio=ASYNCIO_TESTS)
    result = pytester.runpytest()
    result.assert_outcomes(passed=7)


# ------------------------------------------------------------------------ xdist

XDIST_TESTS = """
import json, os
import pytest
from mailhelp import send


@pytest.mark.parametrize("n", range(4))
def test_each_worker_has_its_own_sink(smtp_sink, n):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    send(smtp_sink.address, subject=f"{worker}-{n}")
    [tx] = smtp_sink.transactions
    assert tx.message["Subject"] == f"{worker}-{n}"
    with open(os.path.join(os.environ["XDIST_REPORT"], f"{worker}-{n}"), "w") as fh:
        json.dump(smtp_sink.port, fh)
"""


def test_xdist_workers_get_their_own_servers(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(pytester, test_x=XDIST_TESTS)
    out = pytester.mkdir("ports")
    monkeypatch.setenv("XDIST_REPORT", str(out))
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "each", *LEAN, timeout=120)
    result.assert_outcomes(passed=8)
    ports: dict[str, set[int]] = {}
    for f in out.iterdir():
        ports.setdefault(f.name.split("-")[0], set()).add(json.loads(f.read_text()))
    assert sorted(ports) == ["gw0", "gw1"]
    assert all(len(p) == 1 for p in ports.values())  # one server per worker
    assert ports["gw0"] != ports["gw1"]


def test_plugin_is_registered(pytester: pytest.Pytester) -> None:
    project(pytester)
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--smtp-sink-dump=DIR*", "*--smtp-sink-verbose*"])
    result.stdout.fnmatch_lines(["*smtp_sink_listen*", "*smtp_sink_hostname*"])
    assert sys.modules["pytest_smtp_sink.plugin"].__name__ == "pytest_smtp_sink.plugin"
    assert Path(sys.modules["pytest_smtp_sink.plugin"].__file__ or "").parent.name == "plugin"
