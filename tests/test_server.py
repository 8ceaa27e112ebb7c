"""Integration tests of SinkServer over real sockets (pytest-trio).

Timings are kept short (0.2-0.5 s) and asserted loosely: lower bounds are what the option
promises, upper bounds only catch "the delay did not happen at all / happened twice".
"""

from __future__ import annotations

import os
import random
import smtplib
import socket
import stat
import struct
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import support
import trio
from support import (
    Log,
    config,
    ipv6_loopback_available,
    needs_linux,
    needs_unix_sockets,
    serving,
)

from pytest_smtp_sink import ListenError
from pytest_smtp_sink.core.config import SinkConfig
from pytest_smtp_sink.dump.transaction import Transaction
from pytest_smtp_sink.server.server import SinkServer
from pytest_smtp_sink.server.transport import DONTWAIT

pytestmark = [pytest.mark.trio, pytest.mark.drivers]

LIMIT = 10.0  # seconds: the most any single wait in these tests may take

MESSAGE = b"HELO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
BODY = b"Subject: hi\r\n\r\nbody\r\n.\r\n"


HAVE_IPV6 = ipv6_loopback_available()
needs_ipv6 = pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback on this host")


class Conn:
    """A raw client: send bytes, read whole reply lines, wait for EOF."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = b""

    @classmethod
    async def tcp(cls, host: str, port: int) -> Conn:
        return cls(await trio.open_tcp_stream(host, port))

    @classmethod
    async def unix(cls, path: str) -> Conn:
        return cls(await trio.open_unix_socket(path))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, ConnectionResetError):
            data = b""
        self.buf += data
        return bool(data)

    async def lines(self, n: int = 1) -> list[bytes]:
        """The next ``n`` reply lines (CRLF stripped)."""
        with trio.fail_after(LIMIT):
            while self.buf.count(b"\r\n") < n:
                if not await self._fill():
                    raise EOFError(f"EOF after {self.buf!r}, wanted {n} lines")
        out = []
        for _ in range(n):
            line, self.buf = self.buf.split(b"\r\n", 1)
            out.append(line)
        return out

    async def line(self) -> bytes:
        return (await self.lines(1))[0]

    async def eof(self) -> bytes:
        """Read to EOF (a reset counts as EOF); returns everything that came first."""
        with trio.fail_after(LIMIT):
            while await self._fill():
                pass
        rest, self.buf = self.buf, b""
        return rest

    async def nothing_within(self, seconds: float) -> bool:
        """True when no byte (and no EOF) arrives within ``seconds``."""
        if self.buf:
            return False
        with trio.move_on_after(seconds):
            await self._fill()
            return False
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


async def tcp(server_addr: Any) -> Conn:
    host, port = server_addr[0], server_addr[1]
    return await Conn.tcp(host, port)


def send_with_smtplib(
    host: str, port: int, *, subject: str = "hi", check: Callable[[], None] | None = None
) -> dict[str, tuple[int, bytes]]:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg["To"] = "b@example.com, c@example.com"
    msg["Subject"] = subject
    msg.set_content("hello\n.leading dot\n")
    with smtplib.SMTP(host, port, timeout=LIMIT) as smtp:
        refused = smtp.send_message(msg)
        if check is not None:
            check()
    return refused


async def send_message(conn: Conn, body: bytes = BODY) -> bytes:
    """HELO/MAIL/RCPT/DATA, the body, and the reply to '.'."""
    await conn.send(MESSAGE)
    assert await conn.lines(4) == [
        b"250 smtp-sink",
        b"250 2.1.0 Ok",
        b"250 2.1.5 Ok",
        b"354 End data with <CR><LF>.<CR><LF>",
    ]
    await conn.send(body)
    return await conn.line()


# --------------------------------------------------------------------------- listeners


async def test_tcp_v4_with_smtplib() -> None:
    seen: list[Transaction] = []
    async with serving() as (server, addrs):
        server.subscribe(seen.append)
        [(host, port)] = addrs
        assert host == "127.0.0.1" and port > 0
        assert server.addresses == addrs
        refused = await trio.to_thread.run_sync(send_with_smtplib, host, port)
        assert refused == {}
    [tx] = seen
    assert tx.client_addr == "127.0.0.1"
    assert tx.client_proto == "ESMTP"
    assert tx.mail_from == "a@example.com"
    assert tx.rcpt_to == ["b@example.com", "c@example.com"]
    assert tx.message["Subject"] == "hi"
    assert b".leading dot" in tx.message_bytes


async def test_greeting_and_quit_raw() -> None:
    async with serving() as (_server, [addr]):
        conn = await tcp(addr)
        assert await conn.line() == b"220 smtp-sink ESMTP"
        await conn.send(b"NOOP\r\nQUIT\r\n")
        assert await conn.lines(2) == [b"250 2.0.0 Ok", b"221 Bye"]
        assert await conn.eof() == b""


@needs_ipv6
async def test_tcp_v6() -> None:
    seen: list[Transaction] = []
    async with serving(address="[::1]:0") as (server, addrs):
        server.subscribe(seen.append)
        [(host, port)] = addrs
        assert host == "::1"
        conn = await Conn.tcp("::1", port)
        assert await conn.line() == b"220 smtp-sink ESMTP"
        assert await send_message(conn) == b"250 2.0.0 Ok"
    assert seen[0].client_addr == "ipv6:::1"


@pytest.mark.parametrize("address", ["localhost:0", ":0"])
async def test_both_families_share_the_port(address: str) -> None:
    if address == "localhost:0":
        families = {info[0] for info in socket.getaddrinfo("localhost", 0, 0, socket.SOCK_STREAM)}
        if socket.AF_INET6 not in families or socket.AF_INET not in families:
            pytest.skip("localhost does not resolve to both IPv4 and IPv6 here")
    if not HAVE_IPV6:
        pytest.skip("no IPv6 loopback on this host")
    async with serving(address=address) as (_server, addrs):
        assert len(addrs) == 2, addrs
        ports = {port for _host, port in addrs}
        assert len(ports) == 1, addrs
        [port] = ports
        assert port != 0
        for host in ("127.0.0.1", "::1"):
            conn = await Conn.tcp(host, port)
            assert await conn.line() == b"220 smtp-sink ESMTP"
            await conn.aclose()


@needs_unix_sockets
async def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "sink.sock"
    path.write_text("stale file in the way\n")
    seen: list[Transaction] = []
    async with serving(address=f"unix:{path}") as (server, addrs):
        server.subscribe(seen.append)
        assert addrs == [str(path)]
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o666
        conn = await Conn.unix(str(path))
        assert await conn.line() == b"220 smtp-sink ESMTP"
        assert await send_message(conn) == b"250 2.0.0 Ok"
        await conn.aclose()
    assert not path.exists()
    assert seen[0].client_addr == "local"


@needs_unix_sockets
async def test_unix_socket_verbose_log(tmp_path: Path) -> None:
    log = Log()
    path = tmp_path / "v.sock"
    async with serving(config(verbose=True), f"unix:{path}", log=log):
        conn = await Conn.unix(str(path))
        await conn.line()
        await conn.send(b"QUIT\r\n")
        await conn.eof()
    assert "connect (AF_LOCAL local)" in log.texts("info")


async def test_port_in_use_is_a_listen_error() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        server = SinkServer(SinkConfig(), f"127.0.0.1:{port}", log=Log())
        with pytest.raises(ListenError) as info:
            await server.run()
        assert str(info.value) == f"bind 127.0.0.1 port {port}: Address already in use"


@needs_unix_sockets
async def test_unix_path_in_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "sink.sock"
    server = SinkServer(SinkConfig(), f"unix:{path}", log=Log())
    with pytest.raises(ListenError) as info:
        await server.run()
    assert str(info.value) == f"bind: {path}: No such file or directory"


@pytest.mark.skipif(support.HAVE_UNIX_SOCKETS, reason="AF_UNIX exists here")
async def test_unix_listener_without_af_unix_is_a_listen_error(tmp_path: Path) -> None:
    server = SinkServer(SinkConfig(), f"unix:{tmp_path}/s.sock", log=Log())
    with pytest.raises(ListenError) as info:
        await server.run()
    assert str(info.value) == f"unix:{tmp_path}/s.sock: unix-domain sockets are not supported here"


@needs_linux
async def test_cancellation_leaves_no_socket_open() -> None:
    def open_sockets() -> set[str]:
        out = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:"):
                out.add(target)
        return out

    before = open_sockets()
    async with serving() as (server, [addr]):
        listeners = server.listeners
        assert listeners and all(s.fileno() >= 0 for s in listeners)
        conn = await tcp(addr)
        assert await conn.line() == b"220 smtp-sink ESMTP"
        await conn.send(MESSAGE)  # a session in the middle of a transaction
        await conn.lines(4)
        assert len(open_sockets() - before) >= 3  # listener, server side, client side
    assert all(s.fileno() == -1 for s in listeners)
    assert await conn.eof() == b""  # the server side was closed
    await conn.aclose()
    assert open_sockets() - before == set()


# ---------------------------------------------------------------------- concurrency


async def test_max_connections() -> None:
    async with serving(config(max_connections=1)) as (_server, [addr]):
        first = await tcp(addr)
        assert await first.line() == b"220 smtp-sink ESMTP"
        second = await tcp(addr)  # the kernel completes the handshake (backlog)
        assert await second.nothing_within(0.3)
        await first.send(b"QUIT\r\n")
        assert await first.line() == b"221 Bye"
        assert await second.line() == b"220 smtp-sink ESMTP"


# ----------------------------------------------------------------------- timeouts


async def test_idle_timeout_closes_silently() -> None:
    log = Log()
    async with serving(config(timeout=0.3), log=log) as (_server, [addr]):
        conn = await tcp(addr)
        assert await conn.line() == b"220 smtp-sink ESMTP"
        start = trio.current_time()
        await conn.send(b"NOOP\r\nNO")  # a reply, then a partial line
        assert await conn.line() == b"250 2.0.0 Ok"
        assert await conn.eof() == b""  # no 421
        elapsed = trio.current_time() - start
    assert 0.25 <= elapsed < 5
    assert ("warning", "read timeout") in log.records


async def test_idle_timer_restarts_on_every_read() -> None:
    async with serving(config(timeout=0.5)) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        start = trio.current_time()
        for _ in range(5):  # 5 x 0.15 s of activity: longer than the timeout in total
            assert await conn.nothing_within(0.15)
            await conn.send(b"NOOP\r\n")
            assert await conn.line() == b"250 2.0.0 Ok"
        assert trio.current_time() - start >= 0.75
        assert await conn.eof() == b""


# -------------------------------------------------------------------------- delays


async def test_w_delays_data_reply_and_holds_pipelined_replies() -> None:
    async with serving(config(data_delay=0.2)) as (_server, [addr]):
        conn = await tcp(addr)
        assert await conn.line() == b"220 smtp-sink ESMTP"
        start = trio.current_time()
        await conn.send(MESSAGE)
        first = await conn.line()
        elapsed = trio.current_time() - start
        assert first == b"250 smtp-sink"  # held back with the delayed 354, in order
        assert 0.2 <= elapsed < 3
        assert await conn.lines(3) == [
            b"250 2.1.0 Ok",
            b"250 2.1.5 Ok",
            b"354 End data with <CR><LF>.<CR><LF>",
        ]
        await conn.send(BODY + b"QUIT\r\n")
        assert await conn.lines(2) == [b"250 2.0.0 Ok", b"221 Bye"]


async def test_W_pipelined_replies_in_command_order() -> None:
    async with serving(config(delays={"NOOP": 0.2})) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        start = trio.current_time()
        await conn.send(b"NOOP\r\nRSET\r\nNOOP\r\nVRFY x\r\n")
        replies = await conn.lines(4)
        elapsed = trio.current_time() - start
        # Postfix answers RSET first and drops one NOOP reply (Q4); we do not.
        assert replies == [b"250 2.0.0 Ok", b"250 2.1.0 Ok", b"250 2.0.0 Ok", b"250 2.0.0 Ok"]
        assert 0.4 <= elapsed < 4
        assert await conn.nothing_within(0.1)


async def test_W_connect_delays_greeting() -> None:
    async with serving(config(delays={"CONNECT": 0.2})) as (_server, [addr]):
        start = trio.current_time()
        conn = await tcp(addr)
        assert await conn.line() == b"220 smtp-sink ESMTP"
        assert trio.current_time() - start >= 0.2


async def test_W_quit_delays_bye_then_closes() -> None:
    async with serving(config(delays={"QUIT": 0.2})) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        start = trio.current_time()
        await conn.send(b"QUIT\r\n")
        assert await conn.line() == b"221 Bye"
        assert trio.current_time() - start >= 0.2
        assert await conn.eof() == b""


async def test_idle_timer_does_not_run_during_our_delays() -> None:
    log = Log()
    cfg = config(timeout=0.25, delays={"NOOP": 0.5})
    async with serving(cfg, log=log) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        start = trio.current_time()
        await conn.send(b"NOOP\r\n")
        assert await conn.line() == b"250 2.0.0 Ok"  # Postfix would time out first (Q5)
        assert trio.current_time() - start >= 0.5
        await conn.send(b"RSET\r\n")
        assert await conn.line() == b"250 2.1.0 Ok"
        assert await conn.eof() == b""  # the client's own silence still times out
    assert log.texts("warning") == ["read timeout"]


def _rolls(seed: int, odds: int, count: int) -> list[int]:
    """The delay multipliers a Random(seed) gives for ``count`` delayed commands."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        k = 0
        while rng.randrange(100) < odds:
            k += 1
        out.append(k)
    return out


