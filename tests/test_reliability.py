"""Reliability guarantees (DESIGN §6): nothing lost, aborts leave nothing, limits hold, and
client input cannot steer where dumps go.

Everything runs over 127.0.0.1 or unix sockets in one trio loop (server and clients), every
wait is bounded (``trio.fail_after``) and nothing sleeps to synchronise: completion is read
from replies, EOFs and the server's public session counter.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
import socket
import struct
import tempfile
import textwrap
import tracemalloc
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import support
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support import config, ipv6_loopback_available

from pytest_smtp_sink import (
    DumpFormatError,
    SinkConfig,
    SinkProtocol,
    SinkServer,
    Transaction,
    parse_dump,
)
from pytest_smtp_sink.dump.transaction import dump_text

LIMIT = 10.0  # seconds: the most any single wait for the server may take
LOAD_LIMIT = 40.0  # seconds: the whole load test of one variant

Address = tuple[str, int] | str


def serving(
    cfg: SinkConfig, address: str = "127.0.0.1:0", **kwargs: Any
) -> AbstractAsyncContextManager[tuple[SinkServer, list[Address]]]:
    """A running server in this trio loop, on the test's driver; no session may crash."""
    return support.serving(cfg, address, check_errors=True, **kwargs)


async def sessions_ended(server: SinkServer, count: int) -> None:
    """Wait (bounded) until the server has finished ``count`` sessions in all."""
    with trio.fail_after(LIMIT):
        while server.counters.sessions < count:
            await trio.sleep(0.005)
    assert server.counters.sessions == count


@contextmanager
def short_dir() -> Iterator[Path]:
    """A folder whose paths fit in sun_path (tmp_path can be long under xdist)."""
    with tempfile.TemporaryDirectory(prefix="sink", dir="/tmp") as d:
        yield Path(d)


