"""Hypothesis properties of the sans-IO protocol, dump_body and Transaction.render."""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pytest_smtp_sink.core.argv import parse_argv
from pytest_smtp_sink.core.config import SinkConfig
from pytest_smtp_sink.core.events import (
    Abort,
    Close,
    Delay,
    Event,
    MessageEnd,
    MessageReceived,
    ReadDelay,
)
from pytest_smtp_sink.core.framing import dump_body
from pytest_smtp_sink.core.protocol import SinkProtocol
from pytest_smtp_sink.dump.transaction import Transaction, format_date, received_value

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Configurations worth mixing (argv form). -A is left out of the chunking property: what
# it parses after DATA depends on what was already read (reference §9.4).
CONFIGS: list[list[str]] = [
    [],
    ["-L"],
    ["-e"],
    ["-P"],
    ["-v", "-s", "connect,helo,ehlo,mail,rcpt,data,.,rset,noop,quit,auth"],
    ["-f", "rcpt", "-r", "."],
    ["-L", "-f", "."],
    ["-L", "-r", ".", "-b", "452 4.2.2 mailbox full"],
    ["-W", "noop:1", "-w", "2", "-W", ".:1:50"],
    ["-W", "connect:1", "-W", "rcpt:1:30", "-L"],
    ["-q", "vrfy"],
    ["-Q", "xclient"],
    ["-C", "-F", "-a", "-8", "-E", "-N", "-p"],
    ["-H", "1", "-S", "X\\n"],
    ["-f", "connect", "-r", "helo,ehlo,lhlo"],
]
ABORT_CONFIGS: list[list[str]] = [["-A", "1"], ["-A", "0", "-w", "1"]]


def config_of(opts: list[str]) -> SinkConfig:
    return parse_argv([*opts, "127.0.0.1:25", "10"]).config


# ------------------------------------------------------------------ input strategy

addresses = st.sampled_from([b"<a@b>", b"<>", b"<x@example.com> SIZE=10", b"", b":<c>"])
hello = st.sampled_from([b"HELO", b"EHLO", b"LHLO", b"helo", b"ehlo", b"lhlo"])
verbs = st.sampled_from(
    [
        b"HELO",
        b"EHLO",
        b"LHLO",
        b"MAIL",
        b"RCPT",
        b"DATA",
        b".",
        b"RSET",
        b"NOOP",
        b"VRFY",
        b"XCLIENT",
        b"XFORWARD",
        b"AUTH",
        b"QUIT",
        b"ETRN",
        b"CONNECT",
        b"STARTTLS",
        b"mail",
        b"rcpt",
        b"data",
        b"rset",
    ]
)
printable = st.binary(max_size=20).map(lambda b: bytes(c for c in b if 32 < c < 127))

body_line = st.one_of(
    st.sampled_from([b".", b"..", b"...x", b".x", b"", b"\r", b"x\r", b".\r", b"\n.", b"\0"]),
    st.binary(max_size=40).filter(lambda b: b"\r\n" not in b),
)


@st.composite
def data_body(draw: st.DrawFn) -> bytes:
    body = b"".join(line + b"\r\n" for line in draw(st.lists(body_line, max_size=8)))
    return body + draw(st.sampled_from([b".\r\n", b".\r\n", b"\r\n.\r\n", b""]))


@st.composite
def dialogue(draw: st.DrawFn) -> bytes:
    rcpts = draw(st.integers(0, 3))
    out = draw(hello) + b" client.example\r\n"
    out += b"MAIL FROM:" + draw(addresses) + b"\r\n"
    out += b"".join(b"RCPT TO:" + draw(addresses) + b"\r\n" for _ in range(rcpts))
    out += b"DATA\r\n" + draw(data_body())
    return out