async def test_W_with_odds_uses_the_injected_rng() -> None:
    # A seed whose first NOOP gets no delay and whose second gets at least two units.
    seed = next(s for s in range(1000) if (r := _rolls(s, 50, 2))[0] == 0 and r[1] >= 2)
    k = _rolls(seed, 50, 2)[1]
    cfg = config(delays={"NOOP": (0.2, 50)})
    async with serving(cfg, rng=random.Random(seed)) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        times = []
        for _ in range(2):
            start = trio.current_time()
            await conn.send(b"NOOP\r\n")
            assert await conn.line() == b"250 2.0.0 Ok"
            times.append(trio.current_time() - start)
    assert times[0] < 0.2
    assert 0.2 * k <= times[1] < 0.2 * k + 3


async def test_H_delays_reading_the_message() -> None:
    async with serving(config(data_read_delay=0.3)) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        start = trio.current_time()
        assert await send_message(conn) == b"250 2.0.0 Ok"
        assert 0.3 <= trio.current_time() - start < 4


async def test_A_aborts_after_354() -> None:
    log = Log()
    async with serving(config(abort_delay=0.2), log=log) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        start = trio.current_time()
        await conn.send(MESSAGE)
        assert (await conn.lines(4))[3] == b"354 End data with <CR><LF>.<CR><LF>"
        assert await conn.line() == b"550 This violates SMTP"
        assert trio.current_time() - start >= 0.2
        assert await conn.eof() == b""