class Client:
    """A raw SMTP client on a trio stream: send bytes, read whole (multi-line) replies."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    @classmethod
    async def connect(cls, addr: Address) -> Client:
        if isinstance(addr, str):
            return cls(await trio.open_unix_socket(addr))
        return cls(await trio.open_tcp_stream(addr[0], addr[1]))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionResetError):
            data = b""
        self.buf += data
        return bool(data)

    async def reply(self) -> bytes:
        """The next complete reply (all its lines, CRLFs included)."""
        with trio.fail_after(LIMIT):
            while True:
                pos = 0
                while True:
                    end = self.buf.find(b"\r\n", pos)
                    if end < 0:
                        break
                    if self.buf[pos + 3 : pos + 4] != b"-":
                        out = bytes(self.buf[: end + 2])
                        del self.buf[: end + 2]
                        return out
                    pos = end + 2
                if not await self._fill():
                    raise EOFError(f"EOF after {bytes(self.buf)[:200]!r}")

    async def replies(self, n: int) -> list[bytes]:
        return [await self.reply() for _ in range(n)]

    async def eof(self) -> bytes:
        """Read to EOF (a reset counts as EOF); everything that came before it."""
        with trio.fail_after(LIMIT):
            while await self._fill():
                pass
        rest = bytes(self.buf)
        self.buf.clear()
        return rest

    async def aclose(self) -> None:
        await self.stream.aclose()


def reset_on_close(client: Client) -> None:
    """SO_LINGER 0: the close sends a TCP RST (a client killed the hard way)."""
    stream = client.stream
    assert isinstance(stream, trio.SocketStream)
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# ======================================================================================
# 1. Nothing lost under load
# ======================================================================================

N_CLIENTS = 50
N_MESSAGES = 2000
SEED = 20261125

_pool_rng = random.Random(SEED)
_PRINTABLE = bytes(range(0x20, 0x7F))
ASCII_POOL = bytes(_pool_rng.choice(_PRINTABLE) for _ in range(1 << 16))
# Anything but LF (so that no CRLF appears inside a line): 8-bit, NUL, bare CR.
EIGHTBIT_POOL = bytes(
    _pool_rng.choice([b for b in range(256) if b != 0x0A]) for _ in range(1 << 16)
)


@dataclass
class Msg:
    key: str  # X-Mail-Args as dumped: identifies the message
    commands: list[bytes]  # MAIL, RCPT..., DATA
    rcpt_values: tuple[str, ...]
    wire: bytes  # after the 354, up to and including CRLF.CRLF
    expected: bytes  # Transaction.data: CR removed, dot-unstuffed, final LF
    abort_at: int | None  # the client vanishes after this many octets of ``wire``


@dataclass
class Plan:
    messages: list[Msg]
    pipelining: str  # "none" | "commands" (MAIL..DATA in one write) | "all" (plus the body)
    per_connection: int  # messages per connection before QUIT / close
    hello: bytes | None
    quit: bool  # QUIT at the end of a connection, or just close


def _size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.05:
        return 0
    if r < 0.70:
        return rng.randrange(1, 2_000)
    if r < 0.95:
        return rng.randrange(2_000, 20_000)
    return rng.randrange(20_000, 200_000)


def _line(rng: random.Random, pool: bytes) -> bytes:
    r = rng.random()
    n = rng.randrange(0, 3_000) if r < 0.02 else rng.randrange(0, 120)
    start = rng.randrange(len(pool) - n)
    body = pool[start : start + n]
    r = rng.random()
    if r < 0.03:
        return b"."
    if r < 0.10:
        return b"." + body
    if r < 0.13:
        return b".." + body
    if r < 0.16:
        return b""
    if r < 0.17:
        return b"bare\nlf." + body
    return body


def make_message(rng: random.Random, key: str, size: int, eightbit: bool) -> tuple[bytes, bytes]:
    """(wire form after the 354, what the dump keeps), built independently of the server."""
    pool = EIGHTBIT_POOL if eightbit else ASCII_POOL
    lines: list[bytes] = []
    if size:
        lines += [f"Message-Id: <{key}>".encode(), b"Subject: load", b""]
    total = 0
    while total < size:
        line = _line(rng, pool)
        lines.append(line)
        total += len(line) + 2
    wire = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
    expected = b"".join(ln.replace(b"\r", b"") + b"\n" for ln in lines) + b"\n"
    return wire + b".\r\n", expected


@functools.cache
def load_plans() -> tuple[Plan, ...]:
    """50 clients, 2,000 messages in all; the same every run (seeded)."""
    rng = random.Random(SEED)
    plans: list[Plan] = []
    per_client = N_MESSAGES // N_CLIENTS
    for c in range(N_CLIENTS):
        eightbit = rng.random() < 0.4
        messages: list[Msg] = []
        for m in range(per_client):
            params = rng.choice(["", " SIZE=1000", " BODY=8BITMIME", " SMTPUTF8 SIZE=7"])
            key = f"<c{c}.m{m}@load.test>{params}"
            n_rcpt = rng.randint(1, 10)
            rcpts = tuple(f"<r{k}.{c}.{m}@load.test>" for k in range(n_rcpt))
            spell = rng.choice([(b"MAIL FROM:", b"RCPT TO:"), (b"mail FROM:", b"rcpt TO:")])
            commands = [spell[0] + key.encode() + b"\r\n"]
            commands += [spell[1] + r.encode() + b"\r\n" for r in rcpts]
            commands.append(b"DATA\r\n")
            wire, expected = make_message(rng, key, _size(rng), eightbit)
            abort_at = rng.randrange(len(wire)) if rng.random() < 0.03 else None
            messages.append(Msg(key, commands, rcpts, wire, expected, abort_at))
        plans.append(
            Plan(
                messages=messages,
                pipelining=rng.choice(["none", "commands", "all"]),
                per_connection=rng.choice([1, 1, 2, 5, 10, per_client]),
                hello=rng.choice([None, b"HELO client.test", b"EHLO client.test"]),
                quit=rng.random() < 0.7,
            )
        )
    assert sum(len(p.messages) for p in plans) == N_MESSAGES
    return tuple(plans)


@dataclass
class LoadResult:
    acked: dict[str, Msg]
    aborted: set[str]
    refused: list[tuple[str, bytes]]
    connections: int = 0


async def _transact(client: Client, plan: Plan, msg: Msg, result: LoadResult) -> None:
    n = len(msg.commands)
    if plan.pipelining == "all" and msg.abort_at is None:
        await client.send(b"".join(msg.commands) + msg.wire)
        got = await client.replies(n + 1)
    else:
        if plan.pipelining == "none":
            got = []
            for cmd in msg.commands:
                await client.send(cmd)
                got.append(await client.reply())
        else:
            await client.send(b"".join(msg.commands))
            got = await client.replies(n)
        assert got[-1] == b"354 End data with <CR><LF>.<CR><LF>\r\n", got[-1]
        if msg.abort_at is not None:
            await client.send(msg.wire[: msg.abort_at])
            result.aborted.add(msg.key)
            return
        await client.send(msg.wire)
        got.append(await client.reply())
    assert got[0] == b"250 2.1.0 Ok\r\n"
    assert got[1 : n - 1] == [b"250 2.1.5 Ok\r\n"] * (n - 2)
    assert got[n - 1] == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    final = got[n]
    if final.startswith(b"250 "):
        assert msg.key not in result.acked
        result.acked[msg.key] = msg
    else:
        result.refused.append((msg.key, final))


async def _run_client(addr: Address, plan: Plan, result: LoadResult) -> None:
    client: Client | None = None
    used = 0
    for msg in plan.messages:
        if client is None:
            client = await Client.connect(addr)
            result.connections += 1
            used = 0
            assert (await client.reply()).startswith(b"220 ")
            if plan.hello is not None:
                await client.send(plan.hello + b"\r\n")
                assert (await client.reply()).startswith(b"250")
        await _transact(client, plan, msg, result)
        used += 1
        if msg.abort_at is not None:
            if used % 2:
                reset_on_close(client)  # half of the vanishing clients reset the connection
            await client.aclose()
            client = None
        elif used >= plan.per_connection:
            await _finish(client, plan)
            client = None
    if client is not None:
        await _finish(client, plan)


async def _finish(client: Client, plan: Plan) -> None:
    if plan.quit:
        await client.send(b"QUIT\r\n")
        assert await client.reply() == b"221 Bye\r\n"
        assert await client.eof() == b""
    await client.aclose()


async def run_load(server: SinkServer, addr: Address) -> LoadResult:
    result = LoadResult({}, set(), [])
    with trio.fail_after(LOAD_LIMIT):
        async with trio.open_nursery() as nursery:
            for plan in load_plans():
                nursery.start_soon(_run_client, addr, plan, result)
    # Vanished clients: wait until the server has noticed each of them.
    await sessions_ended(server, result.connections)
    assert result.refused == []
    total_aborted = sum(m.abort_at is not None for p in load_plans() for m in p.messages)
    assert len(result.aborted) == total_aborted > 0
    assert len(result.acked) == N_MESSAGES - total_aborted
    return result


def check_exactly_once(stored: list[Transaction], result: LoadResult) -> None:
    """Every acknowledged message is stored exactly once, bytes intact; nothing else is."""
    keys = [tx.mail_args for tx in stored]
    dupes = {k for k in keys if keys.count(k) > 1} if len(set(keys)) != len(keys) else set()
    assert dupes == set(), f"stored more than once: {sorted(dupes)[:5]}"
    missing = set(result.acked) - set(keys)
    assert missing == set(), f"{len(missing)} acknowledged messages lost: {sorted(missing)[:5]}"
    extra = set(keys) - set(result.acked)
    assert extra == set(), f"stored but never acknowledged: {sorted(extra)[:5]}"
    bad = [
        tx.mail_args
        for tx in stored
        if tx.data != result.acked[tx.mail_args].expected
        or tx.rcpt_args != result.acked[tx.mail_args].rcpt_values
    ]
    assert bad == [], f"{len(bad)} messages altered, e.g. {bad[:3]}"


LISTEN = {
    "inet": ("127.0.0.1:0", "127.0.0.1"),
    "inet6": ("[::1]:0", "ipv6:::1"),
    "unix": ("unix:{dir}/s", "local"),
}


@pytest.mark.drivers
@pytest.mark.trio
@pytest.mark.parametrize(
    "family",
    [
        "inet",
        pytest.param(
            "inet6", marks=pytest.mark.skipif(not ipv6_loopback_available(), reason="no ::1")
        ),
        pytest.param("unix", marks=support.needs_unix_sockets),
    ],
)
async def test_nothing_lost_capture(family: str) -> None:
    stored: list[Transaction] = []
    listen, client_addr = LISTEN[family]
    with short_dir() as d:
        async with serving(config(), listen.format(dir=d)) as (server, [addr]):
            server.subscribe(stored.append)
            result = await run_load(server, addr)
    check_exactly_once(stored, result)
    assert {tx.client_addr for tx in stored} == {client_addr}


@pytest.mark.drivers
@pytest.mark.trio
async def test_nothing_lost_dump_template(tmp_path: Path) -> None:
    folder = tmp_path / "dumps" / "new"  # missing folders are created
    async with serving(config(dump_template=f"{folder}/msg.")) as (server, [addr]):
        result = await run_load(server, addr)
    stored: list[Transaction] = []
    for path in sorted(tmp_path.rglob("*")):
        if path.is_dir():
            continue
        assert path.parent == folder
        match = re.fullmatch(r"msg\.([0-9a-f]{8})", path.name)
        assert match, path.name
        [tx] = parse_dump(path)
        assert tx.queue_id == match.group(1)
        stored.append(tx)
    check_exactly_once(stored, result)


@pytest.mark.drivers
@pytest.mark.trio
async def test_nothing_lost_dump_file_template(tmp_path: Path) -> None:
    mbox = tmp_path / "dumps" / "all.mbox"
    async with serving(config(dump_file_template=str(mbox))) as (server, [addr]):
        result = await run_load(server, addr)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [mbox]
    stored = parse_dump(mbox)
    check_exactly_once(stored, result)


# ======================================================================================
# 2. Aborted transactions leave nothing
# ======================================================================================

ENVELOPE = [b"EHLO client.test\r\n", b"MAIL FROM:<a@x.test>\r\n", b"RCPT TO:<b@x.test>\r\n"]
BODY = b"Subject: aborted\r\n\r\nline\r\n..dot\r\n"


async def _open(addr: Address, *commands: bytes) -> Client:
    """Connect, greet, send ``commands`` one by one, each answered 2xx/3xx."""
    client = await Client.connect(addr)
    assert (await client.reply()).startswith(b"220 ")
    for cmd in commands:
        await client.send(cmd)
        reply = await client.reply()
        assert reply[:1] in b"23", (cmd, reply)
    return client


class Opener:
    """``_open`` that counts the connections it made."""

    def __init__(self, addr: Address) -> None:
        self.addr = addr
        self.count = 0

    async def open(self, *commands: bytes) -> Client:
        self.count += 1
        return await _open(self.addr, *commands)


async def _kill(client: Client, reset: bool = False) -> None:
    if reset:
        reset_on_close(client)
    await client.aclose()


async def _abort_scenarios(addr: Address) -> int:
    """Transactions cut off in every way a client can; returns the connections used."""
    opener = Opener(addr)
    data = b"DATA\r\n"
    # killed mid-DATA, at several points (the last one byte short of the terminator)
    for tail, reset in [
        (b"", False),
        (BODY, False),
        (BODY, True),
        (BODY + b".", False),
        (BODY + b".\r", True),
        (BODY + b"x" * 300_000, False),
    ]:
        client = await opener.open(*ENVELOPE, data)
        await client.send(tail)
        await _kill(client, reset)
    # everything pipelined in one write, then gone
    client = await opener.open()
    await client.send(b"".join(ENVELOPE) + data + BODY)
    await _kill(client)
    # RSET mid-transaction (before and after RCPT); the DATA that follows is refused
    for envelope in (ENVELOPE[:2], ENVELOPE):
        client = await opener.open(*envelope, b"RSET\r\n")
        await client.send(data)
        assert await client.reply() == b"503 5.5.1 Error: need RCPT command\r\n"
        await client.send(b"QUIT\r\n")
        assert await client.reply() == b"221 Bye\r\n"
        await client.aclose()
    # EHLO / HELO mid-transaction abort it too
    for hello in (b"EHLO again\r\n", b"HELO again\r\n"):
        client = await opener.open(*ENVELOPE, hello)
        await client.send(data)
        assert await client.reply() == b"503 5.5.1 Error: need RCPT command\r\n"
        await client.aclose()
    # QUIT mid-transaction (with and without recipients)
    for envelope in (ENVELOPE[:2], ENVELOPE):
        client = await opener.open(*envelope)
        await client.send(b"QUIT\r\n")
        assert await client.reply() == b"221 Bye\r\n"
        assert await client.eof() == b""
        await client.aclose()
    # EOF (half-close) after RCPT: the server closes, nothing stored
    client = await opener.open(*ENVELOPE)
    assert isinstance(client.stream, trio.SocketStream)
    await client.stream.send_eof()
    assert await client.eof() == b""
    await client.aclose()
    # an overlong command line mid-transaction: closed without a reply
    client = await opener.open(*ENVELOPE)
    await client.send(b"NOOP " + b"x" * 2042 + b"\r\n")
    assert await client.eof() == b""
    await client.aclose()
    # idle timeout mid-DATA (the server runs with timeout=0.5)
    client = await opener.open(*ENVELOPE, data)
    await client.send(BODY)
    assert await client.eof() == b""
    await client.aclose()
    return opener.count


async def _option_scenarios(addr: Address, expect: list[bytes]) -> int:
    """MAIL/RCPT/DATA and a body, one command at a time and pipelined; the server hangs up.

    ``expect``: the replies to MAIL, RCPT, DATA, up to the hang-up (EOF).
    """
    cmds = [ENVELOPE[1], ENVELOPE[2], b"DATA\r\n"]
    client = await _open(addr)
    got: list[bytes] = []
    for cmd in cmds:
        await client.send(cmd)
        try:
            got.append(await client.reply())
        except EOFError:
            break
    if len(got) == 3:
        with suppress(trio.BrokenResourceError):  # -A: the server may have hung up
            await client.send(BODY + b".\r\n")
    rest = await client.eof()
    assert b"".join(got) + rest == b"".join(expect)
    await client.aclose()
    # pipelined: whatever the replies, nothing may be stored
    client = await _open(addr)
    with suppress(trio.BrokenResourceError):
        await client.send(b"".join(cmds) + BODY + b".\r\n")
    await client.eof()
    await client.aclose()
    return 2


AbortCase = tuple[dict[str, Any], list[bytes] | None]
ABORT_CASES: dict[str, AbortCase] = {
    "client-aborts": ({"timeout": 0.5}, None),
    "-q DATA": ({"disconnect": "DATA"}, [b"250 2.1.0 Ok\r\n", b"250 2.1.5 Ok\r\n"]),
    "-Q DATA": (
        {"disconnect_421": "DATA"},
        [b"250 2.1.0 Ok\r\n", b"250 2.1.5 Ok\r\n", b"421 4.0.0 Server closing connection\r\n"],
    ),
    "-A 0": (
        {"abort_delay": 0},
        [
            b"250 2.1.0 Ok\r\n",
            b"250 2.1.5 Ok\r\n",
            b"354 End data with <CR><LF>.<CR><LF>\r\n",
            b"550 This violates SMTP\r\n",
        ],
    ),
    "-q RCPT": ({"disconnect": "RCPT"}, [b"250 2.1.0 Ok\r\n"]),
}


@pytest.mark.drivers
@pytest.mark.trio
@pytest.mark.parametrize("store", ["capture", "dump_template", "dump_file_template"])
@pytest.mark.parametrize("case", list(ABORT_CASES))
async def test_aborts_leave_nothing(case: str, store: str, tmp_path: Path) -> None:
    options, expect = ABORT_CASES[case]
    options = dict(options)
    if store == "dump_template":
        options["dump_template"] = f"{tmp_path}/d/msg."
    elif store == "dump_file_template":
        options["dump_file_template"] = f"{tmp_path}/D/all.mbox"
    stored: list[Transaction] = []
    async with serving(config(**options)) as (server, [addr]):
        if store == "capture":
            server.subscribe(stored.append)
        if expect is None:
            used = await _abort_scenarios(addr)
        else:
            used = await _option_scenarios(addr, expect)
        await sessions_ended(server, used)
        assert stored == []
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
        if expect is None:
            # control: the same server does store a complete message, exactly once
            client = await _open(addr, *ENVELOPE, b"DATA\r\n")
            await client.send(BODY + b".\r\n")
            assert await client.reply() == b"250 2.0.0 Ok\r\n"
            await client.aclose()
            files = [p for p in tmp_path.rglob("*") if p.is_file()]
            kept = stored if store == "capture" else [tx for f in files for tx in parse_dump(f)]
            assert [tx.data for tx in kept] == [b"Subject: aborted\n\nline\n.dot\n\n"]


# ======================================================================================
# 4. The dump parser never fails with anything but DumpFormatError
# ======================================================================================

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_latin1_text = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\n"), max_size=30)


@st.composite
def transactions(draw: st.DrawFn) -> Transaction:
    helo = draw(st.none() | _latin1_text)
    addr = draw(st.sampled_from(["127.0.0.1", "ipv6:::1", "local"]))
    qid = f"{draw(st.integers(0, 2**31 - 1)):08x}"
    sender = helo if helo is not None else f"[{addr}]"
    received = (
        f"from {sender} ([{addr}])\n\tby smtp-sink (smtp-sink) with ESMTP id {qid};\n"
        "\tTue, 24 Nov 2026 21:59:14 +0000 (UTC)"
    )
    body = draw(st.binary(max_size=200))
    return Transaction(
        client_addr=addr,
        client_proto=draw(st.sampled_from(["SMTP", "ESMTP", "LMTP"])),
        helo=helo,
        mail_args=draw(_latin1_text),
        rcpt_args=tuple(draw(st.lists(_latin1_text, max_size=3))),
        queue_id=qid,
        received=received,
        data=body + b"\n",
        start_string=draw(st.sampled_from(["", "START\n", "From x\n"])),
    )


def _parse_ok_or_format_error(data: bytes, start_string: str | None = None) -> None:
    try:
        result = parse_dump(data, start_string)
    except DumpFormatError:
        return
    assert isinstance(result, list)
    assert all(isinstance(tx, Transaction) for tx in result)


@FUZZ
@given(st.binary(max_size=2000), st.none() | _latin1_text)
@example(b"X-Client-Addr: ", None)
@example(b"\nX-Client-Addr: \nX-Client-Addr: ", None)
def test_parse_dump_arbitrary_bytes(data: bytes, start_string: str | None) -> None:
    _parse_ok_or_format_error(data, start_string)


@FUZZ
@given(
    st.lists(transactions(), min_size=1, max_size=4),
    st.lists(
        st.tuples(st.sampled_from(["cut", "insert", "delete", "flip"]), st.data()), max_size=4
    ),
)
def test_parse_dump_mutated(
    txs: list[Transaction], mutations: list[tuple[str, st.DataObject]]
) -> None:
    start = txs[0].start_string
    data = b"".join(_with_start(tx, start).render() for tx in txs)
    assert parse_dump(data, start or None) == [_as_dumped(_with_start(tx, start)) for tx in txs]
    for kind, draw in mutations:
        pos = draw.draw(st.integers(0, len(data)))
        if kind == "cut":
            data = data[:pos]
        elif kind == "insert":
            data = data[:pos] + draw.draw(st.binary(min_size=1, max_size=20)) + data[pos:]
        elif kind == "delete":
            data = data[:pos] + data[pos + draw.draw(st.integers(1, 20)) :]
        elif pos < len(data):
            data = (
                data[:pos] + bytes([data[pos] ^ draw.draw(st.integers(1, 255))]) + data[pos + 1 :]
            )
        _parse_ok_or_format_error(data)
        _parse_ok_or_format_error(data, start)


def _with_start(tx: Transaction, start: str) -> Transaction:
    return dataclasses.replace(tx, start_string=start)


def _as_dumped(tx: Transaction) -> Transaction:
    """What the dump keeps of the client's texts (Postfix's ``?`` for what is not printable)."""
    def text(value: str) -> str:
        return dump_text(value, tx.smtputf8)

    return dataclasses.replace(
        tx,
        helo=None if tx.helo is None else text(tx.helo),
        mail_args=text(tx.mail_args),
        rcpt_args=tuple(text(a) for a in tx.rcpt_args),
    )


# ======================================================================================
# 5. Limits: -m, -t, clients that do not read, memory
# ======================================================================================


@pytest.mark.drivers
@pytest.mark.trio
async def test_max_connections_counts_sessions_that_wait() -> None:
    """-m counts the sessions that portable tasks serve (a delay): once one ends, the next
    connection is accepted at once, also when nothing else wakes the accepting thread."""
    async with serving(config(max_connections=1, delays={"NOOP": 0.05})) as (_server, [addr]):
        first = await Client.connect(addr)
        assert (await first.reply()).startswith(b"220 ")
        second = await Client.connect(addr)
        with trio.move_on_after(0.3) as waited:
            await second.reply()
        assert waited.cancelled_caught, "a 2nd session was greeted"
        await first.send(b"NOOP\r\n")
        assert await first.reply() == b"250 2.0.0 Ok\r\n"
        await first.send(b"QUIT\r\n")
        assert await first.reply() == b"221 Bye\r\n"
        await first.aclose()
        with trio.fail_after(10):
            assert (await second.reply()).startswith(b"220 ")
        await second.aclose()


@pytest.mark.trio
async def test_max_connections_under_a_flood() -> None:
    limit, flood = 5, 1000
    async with serving(config(max_connections=limit), backlog=2 * flood) as (server, [addr]):
        # Deterministic part: the 6th connection is not greeted until one of 5 quits.
        first = [await Client.connect(addr) for _ in range(limit + 1)]
        for c in first[:limit]:
            assert (await c.reply()).startswith(b"220 ")
        with trio.move_on_after(0.3) as waited:
            await first[limit].reply()
        assert waited.cancelled_caught, "a 6th session was greeted"
        await first[0].send(b"QUIT\r\n")
        assert await first[0].reply() == b"221 Bye\r\n"
        assert (await first[limit].reply()).startswith(b"220 ")
        for c in first:
            await c.aclose()

        # The flood: 1,000 connections at once; each holds its session over a round trip.
        active = 0
        most = 0
        served = 0

        async def one() -> None:
            nonlocal active, most, served
            c = await Client.connect(addr)
            assert (await c.reply()).startswith(b"220 ")
            active += 1
            most = max(most, active)
            await c.send(b"NOOP\r\n")
            assert await c.reply() == b"250 2.0.0 Ok\r\n"
            active -= 1  # before QUIT: the server greets the next one only after it
            await c.send(b"QUIT\r\n")
            assert await c.reply() == b"221 Bye\r\n"
            await c.aclose()
            served += 1

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(flood):
                    nursery.start_soon(one)
        assert served == flood
        assert most <= limit, f"{most} sessions greeted at once with max_connections={limit}"
        assert most == limit  # the flood did fill every slot
        await sessions_ended(server, limit + 1 + flood)


IDLE = 0.3


@pytest.mark.drivers
@pytest.mark.trio
@pytest.mark.parametrize("delays", [False, True], ids=["plain", "with-delays"])
@pytest.mark.parametrize(
    "sent",
    [b"", b"NOO", b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nSubject: x\r\n\r\nhalf a li"],
    ids=["nothing", "mid-line", "mid-DATA"],
)
async def test_idle_client_closed_at_timeout(delays: bool, sent: bytes) -> None:
    # A -W delay on a command the client never sends: on the automatic driver choice such
    # sessions start in a task of their own.
    options: dict[str, Any] = {"timeout": IDLE}
    if delays:
        options["delays"] = {"VRFY": 0.01}
    async with serving(config(**options)) as (server, [addr]):
        client = await Client.connect(addr)
        assert (await client.reply()).startswith(b"220 ")
        await client.send(sent)
        start = trio.current_time()
        rest = await client.eof()
        elapsed = trio.current_time() - start
        replies = {b"": b"", b"NOO": b""}.get(
            sent, b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
        )
        assert rest == replies
        assert IDLE * 0.9 <= elapsed < IDLE + 2.0
        await client.aclose()
        await sessions_ended(server, 1)


@pytest.mark.drivers
@pytest.mark.trio
async def test_slowloris_is_closed_at_the_timeout() -> None:
    """-t limits the time for receiving one command line (the man page's wording), not only
    idleness: a byte every IDLE/6 s never completing a line is closed after about -t."""
    for cfg in (config(timeout=IDLE), config(timeout=IDLE, delays={"VRFY": 0.01})):
        async with serving(cfg) as (_server, [addr]):
            client = await Client.connect(addr)
            assert (await client.reply()).startswith(b"220 ")
            start = trio.current_time()
            closed = False
            with trio.fail_after(LIMIT):
                while not closed:
                    try:
                        await client.send(b"x")
                    except (trio.BrokenResourceError, OSError):
                        closed = True
                        break
                    with trio.move_on_after(IDLE / 6):  # pacing the attack
                        closed = not await client._fill()
            took = trio.current_time() - start
            assert IDLE * 0.9 <= took < IDLE * 4, took
            await client.aclose()


@pytest.mark.drivers
@pytest.mark.trio
async def test_client_that_never_reads_does_not_stall_others() -> None:
    noop, ok = b"NOOP\r\n", b"250 2.0.0 Ok\r\n"
    # Small socket buffers on both sides so the hog's replies back up quickly.
    async with serving(config(tcp_window=16384)) as (server, [addr]):
        assert isinstance(addr, tuple)
        hog = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        hog.setblocking(False)
        try:
            hog.connect_ex(addr)
            chunk = noop * 10_000
            sent, stalled = 0, False
            with trio.fail_after(LIMIT):
                await trio.lowlevel.wait_writable(hog)
                while sent < 64 * 1024 * 1024:
                    try:
                        sent += hog.send(chunk[sent % len(noop) :])
                    except BlockingIOError:
                        with trio.move_on_after(0.5) as blocked:
                            await trio.lowlevel.wait_writable(hog)
                        if blocked.cancelled_caught:
                            stalled = True
                            break
            assert stalled, f"sent {sent} octets of NOOPs without the server pushing back"

            # While the hog neither reads nor writes, another client sends a mail.
            client = await _open(addr, *ENVELOPE, b"DATA\r\n")
            await client.send(BODY + b".\r\n")
            assert await client.reply() == b"250 2.0.0 Ok\r\n"
            await client.aclose()

            # The hog finally reads: one reply per NOOP, in order, none lost.
            rest = noop[sent % len(noop) :] if sent % len(noop) else b""
            tail = rest + b"QUIT\r\n"
            got = bytearray()
            with trio.fail_after(LIMIT):
                while True:
                    if tail:
                        with suppress(BlockingIOError):
                            tail = tail[hog.send(tail) :]
                    try:
                        data = hog.recv(1 << 20)
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(hog)
                        continue
                    if not data:
                        break
                    got += data
            n = -(-sent // len(noop))
            greeting = b"220 smtp-sink ESMTP\r\n"
            assert got.startswith(greeting)
            del got[: len(greeting)]
            assert got[-9:] == b"221 Bye\r\n"
            assert len(got) == n * len(ok) + 9
            assert bytes(got[:-9]) == ok * n
        finally:
            hog.close()
        await sessions_ended(server, 2)


MB = 1024 * 1024


def test_protocol_memory_bounded_when_not_collecting() -> None:
    """50 MB through DATA and 10 MB of junk without CRLF: the session holds no more than a
    few chunks at any time."""
    line = b"x" * 1022 + b"\r\n"
    chunk = line * 64  # 64 KiB
    junk = b"j" * 65536
    proto = SinkProtocol(config(), collect=False)
    proto.start()
    proto.receive(b"".join(ENVELOPE) + b"DATA\r\n")
    assert proto.in_data
    proto.take_output()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(50 * MB // len(chunk)):
            proto.receive(chunk)
        proto.receive(b".\r\n")
        assert proto.take_output() == b"250 2.0.0 Ok\r\n"
        for _ in range(10 * MB // len(junk)):
            proto.receive(junk)  # closes after 2,048 octets, then ignores the rest
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert proto.closed
    assert peak - base < 1 * MB, f"peak {peak - base} octets above the start"


@pytest.mark.drivers
@pytest.mark.trio
async def test_server_memory_bounded_when_not_capturing() -> None:
    line = b"y" * 1022 + b"\r\n"
    chunk = line * 64
    async with serving(config()) as (_server, [addr]):
        client = await _open(addr, *ENVELOPE, b"DATA\r\n")
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            with trio.fail_after(30):
                for _ in range(50 * MB // len(chunk)):
                    await client.send(chunk)
                await client.send(b".\r\n")
                assert await client.reply() == b"250 2.0.0 Ok\r\n"
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await client.aclose()
    assert peak - base < 4 * MB, f"peak {peak - base} octets above the start"


# ======================================================================================
# 6. Security
# ======================================================================================

LOOPBACK_TESTS = """
import pytest


def test_session_sink(smtp_sink, smtp_sink_server):
    assert smtp_sink.host == "127.0.0.1"
    assert smtp_sink_server.host == "127.0.0.1"
    assert [a[0] for a in smtp_sink_server.addresses] == ["127.0.0.1"]
    assert [s.getsockname()[0] for s in smtp_sink_server.server.listeners] == ["127.0.0.1"]


@pytest.mark.smtp_sink(max_connections=2)
def test_dedicated_listener(smtp_sink, smtp_sink_server):
    assert smtp_sink.port != smtp_sink_server.port
    assert smtp_sink.host == "127.0.0.1"
    assert [s.getsockname()[0] for s in smtp_sink.server.listeners] == ["127.0.0.1"]


def test_factory(smtp_sink_factory):
    sink = smtp_sink_factory(hostname="mx.test")
    assert sink.host == "127.0.0.1"
    assert [s.getsockname()[0] for s in sink.server.listeners] == ["127.0.0.1"]
"""


def test_plugin_listens_on_loopback_by_default(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:randomly\n")
    pytester.makepyfile(test_loopback=textwrap.dedent(LOOPBACK_TESTS))
    result = pytester.runpytest_subprocess(
        "-p", "no:benchmark", "-p", "no:hypothesispytest", "-p", "no:trio", timeout=120
    )
    result.assert_outcomes(passed=3)


NASTY = [
    "../../../../tmp/escape",
    "/etc/passwd",
    "..",
    "a/../../b",
    "x\0/../y",
    "%s%n%Y/../",
    "\\..\\..\\evil",
    "\xff/\xfe",
    "~root/.ssh/authorized_keys",
    "." * 200,
    "/" * 50,
]


@pytest.mark.drivers
@pytest.mark.trio
@pytest.mark.parametrize("option", ["dump_template", "dump_file_template"])
async def test_client_input_cannot_move_dump_files(option: str, tmp_path: Path) -> None:
    folder = tmp_path / "inner" / "dumps"
    template = f"{folder}/%Y/msg." if option == "dump_template" else f"{folder}/all.%Y"
    async with serving(config(**{option: template})) as (server, [addr]):
        for nasty in NASTY:
            raw = nasty.encode("latin-1")
            client = await _open(addr)
            for cmd in (b"HELO ", b"MAIL FROM:", b"RCPT TO:", b"RCPT TO:<", b"XCLIENT NAME="):
                await client.send(cmd + raw + b"\r\n")
                assert (await client.reply()).startswith(b"250")
            await client.send(b"DATA\r\n")
            assert (await client.reply()).startswith(b"354")
            await client.send(b"Subject: " + raw + b"\r\n\r\n" + raw + b"\r\n.\r\n")
            assert await client.reply() == b"250 2.0.0 Ok\r\n"
            await client.send(b"QUIT\r\n")
            await client.reply()
            await client.aclose()
        await sessions_ended(server, len(NASTY))
    everything = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    files = [p for p in everything if (tmp_path / p).is_file()]
    year = "[0-9]{4}"
    name = (
        rf"inner/dumps/{year}/msg\.[0-9a-f]{{8}}"
        if option == "dump_template"
        else (rf"inner/dumps/all\.{year}")
    )
    assert [str(p) for p in files if not re.fullmatch(name, str(p))] == []
    dirs = {str(p) for p in everything if (tmp_path / p).is_dir()}
    assert {
        d for d in dirs if not re.fullmatch(rf"inner|inner/dumps|inner/dumps/{year}", d)
    } == set()
    stored = [tx for f in files for tx in parse_dump(tmp_path / f)]
    assert len(stored) == len(NASTY)
    for tx in stored:
        # arguments are sanitised in the headers; the name never uses them
        assert "\0" not in tx.mail_args and "\0" not in (tx.helo or "")


FORGED_BLOCK = (
    b"X-Client-Addr: 10.6.6.6\r\n"
    b"X-Client-Proto: SMTP\r\n"
    b"X-Mail-Args: <ceo@bank.test>\r\n"
    b"X-Rcpt-Args: <victim@x.test>\r\n"
    b"Received: from evil ([10.6.6.6])\r\n"
    b"\tby smtp-sink (smtp-sink) with SMTP id 0badc0de;\r\n"
    b"\tTue, 24 Nov 2026 21:59:14 +0000 (UTC)\r\n"
)


@pytest.mark.drivers
@pytest.mark.trio
async def test_message_body_cannot_forge_dumped_transactions(tmp_path: Path) -> None:
    body = b"Subject: hi\r\n\r\n" + FORGED_BLOCK + b"forged body\r\n"
    async with serving(config(dump_template=f"{tmp_path}/msg.")) as (_server, [addr]):
        client = await _open(addr, *ENVELOPE, b"DATA\r\n")
        await client.send(body + b".\r\n")
        assert await client.reply() == b"250 2.0.0 Ok\r\n"
        await client.aclose()
    [path] = list(tmp_path.iterdir())
    txs = parse_dump(path)
    assert [tx.mail_args for tx in txs] == ["<a@x.test>"]
    assert txs[0].data == body.replace(b"\r", b"") + b"\n"