piece = st.one_of(
    dialogue(),
    st.tuples(verbs, st.sampled_from([b"", b" ", b"\t", b"  "]), printable).map(
        lambda t: t[0] + t[1] + t[2] + b"\r\n"
    ),
    st.sampled_from(
        [
            b"AUTH PLAIN AGZvbwBiYXI=\r\n",
            b"AUTH PLAIN\r\n",
            b"AUTH LOGIN\r\n",
            b"Zm9v\r\n",
            b"*\r\n",
            b"AUTH LOGIN Zm9v\r\n",
            b"AUTH X\r\n",
            b"\r\n",
            b"   \r\n",
            b"NO\0OP\r\n",
            b"NOOP\n",
            b"QUIT\r\r\n",
            b"\xff\xfe\r\n",
            b".\r\n",
            b"RSET\r\n",
            b"NOOP\r\n",
        ]
    ),
    st.binary(max_size=30),  # junk, NULs, 8-bit, bare CR and LF
    st.integers(2040, 2052).map(lambda n: b"N" * n + b"\r\n"),  # around the line limit
    data_body(),
)
streams = st.lists(piece, max_size=12).map(b"".join)


# ------------------------------------------------------------------------ driving


@dataclass
class Run:
    output: bytes = b""
    events: list[Event] = field(default_factory=list)


def drive(config: SinkConfig, chunks: list[bytes], store: list[bool]) -> Run:
    """Feed the chunks (then EOF), answering every pause at once."""
    p = SinkProtocol(config, "127.0.0.1", collect=True, rng=random.Random(7), clock=lambda: 1e9)
    run = Run()
    stores = iter(store * 100)

    def pump() -> None:
        while True:
            run.output += p.take_output()
            evs = p.take_events()
            if not evs:
                return
            for ev in evs:
                run.events.append(ev)
                if isinstance(ev, Delay):
                    p.delay_elapsed()
                elif isinstance(ev, ReadDelay):
                    p.read_delay_elapsed()
                elif isinstance(ev, Abort):
                    p.abort_elapsed()
                elif isinstance(ev, MessageReceived):
                    p.message_stored(next(stores, True))

    p.start()
    pump()
    for chunk in chunks:
        if chunk:
            p.receive(chunk)
            pump()
    p.receive(b"")
    pump()
    return run


def without_read_delays(events: list[Event]) -> list[Event]:
    """-H pauses before the next read from the client: where it comes, and how often, is up
    to how the bytes arrived (input already received is processed without waiting)."""
    return [e for e in events if not isinstance(e, ReadDelay)]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    out, last = [], 0
    for point in points:
        out.append(data[last:point])
        last = point
    out.append(data[last:])
    return out


FINAL = re.compile(rb"^[0-9]{3} ", re.M)


def final_replies(output: bytes) -> int:
    return len(FINAL.findall(output))


# ------------------------------------------------------------------ (a) chunking