async def lock_step_until_data(conn: Conn) -> None:
    """HELO, MAIL, RCPT and DATA, each in a read of its own after the previous reply (as
    most clients send them: the protocol's paths for a whole line in one read)."""
    for command, reply in [
        (b"HELO client\r\n", b"250 smtp-sink"),
        (b"MAIL FROM:<a@example.com>\r\n", b"250 2.1.0 Ok"),
        (b"RCPT TO:<b@example.com>\r\n", b"250 2.1.5 Ok"),
        (b"DATA\r\n", b"354 End data with <CR><LF>.<CR><LF>"),
    ]:
        await conn.send(command)
        assert await conn.line() == reply


async def test_a_default_socket_timeout_leaves_sessions_non_blocking() -> None:
    """With a process-wide socket timeout (socket.setdefaulttimeout, as test suites set),
    an accepted socket is in timeout mode, and MSG_DONTWAIT alone would wait: such a socket
    is made non-blocking (without one, the flag does the work and the socket is left)."""
    server = SinkServer(config(), log=Log(), driver=support.DRIVER)
    previous = socket.getdefaulttimeout()
    for default, expected in [(3.0, 0.0), (None, None if DONTWAIT else 0.0)]:
        socket.setdefaulttimeout(default)
        try:
            a, b = socket.socketpair()
        finally:
            socket.setdefaulttimeout(previous)
        with a, b:
            assert b.gettimeout() == default
            server.open_session(b, ("127.0.0.1", 1), socket.AF_INET)
            assert b.gettimeout() == expected


