"""The extensions Postfix's sink lacks, in the sans-IO protocol: STARTTLS, SMTPUTF8, SIZE,
CHUNKING/BDAT and checked AUTH (DESIGN §7). All are off unless asked for."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_smtp_sink import parse_dump
from pytest_smtp_sink.core.argv import parse_argv
from pytest_smtp_sink.core.config import SinkConfig
from pytest_smtp_sink.core.errors import ConfigError, UsageError
from pytest_smtp_sink.core.events import (
    Delay,
    Event,
    MessageReceived,
    StartTls,
)
from pytest_smtp_sink.core.protocol import SinkProtocol
from pytest_smtp_sink.dump.transaction import Transaction

TLS = "TLSv1.3 TLS_AES_256_GCM_SHA384"
ENVELOPE = b"EHLO c.example\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\n"


class Sink:
    """One protocol, driven at once: delays elapse, messages are stored."""

    def __init__(self, config: SinkConfig | None = None, **options: Any) -> None:
        config = (config or SinkConfig()).replace(**options) if options else config
        self.p = SinkProtocol(
            config or SinkConfig(), collect=True, rng=random.Random(1), clock=lambda: 1e9
        )
        self.events: list[Event] = []
        self.p.start()
        self.greeting = self.pump()

    def pump(self) -> bytes:
        out = b""
        while True:
            out += self.p.take_output()
            batch = self.p.take_events()
            if not batch:
                return out
            for ev in batch:
                self.events.append(ev)
                if isinstance(ev, Delay):
                    self.p.delay_elapsed()
                elif isinstance(ev, MessageReceived):
                    self.p.message_stored(True)

    def send(self, data: bytes) -> bytes:
        self.p.receive(data)
        return self.pump()

    def replies(self, data: bytes) -> list[bytes]:
        return re.findall(rb"[0-9]{3}[ -][^\r]*", self.send(data))

    @property
    def transactions(self) -> list[Transaction]:
        return [
            Transaction.from_envelope(e.envelope)
            for e in self.events
            if isinstance(e, MessageReceived)
        ]


def ehlo_lines(sink: Sink) -> list[bytes]:
    return [line[4:] for line in sink.replies(b"EHLO c\r\n")]


# --------------------------------------------------------------------------- options


def test_every_extension_is_off_by_default_and_ehlo_is_postfix_s() -> None:
    assert ehlo_lines(Sink()) == [
        b"smtp-sink", b"PIPELINING", b"8BITMIME", b"AUTH PLAIN LOGIN", b"XCLIENT NAME HELO",
        b"XFORWARD NAME ADDR PROTO HELO", b"ENHANCEDSTATUSCODES", b"DSN", b"",
    ]  # fmt: skip


def test_ehlo_with_every_extension() -> None:
    sink = Sink(
        starttls=True, tls_cert="/c.pem", smtputf8=True, chunking=True, max_message_size=1000,
        auth_mechanisms="PLAIN LOGIN CRAM-MD5",
    )  # fmt: skip
    assert ehlo_lines(sink) == [
        b"smtp-sink", b"PIPELINING", b"SIZE 1000", b"8BITMIME", b"STARTTLS",
        b"AUTH PLAIN LOGIN CRAM-MD5", b"XCLIENT NAME HELO", b"XFORWARD NAME ADDR PROTO HELO",
        b"ENHANCEDSTATUSCODES", b"DSN", b"SMTPUTF8", b"CHUNKING", b"BINARYMIME", b"",
    ]  # fmt: skip


def test_long_options() -> None:
    inv = parse_argv([
        "--starttls", "--tls-cert=/c.pem", "--tls-key", "/k.pem", "--require-tls",
        "--smtputf8", "--chunking", "--max-message-size", "100", "--auth-required",
        "--auth-user", "alice:secret", "--auth-user=bob:pw:with:colons",
        "--auth-mechanisms", "plain,cram-md5", "-f", "bdat", "127.0.0.1:25", "10",
    ])  # fmt: skip
    c = inv.config
    assert (c.starttls, c.require_tls, c.smtputf8, c.chunking, c.auth_required) == (True,) * 5
    assert (c.tls_cert, c.tls_key, c.max_message_size) == ("/c.pem", "/k.pem", 100)
    assert c.users == {"alice": "secret", "bob": "pw:with:colons"}
    assert c.auth_mechanisms == ("PLAIN", "CRAM-MD5")
    assert c.reject == {"BDAT"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope"], "unrecognized option '--nope'"),
        (["--starttls=yes"], "option '--starttls' doesn't allow an argument"),
        (["--auth-user", "nopassword"], "bad user: nopassword (expected name:password)"),
        (["--auth-mechanisms", "GSSAPI"], "unknown AUTH mechanism: GSSAPI"),
        (["--require-tls"], "require_tls needs starttls or implicit_tls"),
        (["-f", "bdat"], "unknown command: bdat"),  # Postfix's text without --chunking
        (["-W", "starttls:1"], "unknown command: starttls"),
    ],
)
def test_long_option_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_argv([*argv, "127.0.0.1:25", "10"])
    assert str(info.value).startswith(message)
    if message.startswith(("unrecognized", "option")):
        assert isinstance(info.value, UsageError)


def test_long_option_without_its_argument() -> None:
    with pytest.raises(UsageError, match="option '--tls-cert' requires an argument"):
        parse_argv(["--tls-cert"])


def test_extension_commands_need_their_extension_in_markers() -> None:
    with pytest.raises(ConfigError, match="reject: BDAT needs chunking=True"):
        SinkConfig().replace(reject="BDAT")
    assert SinkConfig().replace(chunking=True, reject="BDAT").reject == {"BDAT"}


# -------------------------------------------------------------------------- STARTTLS


def starttls_sink(**options: Any) -> Sink:
    return Sink(starttls=True, tls_cert="/c.pem", **options)


def test_starttls_pauses_and_discards_pipelined_plaintext() -> None:
    sink = starttls_sink()
    out = sink.send(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n")
    assert out.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert sink.events[-1] == StartTls()
    assert sink.p.paused
    sink.p.tls_started(TLS)
    assert sink.pump() == b""  # the pipelined MAIL was not executed
    assert sink.p.helo is None and not sink.p.in_mail and sink.p.tls == TLS
    assert b"STARTTLS" not in b"".join(ehlo_lines(sink))  # not offered inside TLS
    assert sink.replies(b"STARTTLS\r\n") == [b"554 5.5.1 Error: TLS already active"]


def test_starttls_with_arguments_and_without_the_extension() -> None:
    assert starttls_sink().replies(b"STARTTLS now\r\n") == [b"501 5.5.4 Syntax: STARTTLS"]
    assert Sink().replies(b"STARTTLS\r\n") == [b"500 5.5.1 Error: unknown command"]


def test_starttls_forgets_auth() -> None:
    sink = starttls_sink()
    sink.send(b"AUTH PLAIN " + base64.b64encode(b"\0u\0p") + b"\r\n")
    assert sink.p.authenticated
    sink.send(b"STARTTLS\r\n")
    sink.p.tls_started(TLS)
    sink.pump()
    assert not sink.p.authenticated and sink.p.auth_user is None


def test_require_tls() -> None:
    sink = starttls_sink(require_tls=True)
    assert b"AUTH PLAIN LOGIN" not in ehlo_lines(sink)  # AUTH is offered inside TLS only
    assert sink.replies(b"MAIL FROM:<a@x>\r\nAUTH PLAIN AAAA\r\n") == [
        b"530 5.7.0 Must issue a STARTTLS command first"
    ] * 2
    sink.send(b"STARTTLS\r\n")
    sink.p.tls_started(TLS)
    sink.pump()
    assert b"AUTH PLAIN LOGIN" in ehlo_lines(sink)
    assert sink.replies(b"MAIL FROM:<a@x>\r\n") == [b"250 2.1.0 Ok"]


def test_implicit_tls_is_on_before_the_greeting() -> None:
    p = SinkProtocol(SinkConfig(implicit_tls=True, require_tls=True, tls_cert="/c"))
    p.tls_started(TLS)
    p.start()
    p.receive(b"MAIL FROM:<a@x>\r\n")
    assert p.take_output().endswith(b"250 2.1.0 Ok\r\n")


def test_tls_and_auth_are_recorded_in_the_transaction_and_its_dump() -> None:
    sink = starttls_sink(users={"alice": "secret"})
    sink.send(b"STARTTLS\r\n")
    sink.p.tls_started(TLS)
    sink.pump()
    login = base64.b64encode(b"\0alice\0secret")
    sink.send(b"EHLO c\r\nAUTH PLAIN " + login + b"\r\n")
    sink.send(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nhi\r\n.\r\n")
    [tx] = sink.transactions
    assert (tx.tls, tx.auth_user) == (TLS, "alice")
    dumped = tx.render()
    assert b"\nX-TLS: " + TLS.encode() + b"\nX-Auth-User: alice\n" in dumped
    assert parse_dump(dumped) == [tx]
    plain = Sink().send(b"HELO c\r\nMAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n.\r\n")
    assert b"X-TLS" not in plain  # the dump format gains these headers only when used


# ---------------------------------------------------------------------------- AUTH


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


@pytest.mark.parametrize(
    ("exchange", "ok"),
    [
        ([b"AUTH PLAIN " + b64(b"\0alice\0secret")], True),
        ([b"AUTH PLAIN " + b64(b"\0alice\0wrong")], False),
        ([b"AUTH PLAIN " + b64(b"\0mallory\0secret")], False),
        ([b"AUTH PLAIN", b64(b"admin\0alice\0secret")], True),
        ([b"AUTH LOGIN", b64(b"alice"), b64(b"secret")], True),
        ([b"AUTH LOGIN " + b64(b"alice"), b64(b"nope")], False),
        ([b"AUTH PLAIN " + b64(b"no nul bytes")], False),
    ],
)
def test_users_are_checked(exchange: list[bytes], ok: bool) -> None:
    sink = Sink(users={"alice": "secret"})
    out = sink.send(b"".join(line + b"\r\n" for line in exchange))
    final = out.splitlines()[-1]
    if ok:
        assert final == b"235 2.7.0 Authentication successful"
        assert sink.p.auth_user == "alice"
    else:
        assert final == b"535 5.7.8 Authentication credentials invalid"
        assert not sink.p.authenticated


def cram_response(challenge_line: bytes, user: str, password: str) -> bytes:
    challenge = base64.b64decode(challenge_line[4:])
    digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
    return b64(f"{user} {digest}".encode())


@pytest.mark.parametrize(("password", "ok"), [("secret", True), ("guess", False)])
def test_cram_md5(password: str, ok: bool) -> None:
    sink = Sink(users={"alice": "secret"}, auth_mechanisms="PLAIN LOGIN CRAM-MD5")
    challenge = sink.send(b"AUTH CRAM-MD5\r\n")
    assert challenge.startswith(b"334 ")
    assert base64.b64decode(challenge[4:]).endswith(b"@smtp-sink>")
    out = sink.send(cram_response(challenge.strip(), "alice", password) + b"\r\n")
    assert out.startswith(b"235 " if ok else b"535 5.7.8 ")


def test_cram_md5_is_refused_unless_listed_and_any_credentials_pass_without_users() -> None:
    assert Sink().replies(b"AUTH CRAM-MD5\r\n") == [
        b"504 5.5.4 Error: unsupported authentication mechanism"
    ]
    sink = Sink(auth_mechanisms="CRAM-MD5")
    challenge = sink.send(b"AUTH CRAM-MD5\r\n").strip()
    assert sink.send(cram_response(challenge, "anyone", "anything") + b"\r\n").startswith(b"235")
    assert sink.p.auth_user == "anyone"


def test_auth_required() -> None:
    sink = Sink(auth_required=True)
    assert sink.replies(b"MAIL FROM:<a@x>\r\n") == [b"530 5.7.0 Authentication required"]
    sink.send(b"AUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")
    assert sink.replies(b"MAIL FROM:<a@x>\r\n") == [b"250 2.1.0 Ok"]


# --------------------------------------------------------------------------- SMTPUTF8


def test_smtputf8_addresses_are_text_live_and_in_the_dump() -> None:
    sink = Sink(smtputf8=True)
    sink.send("EHLO jösé.example\r\nMAIL FROM:<jösé@y.example> SMTPUTF8\r\n".encode())
    sink.send("RCPT TO:<ñ@z.example>\r\nDATA\r\nhi\r\n.\r\n".encode())
    [tx] = sink.transactions
    assert tx.smtputf8 and tx.mail_from == "jösé@y.example" and tx.rcpt_to == ["ñ@z.example"]
    assert tx.helo == "jösé.example" and "from jösé.example " in tx.received
    dumped = tx.render()
    assert "X-Mail-Args: <jösé@y.example> SMTPUTF8\n".encode() in dumped
    assert b"X-SMTPUTF8: yes\n" in dumped
    assert parse_dump(dumped) == [tx]


def test_eight_bit_without_smtputf8_is_kept_live_and_dumped_as_postfix_does() -> None:
    sink = Sink()
    sink.send("HELO jösé\r\nMAIL FROM:<jösé@y.example>\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\n".encode())
    [tx] = sink.transactions
    assert not tx.smtputf8 and tx.mail_from == "jösé@y.example"
    assert b"X-Mail-Args: <j??s??@y.example>\n" in tx.render()
    assert b"from j??s?? ([" in tx.render()
    [back] = parse_dump(tx.render())
    assert back.mail_from == "j??s??@y.example"  # what the Postfix-format dump holds


def test_smtputf8_parameter_is_ignored_when_not_announced() -> None:
    sink = Sink()
    sink.send(b"HELO c\r\nMAIL FROM:<a@x> SMTPUTF8\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\n")
    assert not sink.transactions[0].smtputf8


# ------------------------------------------------------------------------------ SIZE


def test_size_declared_over_the_limit_is_refused_at_mail() -> None:
    sink = Sink(max_message_size=100)
    assert sink.replies(b"MAIL FROM:<a@x> SIZE=101\r\n") == [
        b"552 5.3.4 Message size exceeds fixed limit"
    ]
    assert sink.replies(b"MAIL FROM:<a@x> SIZE=x\r\n") == [b"501 5.5.4 Bad message size syntax"]
    assert sink.replies(b"MAIL FROM:<a@x> SIZE=100\r\n") == [b"250 2.1.0 Ok"]


def test_the_limit_holds_for_what_arrives_whatever_was_declared() -> None:
    sink = Sink(max_message_size=100)
    out = sink.send(b"MAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@x>\r\nDATA\r\n" + b"x" * 200)
    assert sink.send(b"\r\n.\r\n") == b"552 5.3.4 Error: message file too big\r\n"
    assert out.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n")
    assert sink.transactions == []


# ----------------------------------------------------------------------------- BDAT


def chunking_sink(**options: Any) -> Sink:
    return Sink(chunking=True, **options)


def test_bdat_one_last_chunk() -> None:
    sink = chunking_sink()
    sink.send(ENVELOPE)
    assert sink.send(b"BDAT 14 LAST\r\nSubject: x\r\n\r\n") == b"250 2.0.0 Ok\r\n"
    [tx] = sink.transactions
    assert tx.message_bytes == b"Subject: x\r\n\r\n" and tx.data == b"Subject: x\n\n\n"


def test_bdat_chunks_pipelined_with_binary_data_kept_byte_for_byte() -> None:
    body = bytes(range(256)) + b"\r\n.\r\n..\r\n" + b"\0" * 10
    sink = chunking_sink()
    wire = ENVELOPE + b"BDAT 100\r\n" + body[:100] + b"BDAT %d LAST\r\n" % (len(body) - 100)
    out = sink.send(wire + body[100:] + b"QUIT\r\n")
    assert out.endswith(b"250 2.0.0 Ok: 100 octets\r\n250 2.0.0 Ok\r\n221 Bye\r\n")
    [tx] = sink.transactions
    assert tx.message_bytes == body  # no dot-stuffing in BDAT, nothing dropped


def test_bdat_zero_length_last_chunk() -> None:
    sink = chunking_sink()
    sink.send(ENVELOPE)
    assert sink.replies(b"BDAT 3\r\nabcBDAT 0 LAST\r\n") == [
        b"250 2.0.0 Ok: 3 octets", b"250 2.0.0 Ok"
    ]
    assert sink.transactions[0].message_bytes == b"abc"


def test_bdat_out_of_sequence_still_takes_its_chunk() -> None:
    sink = chunking_sink()
    # the chunk's octets are read (and thrown away) before the error reply
    assert sink.replies(b"BDAT 6 LAST\r\nNOOP\r\nNOOP\r\n") == [
        b"503 5.5.1 Error: need MAIL command", b"250 2.0.0 Ok"
    ]
    assert sink.replies(b"MAIL FROM:<a@x>\r\nBDAT 4 LAST\r\nxxxx") == [
        b"250 2.1.0 Ok", b"503 5.5.1 Error: need RCPT command"
    ]
    assert sink.transactions == []


def test_bdat_syntax() -> None:
    sink = chunking_sink()
    for bad in (b"BDAT", b"BDAT x", b"BDAT 1 FIRST", b"BDAT 1 LAST more", b"BDAT -1"):
        assert sink.replies(bad + b"\r\n") == [b"501 5.5.4 Syntax: BDAT count [LAST]"]


def test_data_after_bdat_and_binarymime_with_data() -> None:
    sink = chunking_sink()
    sink.send(ENVELOPE + b"BDAT 1\r\nx")
    assert sink.replies(b"DATA\r\n") == [b"503 5.5.1 Error: DATA after BDAT"]
    sink.send(b"RSET\r\n")
    sink.send(b"MAIL FROM:<a@x> BODY=BINARYMIME\r\nRCPT TO:<b@x>\r\n")
    assert sink.replies(b"DATA\r\n") == [b"503 5.5.1 Error: BODY=BINARYMIME requires BDAT"]


def test_bdat_without_chunking_is_unknown() -> None:
    assert Sink().replies(b"BDAT 1 LAST\r\n") == [b"500 5.5.1 Error: unknown command"]


def test_bdat_takes_the_command_rules() -> None:
    sink = chunking_sink(reject="BDAT")
    sink.send(ENVELOPE)
    assert sink.replies(b"BDAT 2 LAST\r\nxy") == [b"500 5.3.0 Error: command failed"]
    assert sink.transactions == [] and not sink.p.in_mail
    delayed = chunking_sink(delays={"BDAT": 2.0})
    delayed.send(ENVELOPE + b"BDAT 1 LAST\r\nx")
    assert Delay(2.0) in delayed.events


def test_bdat_last_ends_the_message_like_the_dot() -> None:
    refused = chunking_sink(reject=".")
    refused.send(ENVELOPE)
    assert refused.replies(b"BDAT 1 LAST\r\nx") == [b"500 5.3.0 Error: command failed"]
    lmtp = Sink(chunking=True, lmtp=True)
    lmtp.send(b"LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\n")
    assert lmtp.replies(b"BDAT 1 LAST\r\nx") == [b"250 2.2.0 Ok"] * 2


def test_bdat_size_limit() -> None:
    sink = chunking_sink(max_message_size=10)
    sink.send(ENVELOPE + b"BDAT 8\r\n" + b"x" * 8)
    assert sink.replies(b"BDAT 8 LAST\r\n" + b"y" * 8) == [
        b"552 5.3.4 Error: message file too big"
    ]
    assert sink.transactions == []


# ------------------------------------------------------------------ BDAT vs DATA


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for point in points:
        out.append(data[last:point])
        last = point
    out.append(data[last:])
    return [c for c in out if c]


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).filter(lambda b: b"\r\n" not in b), max_size=8),
    chunk_sizes=st.lists(st.integers(1, 50), max_size=5),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_bdat_in_any_chunks_gives_the_same_transaction_as_data(
    lines: list[bytes], chunk_sizes: list[int], cuts: list[int]
) -> None:
    message = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    via_data = chunking_sink()
    via_data.send(ENVELOPE + b"DATA\r\n" + stuffed + b".\r\n")
    # the same message in BDAT chunks of the drawn sizes, fed in arbitrary pieces
    wire, pos = b"", 0
    for size in chunk_sizes:
        if pos + size >= len(message):
            break
        wire += b"BDAT %d\r\n" % size + message[pos : pos + size]
        pos += size
    wire += b"BDAT %d LAST\r\n" % (len(message) - pos) + message[pos:]
    via_bdat = chunking_sink()
    via_bdat.send(ENVELOPE)
    for piece in _split(wire, cuts):
        via_bdat.send(piece)
    [a], [b] = via_data.transactions, via_bdat.transactions
    assert (a.mail_args, a.rcpt_args, a.helo, a.data) == (b.mail_args, b.rcpt_args, b.helo, b.data)
    assert b.message_bytes == message


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(max_size=300), cuts=st.lists(st.integers(0, 400), max_size=4))
def test_nothing_pipelined_behind_starttls_is_executed(junk: bytes, cuts: list[int]) -> None:
    """Whatever follows STARTTLS before the handshake, in whatever pieces, is thrown away:
    after TLS the session is as new (no transaction, no HELO, no reply owed)."""
    sink = starttls_sink()
    sink.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\n")
    wire = b"STARTTLS\r\n" + junk
    pieces = _split(wire, cuts)
    out = b""
    for piece in pieces:
        out += sink.send(piece)
    assert out.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert out.count(b"\r\n") == 1  # nothing answered behind it
    sink.p.tls_started(TLS)
    assert sink.pump() == b""
    assert (sink.p.in_mail, sink.p.helo, sink.p.tls) == (False, None, TLS)
    assert sink.replies(b"MAIL FROM:<a@x>\r\n") == [b"250 2.1.0 Ok"]