@SETTINGS
@given(
    opts=st.sampled_from(CONFIGS),
    data=streams,
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
    store=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_chunking_does_not_matter(
    opts: list[str], data: bytes, cuts: list[int], store: list[bool]
) -> None:
    config = config_of(opts)
    whole = drive(config, [data], store)
    chunked = drive(config, split(data, cuts), store)
    assert chunked.output == whole.output
    assert without_read_delays(chunked.events) == without_read_delays(whole.events)


@SETTINGS
@given(opts=st.sampled_from(CONFIGS), data=streams)
def test_byte_by_byte_same_as_whole(opts: list[str], data: bytes) -> None:
    assume(len(data) < 3000)
    config = config_of(opts)
    whole = drive(config, [data], [True])
    single = drive(config, [data[i : i + 1] for i in range(len(data))], [True])
    assert single.output == whole.output
    assert without_read_delays(single.events) == without_read_delays(whole.events)


@SETTINGS
@given(opts=st.sampled_from(CONFIGS), data=streams, store=st.lists(st.booleans(), min_size=1))
def test_line_by_line_same_as_whole(opts: list[str], data: bytes, store: list[bool]) -> None:
    """A read per line, as lock-step clients send: the paths that take a read without
    buffering it (one whole command line; message data) agree with the buffered one."""
    config = config_of(opts)
    whole = drive(config, [data], store)
    pieces = re.findall(rb".*?\r\n|.+", data, re.S)
    assert b"".join(pieces) == data
    lines = drive(config, pieces, store)
    assert lines.output == whole.output
    assert without_read_delays(lines.events) == without_read_delays(whole.events)


TRICKY = (
    b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
    b".x\r\n..\r\nx\r\r\n\r\n.\r\nNOOP\r\nMAIL FROM:<>\r\nRCPT TO:<e>\r\nDATA\r\n\r\n.\r\nQUIT\r\n"
)


@pytest.mark.parametrize("opts", [[], ["-L"], ["-H", "1"]])
def test_every_split_of_a_dialogue(opts: list[str]) -> None:
    """Every way to cut a dialogue in two or three reads gives the same replies: the cuts
    hypothesis draws rarely fall between the octets of an end of data."""
    config = config_of(opts)
    whole = drive(config, [TRICKY], [True])
    n = len(TRICKY)
    for i in range(1, n):
        for j in range(i, n, 3):
            cut = drive(config, [TRICKY[:i], TRICKY[i:j], TRICKY[j:]], [True])
            assert cut.output == whole.output, (i, j)
            assert without_read_delays(cut.events) == without_read_delays(whole.events)


# --------------------------------------------------- (b) no crash, one reply per command


@SETTINGS
@given(
    opts=st.sampled_from(CONFIGS + ABORT_CONFIGS),
    data=streams,
    store=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_at_most_one_reply_per_command(opts: list[str], data: bytes, store: list[bool]) -> None:
    config = config_of(opts)
    p = SinkProtocol(config, "127.0.0.1", collect=True, rng=random.Random(3), clock=lambda: 1e9)
    stores = iter(store * 100)
    aborted = False

    def step(feed: bytes | None) -> tuple[bytes, list[Event]]:
        nonlocal aborted
        if feed is None:
            p.start()
        else:
            p.receive(feed)
        out = b""
        seen: list[Event] = []
        while True:
            out += p.take_output()
            evs = p.take_events()
            if not evs:
                return out, seen
            for ev in evs:
                seen.append(ev)
                if isinstance(ev, Delay):
                    p.delay_elapsed()
                elif isinstance(ev, ReadDelay):
                    p.read_delay_elapsed()
                elif isinstance(ev, MessageReceived):
                    p.message_stored(next(stores, True))
                elif isinstance(ev, Abort):
                    aborted = True  # the 550 comes after the wait: not acknowledged here

    out, seen = step(None)
    closed_at_once = any(isinstance(e, Close) for e in seen)
    assert final_replies(out) == (0 if closed_at_once else 1)  # the greeting

    # Feed one line at a time, so that each feed completes at most one command.
    pieces = re.findall(rb".*?\r\n|.+$", data, re.S)
    assert b"".join(pieces) == data
    for piece in pieces:
        was_closed, was_data, was_aborted = p.closed, p.in_data, aborted
        rcpts_before = p.rcpts
        out, seen = step(piece)
        replies = final_replies(out)
        if was_closed or was_aborted:
            assert out == b"" and seen == []
            continue
        ended = any(isinstance(e, MessageEnd) for e in seen)
        if ended and config.lmtp:
            assert 1 <= replies <= max(1, rcpts_before) or p.closed
            continue
        assert replies <= 1, (piece, out)
        complete = piece.endswith(b"\r\n")
        if complete and not was_data and len(piece) <= 2048:
            # a complete command line: exactly one reply, unless it closed the session
            closed = any(isinstance(e, Close) for e in seen)
            assert replies == 1 or (replies == 0 and closed), (piece, out)
        if not complete:
            assert replies == 0
    step(b"")
    assert p.closed or aborted  # after -A nothing more is read, EOF included


# ------------------------------------------------------------ (c) dump_body round trip

message_line = st.binary(max_size=30).filter(lambda b: b"\r\n" not in b)


@SETTINGS
@given(st.lists(message_line, max_size=15))
def test_dump_body_round_trip(message_lines: list[bytes]) -> None:
    message = b"".join(line + b"\r\n" for line in message_lines)
    stuffed = b"".join(
        (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in message_lines
    )
    assert dump_body(stuffed + b".\r\n") == message.replace(b"\r", b"") + b"\n"


@SETTINGS
@given(st.lists(message_line, max_size=15), st.lists(st.integers(0, 10_000), max_size=6))
def test_protocol_data_round_trip(message_lines: list[bytes], cuts: list[int]) -> None:
    message = b"".join(line + b"\r\n" for line in message_lines)
    stuffed = b"".join(
        (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in message_lines
    )
    wire = b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n" + stuffed + b".\r\nNOOP\r\n"
    run = drive(SinkConfig(), split(wire, cuts), [True])
    [ev] = [e for e in run.events if isinstance(e, MessageReceived)]
    tx = Transaction.from_envelope(ev.envelope)
    assert tx.data == message.replace(b"\r", b"") + b"\n"
    assert run.output.endswith(
        b"354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
    )


# -------------------------------------------------------------- (d) render and parse

text = st.text(alphabet=string.printable[:95], max_size=30)  # printable ASCII, no newline


@st.composite
def transactions(draw: st.DrawFn) -> Transaction:
    addr = draw(st.sampled_from(["127.0.0.1", "ipv6:::1", "local", "10.1.2.3"]))
    proto = draw(st.sampled_from(["SMTP", "ESMTP", "LMTP"]))
    helo = draw(st.none() | text)
    queue_id = f"{draw(st.integers(0, 2**31 - 1)):08x}"
    hostname = draw(st.sampled_from(["smtp-sink", "mx.example", "sink"]))
    date = format_date(draw(st.integers(0, 2**32)))
    return Transaction(
        client_addr=addr,
        client_proto=proto,
        helo=helo,
        mail_args=draw(text),
        rcpt_args=tuple(draw(st.lists(text, max_size=4))),
        queue_id=queue_id,
        received=received_value(helo, addr, hostname, proto, queue_id, date),
        data=draw(st.binary(max_size=60)),
        start_string=draw(st.sampled_from(["", "From MAILER-DAEMON\n", "START\nA\tXq\\"])),
    )


def parse_rendered(raw: bytes, start_string: str) -> Transaction:
    """A tiny parser of one rendered dump (the header order of reference §14.2)."""
    start = start_string.encode("latin-1")
    assert raw.startswith(start)
    rest = raw[len(start) :]
    values: dict[str, list[str]] = {}
    while True:
        line, _, rest = rest.partition(b"\n")
        name, sep, value = line.decode("latin-1").partition(": ")
        assert sep, line
        if name == "Received":
            by, _, rest = rest.partition(b"\n")
            date, _, rest = rest.partition(b"\n")
            assert by.startswith(b"\tby ") and date.startswith(b"\t")
            received = "\n".join([value, by.decode(), date.decode()])
            break
        values.setdefault(name, []).append(value)
    queue_id = re.search(r" id ([0-9a-f]{8});", received)
    assert queue_id is not None
    [addr], [proto], [mail] = (
        values["X-Client-Addr"],
        values["X-Client-Proto"],
        values["X-Mail-Args"],
    )
    helo = values.get("X-Helo-Args", [None])
    assert len(helo) == 1
    return Transaction(
        client_addr=addr,
        client_proto=proto,
        helo=helo[0],
        mail_args=mail,
        rcpt_args=tuple(values.get("X-Rcpt-Args", [])),
        queue_id=queue_id.group(1),
        received=received,
        data=rest,
        start_string=start_string,
    )


@SETTINGS
@given(transactions())
def test_render_parse_round_trip(tx: Transaction) -> None:
    rendered = tx.render()
    assert rendered.endswith(tx.data)
    assert parse_rendered(rendered, tx.start_string) == tx


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from([b"\r", b"\n", b".", b"x", b"\r\n", b"\r\n.", b"\xff"])),
    cuts=st.lists(st.integers(min_value=1, max_value=7), min_size=1),
)
def test_collected_data_is_dump_body_whatever_the_chunks(
    pieces: list[bytes], cuts: list[int]
) -> None:
    """The collected message is transformed as it arrives; any chunking gives dump_body."""
    raw = b"".join(pieces) + b"\r\n.\r\n"
    assume((b"\r\n" + raw).find(b"\r\n.\r\n") == len(raw) - 3)  # the only terminator
    proto = SinkProtocol(SinkConfig(), collect=True)
    proto.start()
    proto.receive(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
    pos, i = 0, 0
    while pos < len(raw):
        step = cuts[i % len(cuts)]
        proto.receive(raw[pos : pos + step])
        pos, i = pos + step, i + 1
    [ev] = [e for e in proto.take_events() if isinstance(e, MessageReceived)]
    tx = Transaction.from_envelope(ev.envelope)
    assert tx.data == dump_body(raw)