async def test_H_and_A_with_a_command_per_read() -> None:
    async with serving(config(data_read_delay=0.3)) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        start = trio.current_time()  # (the wait may begin before the 354 reaches us)
        await lock_step_until_data(conn)
        await conn.send(BODY)
        assert await conn.line() == b"250 2.0.0 Ok"
        assert 0.3 <= trio.current_time() - start < 4
    async with serving(config(abort_delay=0.2)) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        start = trio.current_time()
        await lock_step_until_data(conn)
        assert await conn.line() == b"550 This violates SMTP"
        assert trio.current_time() - start >= 0.2
        assert await conn.eof() == b""


async def test_A_zero_aborts_at_once() -> None:
    seen: list[Transaction] = []
    async with serving(config(abort_delay=0)) as (server, [addr]):
        server.subscribe(seen.append)
        conn = await tcp(addr)
        await conn.line()
        await conn.send(MESSAGE)
        assert (await conn.lines(5))[3:] == [
            b"354 End data with <CR><LF>.<CR><LF>",
            b"550 This violates SMTP",
        ]
        assert await conn.eof() == b""
    assert seen == []


# ------------------------------------------------------------------ stop conditions


async def test_M_replies_to_the_last_message_then_run_returns() -> None:
    stopped = False
    server = SinkServer(config(max_messages=2), log=Log(), driver=support.DRIVER)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:

            async def run_server(task_status: trio.TaskStatus[Any]) -> None:
                nonlocal stopped
                await server.run(task_status=task_status)
                stopped = True

            [addr] = await nursery.start(run_server)
            conn = await tcp(addr)
            await conn.line()
            assert await send_message(conn) == b"250 2.0.0 Ok"
            await conn.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n")
            assert (await conn.lines(3))[2].startswith(b"354")
            await conn.send(BODY)
            assert await conn.line() == b"250 2.0.0 Ok"  # Postfix sends no reply (Q2)
            assert await conn.eof() == b""
    assert stopped
    assert server.stopped_by == "max_messages"
    assert server.counters.messages == 2


