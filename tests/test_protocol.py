"""SinkProtocol driven directly, without sockets: replies byte for byte, events, transactions.

The expected bytes come from the reference (smtp-sink-behaviour.md) and its transcripts,
except where DESIGN §3 differs on purpose (AUTH exchange, one reply per command, 451 on a
failed store, delays keep command order).
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterator
from typing import Any

import pytest
from support import local_tz

from pytest_smtp_sink.core.argv import parse_argv
from pytest_smtp_sink.core.config import SinkConfig, from_options
from pytest_smtp_sink.core.events import (
    Abort,
    Close,
    CommandLogged,
    Delay,
    Event,
    FaultInjected,
    LogLine,
    MessageAnswered,
    MessageEnd,
    MessageReceived,
    QuitReceived,
    ReadDelay,
)
from pytest_smtp_sink.core.framing import dump_body, sanitize
from pytest_smtp_sink.core.protocol import SinkProtocol
from pytest_smtp_sink.core.replies import ABORT_REPLY, Tables
from pytest_smtp_sink.dump.transaction import Transaction, format_date, with_queue_id

# 2026-11-24 22:06:54 UTC, the time of the real dumps in reference §14.6
T_DUMP = datetime.datetime(2026, 11, 24, 22, 6, 54, tzinfo=datetime.timezone.utc).timestamp()

GREETING = b"220 smtp-sink ESMTP\r\n"
EHLO_ALL = (
    b"250-smtp-sink\r\n"
    b"250-PIPELINING\r\n"
    b"250-8BITMIME\r\n"
    b"250-AUTH PLAIN LOGIN\r\n"
    b"250-XCLIENT NAME HELO\r\n"
    b"250-XFORWARD NAME ADDR PROTO HELO\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250-DSN\r\n"
    b"250 \r\n"
)
OK = b"250 2.0.0 Ok\r\n"
MAIL_OK = b"250 2.1.0 Ok\r\n"
RCPT_OK = b"250 2.1.5 Ok\r\n"
DATA_OK = b"354 End data with <CR><LF>.<CR><LF>\r\n"
LMTP_OK = b"250 2.2.0 Ok\r\n"
BYE = b"221 Bye\r\n"
R421 = b"421 4.0.0 Server closing connection\r\n"
UNKNOWN = b"500 5.5.1 Error: unknown command\r\n"
EMPTY = b"500 5.5.2 Error: unknown command\r\n"
NESTED = b"503 5.5.1 Error: nested MAIL command\r\n"
NEED_MAIL = b"503 5.5.1 Error: need MAIL command\r\n"
NEED_RCPT = b"503 5.5.1 Error: need RCPT command\r\n"
HARD = b"500 5.3.0 Error: command failed\r\n"
SOFT = b"450 4.3.0 Error: command failed\r\n"
STORE_FAILED = b"451 4.3.0 Error: queue file write error\r\n"
AUTH_OK = b"235 2.7.0 Authentication successful\r\n"

ENVELOPE = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
ENVELOPE_REPLIES = MAIL_OK + RCPT_OK + DATA_OK


class Sink:
    """Drives one SinkProtocol; by default resumes delays and stores messages at once."""

    def __init__(
        self,
        *opts: str,
        config: SinkConfig | None = None,
        addr: str = "127.0.0.1",
        collect: bool | None = True,
        seed: int = 1,
        clock: float = T_DUMP,
        auto: bool = True,
        store_ok: bool = True,
    ) -> None:
        if config is None:
            config = parse_argv([*opts, "127.0.0.1:25", "10"]).config
        self.auto = auto
        self.store_ok = store_ok
        self.events: list[Event] = []
        self.p = SinkProtocol(
            config, addr, collect=collect, rng=random.Random(seed), clock=lambda: clock
        )
        self.p.start()
        self.greeting = self.pump()

    def pump(self) -> bytes:
        out = b""
        while True:
            out += self.p.take_output()
            evs = self.p.take_events()
            if not evs:
                return out
            for ev in evs:
                self.events.append(ev)
                if not self.auto:
                    continue
                if isinstance(ev, Delay):
                    self.p.delay_elapsed()
                elif isinstance(ev, MessageReceived):
                    self.p.message_stored(self.store_ok)

    def send(self, data: bytes) -> bytes:
        self.p.receive(data)
        return self.pump()

    def take(self) -> list[Event]:
        evs = self.events
        self.events = []
        return evs

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def transactions(self) -> list[Transaction]:
        return [Transaction.from_envelope(e.envelope) for e in self.of(MessageReceived)]


def lines(*cmds: str) -> bytes:
    return b"".join(c.encode("latin-1") + b"\r\n" for c in cmds)


@pytest.fixture
def utc() -> Iterator[None]:
    with local_tz("UTC"):
        yield


@pytest.fixture
def new_york() -> Iterator[None]:
    with local_tz("America/New_York"):
        yield


# ------------------------------------------------------------------------ greeting


@pytest.mark.parametrize(
    ("opts", "greeting"),
    [
        ([], b"220 smtp-sink ESMTP\r\n"),
        (["-h", "mx.example.org"], b"220 mx.example.org ESMTP\r\n"),
        (["-h", "mx.example.org", "-e"], b"220 mx.example.org\r\n"),
        (["-P", "-h", "foo"], b"220 ********\r\n"),
        (["-P", "-e"], b"220 ********\r\n"),
        (["-L"], b"220 smtp-sink ESMTP\r\n"),
        (["-L", "-e"], b"220 smtp-sink\r\n"),
        (["-L", "-P"], b"220 ********\r\n"),
        (["-f", "connect"], HARD),
        (["-r", "connect"], SOFT),
        (["-r", "connect", "-b", "421 4.3.2 go away"], b"421 4.3.2 go away\r\n"),
        (["-Q", "connect"], R421),
        (["-q", "connect"], b""),
        (["-f", "connect", "-q", "connect"], b""),
    ],
)
def test_greeting(opts: list[str], greeting: bytes) -> None:
    assert Sink(*opts).greeting == greeting


def test_rejected_greeting_session_goes_on() -> None:
    s = Sink("-f", "connect")
    assert s.send(b"NOOP\r\n") == OK
    assert not s.p.closed


@pytest.mark.parametrize("flag", ["-q", "-Q"])
def test_closed_greeting(flag: str) -> None:
    s = Sink(flag, "connect")
    assert s.take() == [Close(None)]
    assert s.p.closed
    assert s.send(b"NOOP\r\n") == b""
    assert s.take() == []


def test_delayed_greeting() -> None:
    s = Sink("-W", "connect:3", auto=False)
    assert s.greeting == b""
    assert s.take() == [Delay(3.0)]
    assert s.p.paused
    assert s.send(b"NOOP\r\n") == b""  # no input is read before the greeting
    s.p.delay_elapsed()
    assert s.pump() == GREETING + OK


def test_delayed_and_rejected_greeting() -> None:
    # Q8: Postfix hangs; we send the rejection after the delay and go on.
    s = Sink("-W", "connect:1", "-f", "connect", auto=False)
    assert s.take() == [Delay(1.0)]
    s.p.delay_elapsed()
    assert s.pump() == HARD
    assert s.send(b"NOOP\r\n") == OK


def test_literal_connect_command_is_unknown() -> None:
    assert Sink("-f", "connect").send(b"CONNECT\r\n") == UNKNOWN


# --------------------------------------------------------------------- EHLO lines


def test_ehlo_all_lines() -> None:
    assert Sink().send(b"EHLO client.example\r\n") == EHLO_ALL


@pytest.mark.parametrize(
    ("opts", "removed"),
    [
        (["-p"], b"250-PIPELINING\r\n"),
        (["-f", "rcpt"], b"250-PIPELINING\r\n"),
        (["-r", "noop"], b"250-PIPELINING\r\n"),
        (["-8"], b"250-8BITMIME\r\n"),
        (["-a"], b"250-AUTH PLAIN LOGIN\r\n"),
        (["-C"], b"250-XCLIENT NAME HELO\r\n"),
        (["-F"], b"250-XFORWARD NAME ADDR PROTO HELO\r\n"),
        (["-E"], b"250-ENHANCEDSTATUSCODES\r\n"),
        (["-N"], b"250-DSN\r\n"),
        (["-q", "rcpt", "-Q", "mail"], b""),  # -q/-Q do not imply -p
    ],
)
def test_ehlo_line_removed(opts: list[str], removed: bytes) -> None:
    assert Sink(*opts).send(b"EHLO c\r\n") == EHLO_ALL.replace(removed, b"")


def test_ehlo_every_line_removed() -> None:
    s = Sink("-8", "-a", "-C", "-E", "-F", "-N", "-p", "-h", "mx")
    assert s.send(b"EHLO c\r\n") == b"250-mx\r\n250 \r\n"


def test_ehlo_hostname() -> None:
    assert Sink("-h", "mx.test").send(b"EHLO c\r\n") == EHLO_ALL.replace(b"smtp-sink", b"mx.test")


def test_lhlo_same_lines() -> None:
    s = Sink("-L", "-f", "rcpt")
    assert s.send(b"LHLO c\r\n") == EHLO_ALL.replace(b"250-PIPELINING\r\n", b"")


# ------------------------------------------------------------ command availability


@pytest.mark.parametrize(
    ("opts", "helo", "ehlo", "lhlo"),
    [
        ([], True, True, False),
        (["-e"], True, False, False),
        (["-P"], True, False, False),
        (["-L"], False, False, True),
        (["-L", "-e"], False, False, True),
    ],
)
def test_hello_commands_per_mode(opts: list[str], helo: bool, ehlo: bool, lhlo: bool) -> None:
    s = Sink(*opts)
    assert s.send(b"HELO x\r\n") == (b"250 smtp-sink\r\n" if helo else UNKNOWN)
    assert (s.send(b"EHLO x\r\n") == EHLO_ALL) is ehlo
    assert (s.send(b"LHLO x\r\n") == EHLO_ALL) is lhlo
    if not ehlo:
        assert s.send(b"EHLO x\r\n") == UNKNOWN
    if not lhlo:
        assert s.send(b"LHLO x\r\n") == UNKNOWN


def test_pix_transcript_t5() -> None:
    s = Sink("-P")
    assert s.greeting == b"220 ********\r\n"
    assert s.send(b"EHLO client.example\r\n") == UNKNOWN
    assert s.send(b"HELO client.example\r\n") == b"250 smtp-sink\r\n"
    assert s.send(b"QUIT\r\n") == BYE
    assert s.p.closed


@pytest.mark.parametrize(("opts", "ok"), [([], True), (["-C"], False), (["-F"], True)])
def test_xclient(opts: list[str], ok: bool) -> None:
    assert Sink(*opts).send(b"XCLIENT NAME=x\r\n") == (OK if ok else UNKNOWN)


@pytest.mark.parametrize(("opts", "ok"), [([], True), (["-F"], False), (["-C"], True)])
def test_xforward(opts: list[str], ok: bool) -> None:
    assert Sink(*opts).send(b"XFORWARD ADDR=1.2.3.4\r\n") == (OK if ok else UNKNOWN)


def test_auth_accepted_with_a() -> None:
    # -a only hides AUTH from EHLO (Q9)
    assert Sink("-a").send(b"AUTH PLAIN AGZvbwBiYXI=\r\n") == AUTH_OK


@pytest.mark.parametrize(
    "cmd", ["ETRN example.com", "STARTTLS", "BDAT 5 LAST", "HELP", "EXPN x", "CONNECT", "FOO bar"]
)
def test_not_implemented(cmd: str) -> None:
    assert Sink().send(lines(cmd)) == UNKNOWN


# ------------------------------------------------------------ replies and sequence


def test_transcript_t1() -> None:
    s = Sink()
    assert s.greeting == GREETING
    assert s.send(b"EHLO client.example\r\n") == EHLO_ALL
    assert s.send(b"MAIL FROM:<sender@example.com>\r\n") == MAIL_OK
    assert s.send(b"RCPT TO:<rcpt@example.com>\r\n") == RCPT_OK
    assert s.send(b"DATA\r\n") == DATA_OK
    assert s.send(b"Subject: hello\r\n\r\nbody text\r\n.\r\n") == OK
    assert s.send(b"QUIT\r\n") == BYE
    assert s.p.closed
    [tx] = s.transactions
    assert tx.data == b"Subject: hello\n\nbody text\n\n"


def test_transcript_t6() -> None:
    s = Sink()
    steps = [
        (b"\r\n", EMPTY),
        (b"   \r\n", EMPTY),
        (b"FOO bar\r\n", UNKNOWN),
        (b"LHLO x\r\n", UNKNOWN),
        (b"CONNECT\r\n", UNKNOWN),
        (b"ETRN example.com\r\n", UNKNOWN),
        (b"STARTTLS\r\n", UNKNOWN),
        (b"BDAT 5 LAST\r\n", UNKNOWN),
        (b"RCPT TO:<a@b>\r\n", NEED_MAIL),
        (b"DATA\r\n", NEED_RCPT),
        (b"MAIL FROM:<a@b>\r\n", MAIL_OK),
        (b"MAIL FROM:<c@d>\r\n", NESTED),
        (b"DATA\r\n", NEED_RCPT),
        (b"NOOP\n", b""),  # bare LF does not end the line
        (b"\r\n", UNKNOWN),  # the line was 'NOOP\n'
        (b"QUIT\r\r\n", UNKNOWN),
        (b"vrfy someone\r\n", OK),
        (b"AUTH LOGIN\r\n", b"334 VXNlcm5hbWU6\r\n"),  # ours: a real exchange
        (b"*\r\n", b"501 5.7.0 Authentication aborted\r\n"),
        (b"XCLIENT NAME=spike.porcupine.org\r\n", OK),
        (b".\r\n", OK),
        (b"QUIT\r\n", BYE),
    ]
    for sent, reply in steps:
        assert s.send(sent) == reply, sent
    assert s.p.closed


def test_normal_replies() -> None:
    s = Sink()
    assert s.send(b"HELO x\r\n") == b"250 smtp-sink\r\n"
    assert s.send(b"NOOP\r\n") == OK
    assert s.send(b"VRFY x\r\n") == OK
    assert s.send(b"XFORWARD NAME=x\r\n") == OK
    assert s.send(b"RSET\r\n") == MAIL_OK
    assert s.send(b"MAIL\r\n") == MAIL_OK  # no argument check at all
    assert s.send(b"RCPT\r\n") == RCPT_OK
    assert s.send(b"MAILFROM:<x>\r\n") == UNKNOWN


def test_helo_not_required_and_commands_case_insensitive() -> None:
    s = Sink()
    assert s.send(b"mail FROM:<a>\r\nRcPt TO:<b>\r\ndAtA\r\n") == ENVELOPE_REPLIES
    assert s.send(b"x\r\n.\r\n") == OK


@pytest.mark.parametrize("abort", ["RSET", "HELO x", "EHLO x"])
def test_commands_that_abort_the_transaction(abort: str) -> None:
    s = Sink()
    assert s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\n") == MAIL_OK + RCPT_OK
    s.send(lines(abort))
    assert s.send(b"DATA\r\n") == NEED_RCPT
    assert s.send(b"RCPT TO:<b>\r\n") == NEED_MAIL
    assert s.send(b"MAIL FROM:<a>\r\n") == MAIL_OK


def test_nested_mail_keeps_transaction() -> None:
    s = Sink()
    s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\n")
    assert s.send(b"MAIL FROM:<x>\r\n") == NESTED
    assert s.send(b"DATA\r\nhi\r\n.\r\n") == DATA_OK + OK
    [tx] = s.transactions
    assert tx.mail_args == "<a>" and tx.rcpt_args == ("<b>",)


def test_typed_dot_in_smtp_changes_nothing() -> None:
    s = Sink()
    s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\n")
    assert s.send(b".\r\n") == OK
    assert s.send(b"DATA\r\nhi\r\n.\r\n") == DATA_OK + OK


def test_after_end_of_data_a_new_transaction_is_needed() -> None:
    s = Sink()
    s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\nhi\r\n.\r\n")
    assert s.send(b"DATA\r\n") == NEED_RCPT
    assert s.send(b"RCPT TO:<b>\r\n") == NEED_MAIL


def test_quit_ignores_the_rest() -> None:
    s = Sink()
    assert s.send(b"QUIT\r\nNOOP\r\nNOOP\r\n") == BYE
    assert s.take() == [QuitReceived(), Close(None)]
    assert s.send(b"NOOP\r\n") == b""


def test_pipelined_batch_t8() -> None:
    s = Sink()
    out = s.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n")
    assert out == EHLO_ALL + MAIL_OK + RCPT_OK + RCPT_OK + DATA_OK
    assert s.send(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n") == OK + BYE
    assert s.p.closed


# --------------------------------------------------------------------------- AUTH


@pytest.mark.parametrize(
    ("dialogue"),
    [
        [(b"AUTH PLAIN AGZvbwBiYXI=\r\n", AUTH_OK)],
        [(b"auth plain AGZvbwBiYXI=\r\n", AUTH_OK)],
        [(b"AUTH PLAIN =\r\n", AUTH_OK)],
        [(b"AUTH PLAIN\r\n", b"334 \r\n"), (b"AGZvbwBiYXI=\r\n", AUTH_OK)],
        [
            (b"AUTH LOGIN\r\n", b"334 VXNlcm5hbWU6\r\n"),
            (b"Zm9v\r\n", b"334 UGFzc3dvcmQ6\r\n"),
            (b"YmFy\r\n", AUTH_OK),
        ],
        [(b"AUTH LOGIN Zm9v\r\n", b"334 UGFzc3dvcmQ6\r\n"), (b"YmFy\r\n", AUTH_OK)],
        [(b"AUTH PLAIN\r\n", b"334 \r\n"), (b"*\r\n", b"501 5.7.0 Authentication aborted\r\n")],
        [
            (b"AUTH LOGIN\r\n", b"334 VXNlcm5hbWU6\r\n"),
            (b"Zm9v\r\n", b"334 UGFzc3dvcmQ6\r\n"),
            (b"*\r\n", b"501 5.7.0 Authentication aborted\r\n"),
        ],
        [(b"AUTH PLAIN !!!\r\n", b"501 5.5.2 Error: invalid base64 data\r\n")],
        [
            (b"AUTH PLAIN\r\n", b"334 \r\n"),
            (b"abc\r\n", b"501 5.5.2 Error: invalid base64 data\r\n"),
        ],
        [(b"AUTH LOGIN %%\r\n", b"501 5.5.2 Error: invalid base64 data\r\n")],
        [
            (b"AUTH LOGIN\r\n", b"334 VXNlcm5hbWU6\r\n"),
            (b"@@\r\n", b"501 5.5.2 Error: invalid base64 data\r\n"),
        ],
        [(b"AUTH CRAM-MD5\r\n", b"504 5.5.4 Error: unsupported authentication mechanism\r\n")],
        [(b"AUTH\r\n", b"501 5.5.4 Syntax: AUTH mechanism\r\n")],
    ],
)
def test_auth(dialogue: list[tuple[bytes, bytes]]) -> None:
    s = Sink()
    for sent, reply in dialogue:
        assert s.send(sent) == reply, sent
    # back in command mode either way
    assert s.send(b"NOOP\r\n") == OK


def test_auth_twice() -> None:
    s = Sink()
    assert s.send(b"AUTH PLAIN AGZvbwBiYXI=\r\n") == AUTH_OK
    assert s.send(b"AUTH PLAIN AGZvbwBiYXI=\r\n") == b"503 5.5.1 Error: already authenticated\r\n"
    assert s.p.authenticated


def test_auth_after_failure_can_retry() -> None:
    s = Sink()
    s.send(b"AUTH PLAIN !!!\r\n")
    assert not s.p.authenticated
    assert s.send(b"AUTH PLAIN AGZvbwBiYXI=\r\n") == AUTH_OK


def test_auth_pipelined() -> None:
    s = Sink()
    out = s.send(b"AUTH LOGIN\r\nZm9v\r\nYmFy\r\nNOOP\r\n")
    assert out == b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n" + AUTH_OK + OK


@pytest.mark.parametrize(("flag", "reply"), [("-f", HARD), ("-r", SOFT)])
def test_auth_rejected(flag: str, reply: bytes) -> None:
    s = Sink(flag, "auth")
    assert s.send(b"AUTH PLAIN\r\n") == reply
    assert s.send(b"NOOP\r\n") == OK  # no 334 exchange started


# ------------------------------------------------------------------ line framing


def test_2046_octet_line_accepted() -> None:
    line = b"NOOP " + b"x" * 2041
    assert len(line) == 2046
    s = Sink()
    assert s.send(line + b"\r\n") == OK
    assert not s.p.closed


def test_2047_octet_line_closes_without_reply() -> None:
    s = Sink()
    assert s.send(b"NOOP " + b"x" * 2042 + b"\r") == b""
    assert not s.p.closed  # only when the LF arrives
    assert s.send(b"\n") == b""
    assert s.take() == [Close("command line too long")]
    assert s.p.closed


def test_2047_octet_line_in_one_piece() -> None:
    s = Sink()
    assert s.send(b"NOOP\r\n" + b"NOOP " + b"x" * 2042 + b"\r\nNOOP\r\n") == OK
    assert s.take() == [Close("command line too long")]


@pytest.mark.parametrize("last", [b"x", b"\r", b"\n", b"\0"])
def test_2048_octets_without_crlf_then_one_more(last: bytes) -> None:
    s = Sink()
    assert s.send(b"x" * 2048) == b""
    assert not s.p.closed
    assert s.send(last) == b""
    assert s.take() == [Close("command line too long")]


def test_long_line_aborts_transaction() -> None:
    s = Sink()
    s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\n")
    s.send(b"y" * 5000)
    assert s.p.closed
    assert not s.p.in_mail
    assert s.transactions == []


@pytest.mark.parametrize(
    "line",
    [b"NOOP\nNOOP", b"NOOP\n", b"QUIT\r", b"NOOP\rX", b"NO\0OP", b"\xffNOOP", b"NOOP\x0b"],
)
def test_odd_lines_are_unknown(line: bytes) -> None:
    s = Sink()
    assert s.send(line + b"\r\n") == UNKNOWN
    assert not s.p.closed


@pytest.mark.parametrize(
    "line", [b"NOOP\0junk", b"NOOP \0", b"  NoOp  extra args", b"\tNOOP", b" \t NOOP\targ", b"noop"]
)
def test_lines_accepted(line: bytes) -> None:
    assert Sink().send(line + b"\r\n") == OK


@pytest.mark.parametrize("line", [b"", b"   ", b"\t", b" \t ", b"\0NOOP", b"  \0 NOOP"])
def test_empty_lines(line: bytes) -> None:
    assert Sink().send(line + b"\r\n") == EMPTY


def test_crlf_split_across_reads() -> None:
    s = Sink()
    assert s.send(b"NOOP\r") == b""
    assert s.send(b"\n") == OK
    assert s.send(b"NO") == b""
    assert s.send(b"OP\r\nNO") == OK
    assert s.send(b"OP\r\n") == OK


def test_tab_delimits_and_arguments_are_not_trimmed() -> None:
    s = Sink("-s", "mail,rcpt")
    s.send(b"MAIL\tFROM:<a>\r\nRCPT  TO:<b> \r\n")
    assert [e.text for e in s.of(CommandLogged)] == ["MAIL FROM:<a>", "RCPT  TO:<b> "]
    s.send(b"DATA\r\n.\r\n")
    [tx] = s.transactions
    assert tx.mail_args == "<a>"
    assert tx.rcpt_args == ("<b> ",)


def test_eof_closes_quietly() -> None:
    s = Sink()
    s.send(b"MAIL FROM:<a>\r\nNOOP\r\nNOO")
    assert s.send(b"") == b""
    assert s.take() == [Close(None)]
    assert s.p.closed and not s.p.in_mail


def test_eof_mid_data_discards_message() -> None:
    s = Sink()
    s.send(ENVELOPE + b"partial body\r\n")
    s.send(b"")
    assert s.of(MessageReceived) == [] and s.of(MessageEnd) == []
    assert s.of(Close) == [Close(None)]


def test_pipelined_commands_before_eof_are_answered() -> None:
    s = Sink()
    s.p.receive(b"NOOP\r\nRSET\r\n")
    s.p.receive(b"")
    assert s.pump() == OK + MAIL_OK


# ---------------------------------------------------------------- end of data


def data_session(body: bytes, *opts: str) -> tuple[Sink, bytes]:
    s = Sink(*opts)
    assert s.send(ENVELOPE) == ENVELOPE_REPLIES
    return s, s.send(body)


@pytest.mark.parametrize(
    ("body", "dumped"),
    [
        (b".\r\n", b"\n"),  # empty message straight after 354
        (b"hi\r\n.\r\n", b"hi\n\n"),
        (b"hi\r\r\n.\r\n", b"hi\n\n"),  # the second CR restarts the match
        (b"Subject: x\r\n\r\nhello\r\n.\r\n", b"Subject: x\n\nhello\n\n"),
        (b"..two dots\r\n.\r\n", b".two dots\n\n"),
        (b".no stuff\r\n.\r\n", b"no stuff\n\n"),
        (b"bare\rcr and bare\nlf\r\n.\r\n", b"barecr and bare\nlf\n\n"),
        (b"\xff\x00\x80binary\r\n.\r\n", b"\xff\x00\x80binary\n\n"),
        (b".\r\r\n.\r\n", b"\n\n"),  # '.\r\r\n' is not a terminator
        (b"..\r\n.\r\n", b".\n\n"),
        (b"a\r\n..\r\n.\r\n", b"a\n.\n\n"),
        (b"a\n.\nb\n.\r\nc\r\n.\r\n", b"a\n.\nb\n.\nc\n\n"),  # bare LF never counts
        (b"x" * 100_000 + b"\r\n.\r\n", b"x" * 100_000 + b"\n\n"),  # no line limit in DATA
    ],
)
def test_end_of_data_and_dump_body(body: bytes, dumped: bytes) -> None:
    s, out = data_session(body)
    assert out == OK
    [tx] = s.transactions
    assert tx.data == dumped
    assert dump_body(body) == dumped


@pytest.mark.parametrize(
    "body",
    [
        b"hi\n.\n",
        b"hi\n.\r\n",
        b"hi\r\n..\r\n",
        b"hi\r\n.\n",
        b"hi\r\n. \r\n",
        b"hi\r\n.\r",
        b"hi\r.\r\n",
    ],
)
def test_not_end_of_data(body: bytes) -> None:
    s, out = data_session(body)
    assert out == b""
    assert s.p.in_data
    assert s.send(b"\r\n.\r\n") == OK
    assert not s.p.in_data


def test_end_of_data_split_at_every_position() -> None:
    wire = b"Subject: s\r\n\r\n..dot\r\nbody\r\n.\r\nNOOP\r\n"
    for i in range(len(wire) + 1):
        for j in range(i, len(wire) + 1):
            s = Sink()
            s.send(ENVELOPE)
            # (an empty read would be EOF)
            out = b"".join(s.send(c) for c in (wire[:i], wire[i:j], wire[j:]) if c)
            assert out == OK + OK, (i, j)
            [tx] = s.transactions
            assert tx.data == b"Subject: s\n\n.dot\nbody\n\n"


def test_end_of_data_byte_by_byte() -> None:
    s = Sink()
    s.send(ENVELOPE)
    out = b"".join(s.send(bytes([c])) for c in b"a\r\n.\r\r\n..\r\n.\r\n")
    assert out == OK
    [tx] = s.transactions
    assert tx.data == b"a\n\n.\n\n"


def test_commands_after_end_of_data_in_same_read() -> None:
    _, out = data_session(b"hi\r\n.\r\nMAIL FROM:<x>\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    assert out == OK + MAIL_OK + MAIL_OK + OK + BYE


def test_data_lines_look_like_commands() -> None:
    s, out = data_session(b"QUIT\r\nRSET\r\n" + b"y" * 3000 + b"\r\n.\r\n")
    assert out == OK
    assert not s.p.closed


def test_not_collecting_still_counts_messages() -> None:
    s = Sink(collect=False)
    s.send(ENVELOPE)
    assert s.send(b"hi\r\n.\r\n") == OK
    assert s.of(MessageReceived) == []
    assert s.of(MessageEnd) == [MessageEnd()]
    assert s.p.last_envelope is None


def test_collect_defaults_to_dumping() -> None:
    assert not SinkProtocol(SinkConfig()).collect
    assert SinkProtocol(SinkConfig(dump_template="/tmp/x.")).collect
    assert SinkProtocol(Tables(SinkConfig()), collect=True).collect


def test_last_transaction() -> None:
    s, _ = data_session(b"hi\r\n.\r\n")
    assert s.p.last_envelope is not None
    assert Transaction.from_envelope(s.p.last_envelope) == s.transactions[0]


def test_dump_body_examples() -> None:
    assert dump_body(b"a\r\n.\r\n") == b"a\n\n"
    assert dump_body(b".") == b""
    assert dump_body(b"\r\n.x") == b"\nx"


# -------------------------------------------------------------- dispatch order


def test_s_before_q() -> None:
    s = Sink("-s", "noop", "-q", "noop")
    assert s.send(b"HELO x\r\nNOOP a\r\nRSET\r\n") == b"250 smtp-sink\r\n"
    assert s.take() == [CommandLogged("NOOP a"), Close(None)]


def test_q_before_Q_before_f_before_r() -> None:
    assert Sink("-q", "noop", "-Q", "noop", "-f", "noop").send(b"NOOP\r\n") == b""
    s = Sink("-Q", "noop", "-f", "noop", "-r", "noop")
    assert s.send(b"NOOP\r\nRSET\r\n") == R421
    assert s.p.closed
    assert Sink("-f", "noop", "-r", "noop").send(b"NOOP\r\n") == HARD
    assert Sink("-r", "noop").send(b"NOOP\r\n") == SOFT


def test_rejection_is_not_delayed() -> None:
    s = Sink("-W", "noop:2", "-f", "noop")
    assert s.send(b"NOOP\r\n") == HARD
    assert s.of(Delay) == []
    s = Sink("-W", "noop:2", "-r", "noop", "-s", "noop")
    assert s.send(b"NOOP\r\n") == SOFT
    assert s.take() == [CommandLogged("NOOP ")]


def test_rejected_command_is_logged() -> None:
    s = Sink("-s", "rcpt", "-f", "rcpt")
    assert s.send(b"RCPT TO:<x>\r\n") == HARD
    assert s.take() == [CommandLogged("RCPT TO:<x>")]


def test_f_skips_state_checks() -> None:
    s = Sink("-f", "data")
    assert s.send(b"DATA\r\n") == HARD  # not "need RCPT"
    s = Sink("-r", "mail")
    assert s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\n") == SOFT + NEED_MAIL


def test_transcript_t3() -> None:
    s = Sink("-f", "RCPT")
    assert s.send(b"EHLO client.example\r\n") == EHLO_ALL.replace(b"250-PIPELINING\r\n", b"")
    assert s.send(b"MAIL FROM:<sender@example.com>\r\n") == MAIL_OK
    assert s.send(b"RCPT TO:<rcpt@example.com>\r\n") == HARD
    assert s.send(b"DATA\r\n") == NEED_RCPT
    assert s.send(b"RSET\r\n") == MAIL_OK
    assert s.send(b"QUIT\r\n") == BYE


def test_transcript_t4() -> None:
    s = Sink("-Q", "MAIL")
    assert s.send(b"EHLO client.example\r\n") == EHLO_ALL
    assert s.send(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<x>\r\n") == R421
    assert s.p.closed
    assert s.of(Close) == [Close(None)]


def test_transcript_t9() -> None:
    s = Sink("-q", "DATA")
    out = s.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    assert out == b"250 smtp-sink\r\n" + MAIL_OK + RCPT_OK
    assert s.p.closed and not s.p.in_mail


def test_rejected_helo_keeps_previous_helo() -> None:
    s = Sink("-r", "helo")
    assert s.send(b"EHLO first\r\n") == EHLO_ALL.replace(b"250-PIPELINING\r\n", b"")
    assert s.send(b"HELO second\r\n") == SOFT
    s.send(ENVELOPE + b".\r\n")
    [tx] = s.transactions
    assert tx.helo == "first" and tx.client_proto == "ESMTP"


def test_rejected_helo_does_not_abort_transaction() -> None:
    s = Sink("-f", "helo")
    s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\n")
    assert s.send(b"HELO x\r\nDATA\r\n") == HARD + DATA_OK


@pytest.mark.parametrize(("flag", "reply"), [("-b", b"452 4.2.2 mailbox full"), ("-b", b"450x")])
def test_custom_soft_reply(flag: str, reply: bytes) -> None:
    s = Sink("-r", "rcpt", flag, reply.decode())
    assert s.send(b"RCPT TO:<x>\r\n") == reply + b"\r\n"


def test_custom_hard_reply() -> None:
    s = Sink("-f", "mail,rcpt", "-B", "554 5.7.1 go away")
    assert s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\n") == b"554 5.7.1 go away\r\n" * 2


# ------------------------------------------------------------------- end of data + '.'


@pytest.mark.parametrize(
    ("opts", "reply"),
    [(["-f", "."], HARD), (["-r", "."], SOFT), (["-Q", "."], R421), (["-q", "."], b"")],
)
def test_dot_rejection_comes_after_the_message(opts: list[str], reply: bytes) -> None:
    s = Sink(*opts, auto=False)
    s.send(ENVELOPE)
    assert s.send(b"hi\r\n.\r\nNOOP\r\n") == b""  # paused: the message is being stored
    [ev] = s.take()
    assert isinstance(ev, MessageReceived)
    assert ev.envelope.data == b"hi\n\n"
    assert ev.envelope.timestamp == T_DUMP
    s.p.message_stored(True)
    out = s.pump()
    answered = MessageAnswered((reply.decode().strip(),) if reply else ())
    if opts[0] in ("-f", "-r"):
        assert out == reply + OK
        assert s.take() == [MessageEnd(), answered]
    else:
        assert out == reply
        assert s.take() == [MessageEnd(), answered, Close(None)]


def test_s_dot_logs_end_of_data() -> None:
    s = Sink("-s", ".,data")
    s.send(ENVELOPE + b"hi\r\n.\r\n")
    assert [e.text for e in s.of(CommandLogged)] == ["DATA ", ". "]


def test_store_failure_gives_451() -> None:
    s = Sink(store_ok=False)
    s.send(ENVELOPE)
    assert s.send(b"hi\r\n.\r\n") == STORE_FAILED
    assert s.send(b"NOOP\r\n") == OK
    # the next message is fine again
    s.store_ok = True
    s.send(ENVELOPE)
    assert s.send(b"x\r\n.\r\n") == OK


def test_store_failure_wins_over_rejection_and_survives_a_delay() -> None:
    assert _failed_store("-f", ".") == STORE_FAILED
    assert _failed_store("-W", ".:1") == STORE_FAILED
    assert _failed_store("-L") == STORE_FAILED
    assert _failed_store("-Q", ".") == R421


def _failed_store(*opts: str) -> bytes:
    s = Sink(*opts, store_ok=False)
    s.send(ENVELOPE)
    return s.send(b"hi\r\n.\r\n")


def test_store_failure_lmtp_one_per_recipient() -> None:
    s = Sink("-L", store_ok=False)
    s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nRCPT TO:<c>\r\nDATA\r\n")
    assert s.send(b"hi\r\n.\r\n") == STORE_FAILED * 2


# --------------------------------------------------------------------------- LMTP


def test_transcript_t2() -> None:
    s = Sink("-L")
    assert s.greeting == GREETING
    assert s.send(b"LHLO client.example\r\n") == EHLO_ALL
    assert s.send(b"MAIL FROM:<sender@example.com>\r\n") == MAIL_OK
    assert s.send(b"RCPT TO:<one@example.com>\r\n") == RCPT_OK
    assert s.send(b"RCPT TO:<two@example.com>\r\n") == RCPT_OK
    assert s.send(b"DATA\r\n") == DATA_OK
    assert s.send(b"Subject: hello\r\n\r\nbody\r\n.\r\n") == LMTP_OK * 2
    assert s.send(b"QUIT\r\n") == BYE
    [tx] = s.transactions
    assert tx.client_proto == "LMTP"
    assert tx.received.split("\n")[1] == f"\tby smtp-sink (smtp-sink) with LMTP id {tx.queue_id};"


def test_transcript_t10() -> None:
    s = Sink("-L", "-r", ".", "-b", "452 4.2.2 mailbox full")
    out = s.send(b"LHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n")
    assert out == EHLO_ALL.replace(b"250-PIPELINING\r\n", b"") + MAIL_OK + RCPT_OK * 2 + DATA_OK
    assert s.send(b"x\r\n.\r\n") == b"452 4.2.2 mailbox full\r\n" * 2
    assert s.send(b"QUIT\r\n") == BYE


def test_lmtp_f_dot_per_recipient() -> None:
    s = Sink("-L", "-f", ".")
    s.send(b"MAIL FROM:<a>\r\n" + b"RCPT TO:<b>\r\n" * 3 + b"DATA\r\n")
    assert s.send(b"x\r\n.\r\n") == HARD * 3


def test_lmtp_typed_dot_gets_one_reply() -> None:
    # Postfix: no reply at all (Q6). Ours: exactly one reply per command.
    s = Sink("-L")
    s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nRCPT TO:<c>\r\nDATA\r\nx\r\n.\r\n")
    assert s.send(b".\r\n") == OK
    assert s.send(b"RSET\r\n.\r\n") == MAIL_OK + OK


def test_lmtp_typed_dot_inside_transaction() -> None:
    s = Sink("-L")
    s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nRCPT TO:<c>\r\n")
    assert s.send(b".\r\n") == LMTP_OK  # one reply, not one per recipient
    assert s.send(b"DATA\r\nx\r\n.\r\n") == DATA_OK + LMTP_OK * 2


@pytest.mark.parametrize("flag", ["-f", "-r"])
def test_lmtp_rejected_typed_dot_gets_one_reply(flag: str) -> None:
    s = Sink("-L", flag, ".")
    s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nRCPT TO:<c>\r\n")
    assert s.send(b".\r\n") == (HARD if flag == "-f" else SOFT)


def test_lmtp_rcpt_count_reset_by_mail_only() -> None:
    s = Sink("-L")
    s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nRCPT TO:<c>\r\nRCPT TO:<d>\r\nRSET\r\n")
    s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n")
    assert s.send(b"x\r\n.\r\n") == LMTP_OK


def test_lmtp_refuses_helo_and_ehlo() -> None:
    s = Sink("-L")
    assert s.send(b"HELO x\r\nEHLO x\r\n") == UNKNOWN * 2


# -------------------------------------------------------------------------- delays


def test_delay_keeps_command_order() -> None:
    # Postfix answers RSET first (Q4); we keep the order.
    s = Sink("-W", "noop:2", auto=False)
    assert s.send(b"NOOP\r\nRSET\r\n") == b""
    assert s.take() == [Delay(2.0)]
    assert s.p.paused
    s.p.delay_elapsed()
    assert s.pump() == OK + MAIL_OK
    assert not s.p.paused


def test_two_delayed_commands_two_replies() -> None:
    s = Sink("-W", "noop:2", auto=False)
    assert s.send(b"NOOP\r\nNOOP\r\nQUIT\r\n") == b""
    assert s.take() == [Delay(2.0)]
    s.p.delay_elapsed()
    assert s.pump() == OK
    assert s.take() == [Delay(2.0)]
    s.p.delay_elapsed()
    assert s.pump() == OK + BYE
    assert s.take() == [QuitReceived(), Close(None)]


def test_input_while_paused_waits() -> None:
    s = Sink("-W", "rcpt:1", auto=False)
    assert s.send(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\n") == MAIL_OK
    assert s.send(b"DATA\r\nhi\r\n.\r\n") == b""
    assert s.send(b"") == b""  # EOF is held until the reply
    assert not s.p.closed
    s.auto = True
    s.p.delay_elapsed()
    assert s.pump() == RCPT_OK + DATA_OK + OK
    assert [type(e) for e in s.take()] == [
        Delay, MessageReceived, MessageEnd, MessageAnswered, Close
    ]  # fmt: skip


def test_delayed_reply_worked_out_at_send_time() -> None:
    s = Sink("-w", "1", auto=False)
    assert s.send(b"MAIL FROM:<a>\r\nDATA\r\n") == MAIL_OK
    s.take()
    s.p.delay_elapsed()
    assert s.pump() == NEED_RCPT


def test_w_holds_pipelined_replies_t12() -> None:
    s = Sink("-w", "1", auto=False)
    out = s.send(b"HELO x\r\nMAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n")
    assert out == b"250 smtp-sink\r\n" + MAIL_OK + RCPT_OK  # the driver sends these now
    assert s.take() == [Delay(1.0)]
    s.p.delay_elapsed()
    assert s.pump() == DATA_OK
    s.auto = True
    assert s.send(b"x\r\n.\r\nQUIT\r\n") == OK + BYE


def test_delayed_quit() -> None:
    s = Sink("-W", "quit:2", auto=False)
    assert s.send(b"QUIT\r\n") == b""
    assert s.take() == [Delay(2.0)]
    assert not s.p.closed
    s.p.delay_elapsed()
    assert s.pump() == BYE
    assert s.take() == [QuitReceived(), Close(None)]


def test_delayed_dot_after_store() -> None:
    s = Sink("-W", ".:1", auto=False)
    s.send(ENVELOPE)
    assert s.send(b"x\r\n.\r\n") == b""
    [ev] = s.take()
    assert isinstance(ev, MessageReceived)
    s.p.message_stored(True)
    assert s.pump() == b""
    assert s.take() == [MessageEnd(), Delay(1.0)]
    s.p.delay_elapsed()
    assert s.pump() == OK


def test_delay_not_collecting() -> None:
    s = Sink("-W", ".:1", collect=False, auto=False)
    s.send(ENVELOPE)
    assert s.send(b"x\r\n.\r\n") == b""
    assert s.take() == [MessageEnd(), Delay(1.0)]


class ScriptedRandom(random.Random):
    """randrange() returns scripted values (the -W odds die)."""

    def __new__(cls, rolls: list[int]) -> ScriptedRandom:
        return super().__new__(cls)  # Python 3.10 would seed from the constructor's arguments

    def __init__(self, rolls: list[int]) -> None:
        super().__init__(0)
        self.rolls = list(rolls)

    def randrange(self, *args: Any, **kwargs: Any) -> int:
        return self.rolls.pop(0)


@pytest.mark.parametrize(
    ("rolls", "seconds"),
    [([50], None), ([99], None), ([0, 49, 50], 6.0), ([10, 80], 3.0), ([49, 49, 49, 49, 70], 12.0)],
)
def test_delay_odds(rolls: list[int], seconds: float | None) -> None:
    config = parse_argv(["-W", "noop:3:50", "a:1", "1"]).config
    p = SinkProtocol(config, collect=False, rng=ScriptedRandom(rolls))
    p.start()
    p.take_output()
    p.receive(b"NOOP\r\n")
    if seconds is None:  # k = 0: no delay at all
        assert p.take_output() == OK
        assert p.take_events() == []
    else:
        assert p.take_output() == b""
        rolls_drawn = len(rolls) - 1
        assert p.take_events() == [
            FaultInjected(f"-W noop:3:50: delay x{rolls_drawn}"),  # named in the transcript
            Delay(seconds),
        ]
        p.delay_elapsed()
        assert p.take_output() == OK


# ------------------------------------------------------------------------ -A and -H


def test_abort_after_data() -> None:
    s = Sink("-A", "2")
    out = s.send(b"HELO x\r\nMAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n")
    assert out == b"250 smtp-sink\r\n" + MAIL_OK + RCPT_OK + DATA_OK
    assert s.take() == [Abort(2.0)]
    assert s.send(b"x\r\n.\r\n") == b""  # nothing more is read
    assert s.take() == []
    assert ABORT_REPLY == b"550 This violates SMTP\r\n"


def test_abort_zero() -> None:
    s = Sink("-A", "0")
    s.send(ENVELOPE)
    assert s.take() == [Abort(0.0)]


def test_abort_buffered_input_parsed_as_commands() -> None:
    s = Sink("-A", "2")
    out = s.send(ENVELOPE + b"hello\r\n\r\n.\r\n")
    assert out == ENVELOPE_REPLIES + UNKNOWN + EMPTY + OK
    assert s.of(Abort) == [Abort(2.0)] and s.of(MessageEnd) == []


def test_abort_not_triggered_by_refused_data() -> None:
    s = Sink("-A", "2")
    assert s.send(b"DATA\r\n") == NEED_RCPT
    assert s.take() == []


def test_read_delay() -> None:
    s = Sink("-H", "2")
    assert s.send(b"DATA\r\n") == NEED_RCPT
    assert s.take() == []
    assert s.send(ENVELOPE) == ENVELOPE_REPLIES
    assert s.take() == [ReadDelay(2.0)]
    assert s.p.paused
    assert s.send(b"x\r\n.\r\n") == b""  # held until the delay is over
    s.p.read_delay_elapsed()
    assert s.pump() == OK
    assert not s.p.paused


def test_read_delay_comes_after_the_buffered_input() -> None:
    # Data already buffered is processed without waiting (reference §9.3): the pause comes
    # once the input is used up.
    s = Sink("-H", "2")
    assert s.send(ENVELOPE + b"x\r\n.\r\nNOOP\r\n") == ENVELOPE_REPLIES + OK + OK
    assert s.take()[-1] == ReadDelay(2.0)


def test_abort_elapsed_sends_the_550_and_closes() -> None:
    s = Sink("-A", "1")
    s.send(ENVELOPE)
    assert s.take() == [Abort(1.0)]
    s.p.abort_elapsed()
    assert s.pump() == ABORT_REPLY
    assert s.take() == [Close(disconnect=False)]  # Postfix's -v says no "disconnect"
    assert s.p.closed


def test_acknowledging_the_wrong_pause_is_an_error() -> None:
    from pytest_smtp_sink.core.protocol import ProtocolError

    s = Sink("-H", "2")
    s.send(ENVELOPE)
    with pytest.raises(ProtocolError):
        s.p.delay_elapsed()
    with pytest.raises(ProtocolError):
        s.p.message_stored(True)
    s.p.read_delay_elapsed()
    with pytest.raises(ProtocolError):
        s.p.read_delay_elapsed()


def test_every_pause_ends_its_batch() -> None:
    s = Sink("-W", "rcpt:1", "-W", "mail:1", auto=False)
    s.send(ENVELOPE + b"NOOP\r\n")
    batch = s.take()
    assert batch == [Delay(1.0)]
    s.p.delay_elapsed()
    s.pump()
    assert s.take() == [Delay(1.0)]


def test_new_tables_apply_from_the_next_transaction() -> None:
    # collect off at MAIL, on at ".": the transaction keeps what it began with
    s = Sink(collect=False)
    s.send(ENVELOPE)
    s.p.set_tables(Tables(from_options({"hostname": "mx.test"})), True)
    assert s.send(b"x\r\n.\r\n") == OK
    assert s.transactions == []
    assert s.send(b"HELO x\r\n") == b"250 mx.test\r\n"
    s.send(ENVELOPE + b"x\r\n.\r\n")
    [tx] = s.transactions
    assert tx.mail_args == "<a@b>" and tx.rcpt_args == ("<c@d>",) and tx.queue_id


# -------------------------------------------------------------- verbose and syslog


def test_verbose_log_lines() -> None:
    s = Sink("-v")
    s.send(b"NOOP\nNOOP\r\nNO\0OP\r\nHELO x\ty\xff\r\n" + ENVELOPE + b"secret\r\n.\r\n")
    texts = [e.text for e in s.of(LogLine)]
    assert texts == [
        "NOOP?NOOP",
        "NO",
        "HELO x?y?",
        "MAIL FROM:<a@b>",
        "RCPT TO:<c@d>",
        "DATA",
        ".",
    ]


def test_not_verbose_no_log_lines() -> None:
    s = Sink()
    s.send(b"NOOP\r\n" + ENVELOPE + b"x\r\n.\r\n")
    assert s.of(LogLine) == []


def test_syslog_records_reference_13_2() -> None:
    s = Sink("-s", "connect,helo,mail,rcpt,data,.,noop,quit")
    s.send(b"HELO x\ty\r\nMAIL FROM:<a> \x01\xff\r\nRCPT TO:<" + b"b" * 150 + b">\r\n")
    s.send(b"DATA\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n")
    texts = [e.text for e in s.of(CommandLogged)]
    assert texts == [
        "connect ",
        "HELO x?y",
        "MAIL FROM:<a> ??",
        "RCPT TO:<" + "b" * 96,  # args cut to 100 characters
        "DATA ",
        ". ",
        "NOOP ",
        "QUIT ",
    ]
    assert len(texts[3]) == len("RCPT ") + 100


def test_syslog_keeps_command_case() -> None:
    s = Sink("-s", "noop")
    s.send(b"nOoP  x\r\n")
    assert s.of(CommandLogged) == [CommandLogged("nOoP  x")]


def test_sanitize() -> None:
    assert sanitize(bytes(range(256))) == "?" * 32 + "".join(map(chr, range(32, 127))) + "?" * 129


# -------------------------------------------------------------------- transactions


def test_transaction_fields() -> None:
    s = Sink(addr="ipv6:::1")
    s.send(b"EHLO   client.example  \r\nMAIL FROM:<a@b> SIZE=10\r\n")
    s.send(b"RCPT TO:<c@d> NOTIFY=NEVER\r\nRCPT TO:<e@f>\r\nDATA\r\nSubject: s\r\n\r\nb\r\n.\r\n")
    [tx] = s.transactions
    assert tx.client_addr == "ipv6:::1"
    assert tx.client_proto == "ESMTP"
    assert tx.helo == "client.example  "
    assert tx.mail_args == "<a@b> SIZE=10"
    assert tx.rcpt_args == ("<c@d> NOTIFY=NEVER", "<e@f>")
    assert tx.data == b"Subject: s\n\nb\n\n"
    assert tx.mail_from == "a@b" and tx.rcpt_to == ["c@d", "e@f"]
    assert tx.mail_params == {"SIZE": "10"}
    assert tx.message["Subject"] == "s"
    assert tx.start_string == ""
    assert len(tx.queue_id) == 8 and int(tx.queue_id, 16) < 2**31


def test_transaction_helo_and_proto() -> None:
    s = Sink()
    s.send(ENVELOPE + b".\r\nHELO a\r\n" + ENVELOPE + b".\r\nEHLO b\r\nRSET\r\n" + ENVELOPE)
    s.send(b".\r\n")
    assert [(t.helo, t.client_proto) for t in s.transactions] == [
        (None, "SMTP"),
        ("a", "SMTP"),
        ("b", "ESMTP"),
    ]
    assert s.transactions[0].received.startswith("from [127.0.0.1] ([127.0.0.1])\n")


def test_queue_ids_from_rng() -> None:
    s = Sink(seed=42)
    s.send((ENVELOPE + b".\r\n") * 3)
    rng = random.Random(42)
    assert [t.queue_id for t in s.transactions] == [f"{rng.getrandbits(31):08x}" for _ in range(3)]


def test_start_string_in_transaction() -> None:
    s = Sink("-S", "From x\\n")
    s.send(ENVELOPE + b".\r\n")
    [tx] = s.transactions
    assert tx.start_string == "From x\n"
    assert tx.render().startswith(b"From x\nX-Client-Addr: 127.0.0.1\n")


def test_client_addr_forms(utc: None) -> None:
    for addr in ("127.0.0.1", "ipv6:::1", "local"):
        s = Sink(addr=addr)
        s.send(b"HELO h\r\n" + ENVELOPE + b".\r\n")
        [tx] = s.transactions
        assert tx.client_addr == addr
        assert tx.render().startswith(f"X-Client-Addr: {addr}\n".encode())
        assert f"from h ([{addr}])" in tx.received


def _smtplib_session(s: Sink) -> None:
    """What smtplib sends in the reference §14.6 session."""
    assert s.send(b"ehlo client.example\r\n") == EHLO_ALL.replace(
        b"smtp-sink", s.p.config.hostname.encode()
    )
    s.send(b"mail FROM:<sender@example.com>\r\nrcpt TO:<one@example.com>\r\n")
    s.send(b"rcpt TO:<two@example.com>\r\ndata\r\n")
    out = s.send(
        b"Subject: dump test\r\nFrom: sender@example.com\r\n\r\nfirst line\r\n"
        b"..line starting with a dot\r\n\r\nlast line\r\n.\r\n"
    )
    assert out == OK
    s.send(b"mail FROM:<>\r\nrcpt TO:<three@example.com>\r\ndata\r\n")
    assert s.send(b"Subject: second\r\n\r\nsecond body\r\n.\r\n") == OK
    s.send(b"mail FROM:<x@example.com>\r\nrcpt TO:<y@example.com>\r\nrset\r\n")
    assert s.send(b"quit\r\n") == BYE


def test_dump_bytes_single_reference_14_6(utc: None) -> None:
    s = Sink("-h", "sink.example")
    _smtplib_session(s)
    tx1, tx2 = s.transactions
    assert with_queue_id(tx1, "78caf171").render() == (
        b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: client.example\n"
        b"X-Mail-Args: <sender@example.com>\nX-Rcpt-Args: <one@example.com>\n"
        b"X-Rcpt-Args: <two@example.com>\nReceived: from client.example ([127.0.0.1])\n"
        b"\tby sink.example (smtp-sink) with ESMTP id 78caf171;\n"
        b"\tTue, 24 Nov 2026 22:06:54 +0000 (UTC)\nSubject: dump test\n"
        b"From: sender@example.com\n\nfirst line\n.line starting with a dot\n\nlast line\n\n"
    )
    assert with_queue_id(tx2, "78f3ab9c").render() == (
        b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: client.example\n"
        b"X-Mail-Args: <>\nX-Rcpt-Args: <three@example.com>\n"
        b"Received: from client.example ([127.0.0.1])\n"
        b"\tby sink.example (smtp-sink) with ESMTP id 78f3ab9c;\n"
        b"\tTue, 24 Nov 2026 22:06:54 +0000 (UTC)\nSubject: second\n\nsecond body\n\n"
    )


def test_dump_bytes_shared_reference_14_6(utc: None) -> None:
    s = Sink("-S", "From MAILER-DAEMON\\n", clock=T_DUMP + 1)
    _smtplib_session(s)
    tx1, tx2 = s.transactions
    rendered = with_queue_id(tx1, "3ce99244").render() + with_queue_id(tx2, "0335b98d").render()
    assert rendered == (
        b"From MAILER-DAEMON\nX-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\n"
        b"X-Helo-Args: client.example\nX-Mail-Args: <sender@example.com>\n"
        b"X-Rcpt-Args: <one@example.com>\nX-Rcpt-Args: <two@example.com>\n"
        b"Received: from client.example ([127.0.0.1])\n"
        b"\tby smtp-sink (smtp-sink) with ESMTP id 3ce99244;\n"
        b"\tTue, 24 Nov 2026 22:06:55 +0000 (UTC)\nSubject: dump test\n"
        b"From: sender@example.com\n\nfirst line\n.line starting with a dot\n\nlast line\n\n"
        b"From MAILER-DAEMON\nX-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\n"
        b"X-Helo-Args: client.example\nX-Mail-Args: <>\nX-Rcpt-Args: <three@example.com>\n"
        b"Received: from client.example ([127.0.0.1])\n"
        b"\tby smtp-sink (smtp-sink) with ESMTP id 0335b98d;\n"
        b"\tTue, 24 Nov 2026 22:06:55 +0000 (UTC)\nSubject: second\n\nsecond body\n\n"
    )


START = "START\\n\\101\\tX\\q\\\\"  # the shell argument of the reference examples
T_NY = datetime.datetime(2026, 11, 24, 21, 59, 22, tzinfo=datetime.timezone.utc).timestamp()


def test_dump_no_helo_new_york(new_york: None) -> None:
    s = Sink("-S", START, clock=T_NY)
    s.send(b"MAIL FROM:<nohelo@x>\r\nRCPT TO:<a>\r\nDATA\r\nno helo\r\n.\r\n")
    [tx] = s.transactions
    assert with_queue_id(tx, "29edf5c3").render() == (
        b"START\nA\tXq\\X-Client-Addr: 127.0.0.1\nX-Client-Proto: SMTP\n"
        b"X-Mail-Args: <nohelo@x>\nX-Rcpt-Args: <a>\n"
        b"Received: from [127.0.0.1] ([127.0.0.1])\n"
        b"\tby smtp-sink (smtp-sink) with SMTP id 29edf5c3;\n"
        b"\tTue, 24 Nov 2026 16:59:22 -0500 (EST)\nno helo\n\n"
    )


def test_dump_bare_helo_new_york(new_york: None) -> None:
    s = Sink("-S", START, clock=T_NY + 1)
    s.send(b"HELO\r\nMAIL\r\nRCPT\r\nDATA\r\nempty helo\r\n.\r\n")
    [tx] = s.transactions
    assert with_queue_id(tx, "6d2de2c0").render() == (
        b"START\nA\tXq\\X-Client-Addr: 127.0.0.1\nX-Client-Proto: SMTP\nX-Helo-Args: \n"
        b"X-Mail-Args: \nX-Rcpt-Args: \nReceived: from  ([127.0.0.1])\n"
        b"\tby smtp-sink (smtp-sink) with SMTP id 6d2de2c0;\n"
        b"\tTue, 24 Nov 2026 16:59:23 -0500 (EST)\nempty helo\n\n"
    )


def test_dump_odd_arguments_new_york(new_york: None) -> None:
    s = Sink("-S", START, clock=T_NY + 2)
    s.send(
        b"HELO  \tweird\thelo \r\nMAIL FROM:<a>  SIZE=10 BODY=8BITMIME\r\n"
        b"RCPT  TO:  <b>  NOTIFY=NEVER\r\nRCPT TO::<c>\r\nRCPT x\r\nDATA\r\n"
    )
    s.send(
        b"bare\rcr and bare\nlf\r\n.no stuff\r\n\xff\x00\x80binary\r\n.\r\r\n..\r\nend\r\n\r\n.\r\n"
    )
    [tx] = s.transactions
    assert with_queue_id(tx, "60bf520f").render() == (
        b"START\nA\tXq\\X-Client-Addr: 127.0.0.1\nX-Client-Proto: SMTP\n"
        b"X-Helo-Args: ?weird?helo \nX-Mail-Args: <a>  SIZE=10 BODY=8BITMIME\n"
        b"X-Rcpt-Args: <b>  NOTIFY=NEVER\nX-Rcpt-Args: <c>\nX-Rcpt-Args: \n"
        b"Received: from ?weird?helo  ([127.0.0.1])\n"
        b"\tby smtp-sink (smtp-sink) with SMTP id 60bf520f;\n"
        b"\tTue, 24 Nov 2026 16:59:24 -0500 (EST)\n"
        b"barecr and bare\nlf\nno stuff\n\xff\x00\x80binary\n\n.\nend\n\n\n"
    )


def test_dump_lmtp_ipv6_and_unix(utc: None) -> None:
    t = datetime.datetime(2026, 11, 24, 21, 59, 52, tzinfo=datetime.timezone.utc).timestamp()
    s = Sink("-L", addr="ipv6:::1", clock=t)
    s.send(b"LHLO v6client\r\nMAIL FROM:<a>\r\nRCPT TO:<b>\r\nRCPT TO:<c>\r\nDATA\r\nhi\r\n.\r\n")
    [tx] = s.transactions
    assert with_queue_id(tx, "04d34b5d").render() == (
        b"X-Client-Addr: ipv6:::1\nX-Client-Proto: LMTP\nX-Helo-Args: v6client\n"
        b"X-Mail-Args: <a>\nX-Rcpt-Args: <b>\nX-Rcpt-Args: <c>\n"
        b"Received: from v6client ([ipv6:::1])\n"
        b"\tby smtp-sink (smtp-sink) with LMTP id 04d34b5d;\n"
        b"\tTue, 24 Nov 2026 21:59:52 +0000 (UTC)\nhi\n\n"
    )
    s = Sink(addr="local", clock=t + 1)
    s.send(b"HELO local-client\r\nMAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\nvia unix\r\n.\r\n")
    [tx] = s.transactions
    assert with_queue_id(tx, "71e23aef").render() == (
        b"X-Client-Addr: local\nX-Client-Proto: SMTP\nX-Helo-Args: local-client\n"
        b"X-Mail-Args: <a>\nX-Rcpt-Args: <b>\nReceived: from local-client ([local])\n"
        b"\tby smtp-sink (smtp-sink) with SMTP id 71e23aef;\n"
        b"\tTue, 24 Nov 2026 21:59:53 +0000 (UTC)\nvia unix\n\n"
    )


@pytest.mark.parametrize(
    ("tz", "when", "expected"),
    [
        ("UTC", (2026, 11, 24, 21, 59, 14), "Tue, 24 Nov 2026 21:59:14 +0000 (UTC)"),
        ("America/New_York", (2026, 11, 24, 21, 59, 24), "Tue, 24 Nov 2026 16:59:24 -0500 (EST)"),
        ("Asia/Kolkata", (2027, 3, 5, 14, 7, 3), "Fri,  5 Mar 2027 19:37:03 +0530 (IST)"),
        ("America/St_Johns", (2027, 3, 5, 14, 7, 4), "Fri,  5 Mar 2027 10:37:04 -0330 (NST)"),
        ("XYZ+0:30", (2027, 3, 5, 14, 7, 4), "Fri,  5 Mar 2027 13:37:04 +0030 (XYZ)"),
    ],
)
def test_format_date(tz: str, when: tuple[int, int, int, int, int, int], expected: str) -> None:
    y, mo, d, h, mi, sec = when
    ts = datetime.datetime(y, mo, d, h, mi, sec, tzinfo=datetime.timezone.utc).timestamp()
    with local_tz(tz):
        assert format_date(ts) == expected


def test_received_date_is_mail_time(utc: None) -> None:
    clock = [T_DUMP]
    p = SinkProtocol(SinkConfig(), collect=True, rng=random.Random(1), clock=lambda: clock[0])
    p.start()
    p.receive(b"MAIL FROM:<a>\r\nRCPT TO:<b>\r\n")
    clock[0] += 3600
    p.receive(b"DATA\r\nx\r\n.\r\n")
    [ev] = [e for e in p.take_events() if isinstance(e, MessageReceived)]
    assert ev.envelope.timestamp == T_DUMP
    received = Transaction.from_envelope(ev.envelope).received
    assert received.endswith("\tTue, 24 Nov 2026 22:06:54 +0000 (UTC)")


# ---------------------------------------------------------------- configuration


def test_set_tables_applies_to_next_command() -> None:
    s = Sink()
    s.p.set_tables(Tables(from_options({"reject": "noop", "hostname": "mx"})), True)
    assert s.send(b"NOOP\r\nHELO x\r\n") == HARD + b"250 mx\r\n"


def test_config_from_markers() -> None:
    s = Sink(config=from_options({"lmtp": True, "hostname": "mx.test", "reject": "VRFY"}))
    assert s.greeting == b"220 mx.test ESMTP\r\n"
    assert s.send(b"VRFY x\r\nHELO x\r\n") == HARD + UNKNOWN