async def test_M_stops_even_when_the_client_resets_after_the_dot() -> None:
    """The reply to the last message cannot be sent (the client sent RST right after "."):
    the server stops all the same (it used to serve on forever)."""
    server = SinkServer(config(max_messages=1), log=Log(), driver=support.DRIVER)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            [addr] = await nursery.start(server.run)
            sock = socket.create_connection(addr)
            sock.setblocking(False)
            got = b""
            sock.send(MESSAGE)
            while b"354 " not in got:
                await trio.lowlevel.wait_readable(sock)
                got += sock.recv(4096)
            # "." and the RST in one go, before the server task runs again
            sock.send(BODY)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    assert server.stopped_by == "max_messages"
    assert server.counters.messages == 1
    support.check_served(server)


async def test_a_crash_while_greeting_closes_that_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug while greeting: that client gets EOF (it used to hang, and the server's
    nursery never exited); the error is logged; later connections are served."""
    from pytest_smtp_sink.core.protocol import SinkProtocol

    real_start = SinkProtocol.start

    def boom(self: SinkProtocol) -> None:
        raise RuntimeError("greeting bug")

    log = Log()
    with trio.fail_after(LIMIT):
        async with serving(log=log) as (_server, [addr]):
            monkeypatch.setattr(SinkProtocol, "start", boom)
            conn = await tcp(addr)
            assert await conn.eof() == b""
            await conn.aclose()
            monkeypatch.setattr(SinkProtocol, "start", real_start)
            conn = await tcp(addr)
            assert await conn.line() == b"220 smtp-sink ESMTP"
            await conn.aclose()
    assert any("greeting bug" in text for text in log.errors())


async def test_a_switch_during_a_transaction_applies_from_the_next_one() -> None:
    """Capture switched on between MAIL and ".": that transaction is not half-captured
    (it used to give a Transaction with empty mail_args, rcpt_args and queue_id)."""
    seen: list[Transaction] = []
    async with serving() as (server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        await conn.send(MESSAGE)
        assert (await conn.lines(4))[3].startswith(b"354")
        server.subscribe(seen.append)
        await conn.send(BODY)
        assert await conn.line() == b"250 2.0.0 Ok"
        assert seen == []
        assert await send_message(conn) == b"250 2.0.0 Ok"
    [tx] = seen
    assert tx.mail_args == "<a@example.com>" and tx.rcpt_args == ("<b@example.com>",)
    assert len(tx.queue_id) == 8


async def test_n_stops_after_quit_sessions_without_c() -> None:
    server = SinkServer(config(max_sessions=2), log=Log(), driver=support.DRIVER)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            [addr] = await nursery.start(server.run)
            # A session that ends without QUIT does not count.
            conn = await tcp(addr)
            await conn.line()
            await conn.aclose()
            conn = await tcp(addr)
            await conn.line()
            await conn.send(b"QUIT\r\n")
            assert await conn.line() == b"221 Bye"
            await conn.eof()
            # Still serving after 2 sessions, 1 QUIT.
            conn = await tcp(addr)
            assert await conn.line() == b"220 smtp-sink ESMTP"
            await conn.send(b"QUIT\r\n")
            assert await conn.line() == b"221 Bye"
            await conn.eof()
        # the nursery ends because run() returned by itself
    assert server.stopped_by == "max_sessions"
    assert server.counters.quits == 2


async def test_counters() -> None:
    lines: list[str] = []
    four = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def out(line: str) -> None:  # called in the thread serving the session
        lines.append(line)
        if len(lines) == 4:
            token.run_sync_soon(four.set)

    async with serving(config(counters=True), counters_out=out) as (server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        assert await send_message(conn) == b"250 2.0.0 Ok"
        await conn.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n" + BODY + b"QUIT\r\n")
        assert (await conn.lines(5))[3:] == [b"250 2.0.0 Ok", b"221 Bye"]
        await conn.eof()
        conn = await tcp(addr)
        await conn.line()
        await conn.aclose()
        with trio.fail_after(LIMIT):
            await four.wait()  # the server sees the EOF after our close
        assert lines == [
            "sess=0 quit=0 mesg=1\r",
            "sess=0 quit=0 mesg=2\r",
            "sess=1 quit=1 mesg=2\r",
            "sess=2 quit=1 mesg=2\r",
        ]
        assert (server.counters.sessions, server.counters.quits) == (2, 1)


async def test_no_counter_lines_without_c() -> None:
    lines: list[str] = []
    async with serving(counters_out=lines.append) as (server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        assert await send_message(conn) == b"250 2.0.0 Ok"
        await conn.send(b"QUIT\r\n")
        await conn.eof()
        assert server.counters.messages == 1
    assert lines == []


async def test_T_sets_the_listener_window() -> None:
    window = 40000
    async with serving(config(tcp_window=window)) as (server, [addr]):
        [listener] = server.listeners
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            # Linux doubles the value it was given.
            assert listener.getsockopt(socket.SOL_SOCKET, opt) in (window, 2 * window)
        conn = await tcp(addr)
        assert await conn.line() == b"220 smtp-sink ESMTP"


# ------------------------------------------------------------------------- logging


async def test_verbose_log() -> None:
    log = Log()
    async with serving(config(verbose=True), log=log) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        await conn.send(b"NOOP\r\nHELO a\tb\r\nQUIT\r\n")
        await conn.lines(3)
        await conn.eof()
    info = log.texts("info")
    assert info[0] == "trying... [127.0.0.1]:0"
    assert info[1:] == ["connect (AF_INET 127.0.0.1)", "NOOP", "HELO a?b", "QUIT", "disconnect"]


@needs_ipv6
async def test_verbose_log_ipv6() -> None:
    log = Log()
    async with serving(config(verbose=True), "[::1]:0", log=log) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        await conn.aclose()
    assert "connect (AF_INET6 ::1)" in log.texts("info")


async def test_quiet_without_verbose() -> None:
    log = Log()
    async with serving(log=log) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        await conn.send(b"NOOP\r\nQUIT\r\n")
        await conn.eof()
    assert log.records == []


async def test_s_command_log() -> None:
    records: list[str] = []
    cfg = config(log_commands="connect,helo,MAIL,rcpt,.", reject="RCPT")
    async with serving(cfg, command_log=records.append) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        await conn.send(b"helo x\ty\r\nMAIL FROM:<a> \x01\r\nRCPT TO:<" + b"b" * 150 + b">\r\n")
        assert (await conn.lines(3))[2] == b"500 5.3.0 Error: command failed"
        await conn.send(b"QUIT\r\n")
        await conn.eof()
    assert records == [
        "connect ",
        "helo x?y",
        "MAIL FROM:<a> ?",
        "RCPT " + ("TO:<" + "b" * 150 + ">")[:100],
    ]


# --------------------------------------------------------------------------- dumps


async def test_d_dump_written_before_the_reply(tmp_path: Path) -> None:
    template = tmp_path / "new" / "msg."
    async with serving(config(dump_template=str(template))) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        await conn.send(MESSAGE)
        await conn.lines(4)
        await conn.send(BODY)
        assert await conn.line() == b"250 2.0.0 Ok"
        # Checked right at the reply, with the server still running.
        [dump] = list((tmp_path / "new").iterdir())
        assert dump.name.startswith("msg.") and len(dump.name) == len("msg.") + 8
        text = dump.read_bytes()
        assert b"X-Mail-Args: <a@example.com>\n" in text
        assert text.endswith(b"Subject: hi\n\nbody\n\n")


async def test_D_dump_appends(tmp_path: Path) -> None:
    path = tmp_path / "all.mbox"
    async with serving(config(dump_file_template=str(path))) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        assert await send_message(conn) == b"250 2.0.0 Ok"
        assert path.read_bytes().count(b"X-Client-Addr: 127.0.0.1\n") == 1
        await conn.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n" + BODY)
        assert (await conn.lines(4))[3] == b"250 2.0.0 Ok"
        assert path.read_bytes().count(b"X-Client-Addr: 127.0.0.1\n") == 2
    assert list(tmp_path.iterdir()) == [path]  # the temporary files are gone


async def test_unwritable_dump_gives_451_and_server_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, not a directory\n")
    log = Log()
    cfg = config(dump_template=str(blocker / "sub" / "msg."))
    async with serving(cfg, log=log) as (server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        assert await send_message(conn) == b"451 4.3.0 Error: queue file write error"
        # the same connection can go on, and a fixed config applies to its next message
        server.config = config(dump_template=str(tmp_path / "ok."))
        await conn.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n" + BODY)
        assert (await conn.lines(4))[3] == b"250 2.0.0 Ok"
        other = await tcp(addr)
        assert await other.line() == b"220 smtp-sink ESMTP"
    [error] = log.texts("error")
    assert "cannot write dump" in error
    assert len(list(tmp_path.glob("ok.*"))) == 1


# --------------------------------------------------------------------- subscribers


async def test_subscriber_called_before_the_reply() -> None:
    seen: list[Transaction] = []
    async with serving() as (server, [(host, port)]):
        server.subscribe(seen.append)

        def check() -> None:  # runs right after send_message() returned, in the thread
            assert len(seen) == 1

        await trio.to_thread.run_sync(lambda: send_with_smtplib(host, port, check=check))
        assert seen[0].message["Subject"] == "hi"
        server.unsubscribe(seen.append)
        await trio.to_thread.run_sync(send_with_smtplib, host, port)
    assert len(seen) == 1


async def test_failing_subscriber_gives_451() -> None:
    log = Log()

    def broken(tx: Transaction) -> None:
        raise RuntimeError("capture is broken")

    async with serving(log=log) as (server, [addr]):
        server.subscribe(broken)
        conn = await tcp(addr)
        await conn.line()
        assert await send_message(conn) == b"451 4.3.0 Error: queue file write error"
        await conn.send(b"NOOP\r\n")
        assert await conn.line() == b"250 2.0.0 Ok"
    assert any("capture is broken" in t for t in log.texts("error"))


async def test_subscribe_on_open_connection() -> None:
    seen: list[Transaction] = []
    async with serving() as (server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        server.subscribe(seen.append)  # the connection was opened before
        assert await send_message(conn) == b"250 2.0.0 Ok"
    assert [tx.mail_from for tx in seen] == ["a@example.com"]


# ------------------------------------------------------------------ runtime config


async def test_config_change_applies_to_open_connection() -> None:
    async with serving() as (server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        await conn.send(b"NOOP\r\nHELO x\r\n")
        assert await conn.lines(2) == [b"250 2.0.0 Ok", b"250 smtp-sink"]
        server.config = config(reject="NOOP", hostname="mx.test")
        await conn.send(b"NOOP\r\nHELO x\r\n")
        assert await conn.lines(2) == [b"500 5.3.0 Error: command failed", b"250 mx.test"]
        server.config = config()
        await conn.send(b"NOOP\r\n")
        assert await conn.line() == b"250 2.0.0 Ok"


async def test_timeout_change_applies_to_open_connection() -> None:
    async with serving() as (server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        server.config = config(timeout=0.2)
        await conn.send(b"NOOP\r\n")
        assert await conn.line() == b"250 2.0.0 Ok"
        assert await conn.eof() == b""  # default timeout is 100 s: the new one applied


async def test_config_set_from_another_thread() -> None:
    """set_config_here (the plugin's per-test configuration, from pytest's thread) applies at
    once unless a session waits in a portable task, whose -t deadline only trio's thread
    may move: then it does nothing and says so."""
    async with serving() as (server, [addr]):
        assert await trio.to_thread.run_sync(server.set_config_here, config(hostname="a.test"))
        assert server.config.hostname == "a.test"
        conn = await tcp(addr)
        assert await conn.line() == b"220 a.test ESMTP"
        await trio.testing.wait_all_tasks_blocked()  # (a portable task: waiting to read)
        short = config(timeout=0.2)
        done = await trio.to_thread.run_sync(server.set_config_here, short)
        if support.DRIVER == "portable":
            assert not done
            assert server.config.hostname == "a.test"  # nothing done
            server.config = short  # (from trio's thread)
        else:
            assert done  # the selector's sessions have no trio deadline
            assert server.config is short
        await conn.send(b"NOOP\r\n")
        assert await conn.line() == b"250 2.0.0 Ok"
        assert await conn.eof() == b""  # the new -t applied to the open connection


async def _grows_to(path: Path, size: int) -> None:
    """Wait until ``path`` holds ``size`` octets or more (the server writes as it reads)."""
    with trio.fail_after(LIMIT):
        while not (path.exists() and path.stat().st_size >= size):
            await trio.sleep(0.01)


def _one_file(folder: Path) -> Path:
    [path] = list(folder.iterdir())
    return path


async def test_dump_template_streams_the_message(tmp_path: Path) -> None:
    """-d without observers: the dump grows as the data arrives (the message is not held
    whole in memory), and the file is the one the whole message would give."""
    from pytest_smtp_sink.dump.reader import parse_dump

    folder = tmp_path / "d"
    line = b"y" * 998 + b"\r\n"
    async with serving(config(dump_template=f"{folder}/")) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        await conn.send(MESSAGE)
        await conn.lines(4)
        await conn.send(b"Subject: big\r\n\r\n" + line * 2000)  # 2 MB
        with trio.fail_after(LIMIT):
            while not folder.exists() or not list(folder.iterdir()):
                await trio.sleep(0.01)
        await _grows_to(_one_file(folder), 1_000_000)  # before the end of data
        await conn.send(b"..dot\r\n.\r\n")
        assert await conn.line() == b"250 2.0.0 Ok"
        [tx] = parse_dump(_one_file(folder).read_bytes())
        assert tx.data == b"Subject: big\n\n" + (b"y" * 998 + b"\n") * 2000 + b".dot\n\n"
        assert tx.rcpt_to == ["b@example.com"]


async def test_streamed_dump_of_a_message_too_big_is_removed(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    line = b"y" * 998 + b"\r\n"
    cfg = config(dump_template=f"{folder}/", max_message_size=500_000)
    async with serving(cfg) as (_server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        await conn.send(MESSAGE)
        await conn.lines(4)
        await conn.send(b"Subject: big\r\n\r\n" + line * 1000 + b".\r\n")
        assert (await conn.line()).startswith(b"552 ")
        await conn.send(b"QUIT\r\n")
        assert await conn.line() == b"221 Bye"
    assert not folder.exists() or list(folder.iterdir()) == []


async def test_observer_that_comes_during_data_gets_the_whole_message(tmp_path: Path) -> None:
    """A dump streamed since DATA, then a subscriber: it still sees every octet."""
    folder = tmp_path / "d"
    seen: list[Transaction] = []
    async with serving(config(dump_template=f"{folder}/")) as (server, [addr]):
        conn = await tcp(addr)
        await conn.line()
        await conn.send(MESSAGE)
        await conn.lines(4)
        await conn.send(b"Subject: s\r\n\r\n" + (b"z" * 998 + b"\r\n") * 100)
        with trio.fail_after(LIMIT):
            while not folder.exists() or not list(folder.iterdir()):
                await trio.sleep(0.01)
        await _grows_to(_one_file(folder), 100_000)
        server.subscribe(seen.append)
        await conn.send(b"tail\r\n.\r\n")
        assert await conn.line() == b"250 2.0.0 Ok"
    [tx] = seen
    assert tx.data == b"Subject: s\n\n" + (b"z" * 998 + b"\n") * 100 + b"tail\n\n"
    assert _one_file(folder).read_bytes().endswith(tx.data)


async def test_t_follows_trio_clock(mock_clock: trio.testing.MockClock) -> None:
    """-t is measured on trio's clock, whichever driver serves: a jump of a test clock past
    the limit times the idle session out."""
    mock_clock.rate = 1.0  # real time passes too (the waits below are bounded)
    async with serving(config(timeout=30)) as (_server, [addr]):  # 30 s > LIMIT
        conn = await tcp(addr)
        assert (await conn.line()).startswith(b"220 ")
        mock_clock.jump(60)
        with trio.fail_after(LIMIT):
            assert await conn.eof() == b""

