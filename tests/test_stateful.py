"""Stateful testing of the sans-IO SinkProtocol against a small model of smtp-sink.

The model (reference §4-§10) knows only: connected/closed, in a transaction, the number of
recipients, whether a HELO was seen, and whether the data phase is on. Each rule sends the bytes
of one or more complete command lines (or data lines), cut into random chunks, and checks that
the replies are exactly the model's, that the events match, and that nothing at all comes out
of a closed session.
"""

from __future__ import annotations

import copy
import re

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pytest_smtp_sink.core.config import SinkConfig
from pytest_smtp_sink.core.events import (
    Close,
    Event,
    MessageAnswered,
    MessageEnd,
    MessageReceived,
    QuitReceived,
)
from pytest_smtp_sink.core.protocol import SinkProtocol
from pytest_smtp_sink.dump.transaction import Transaction

R_GREETING = b"220 smtp-sink ESMTP\r\n"
R_HELO = b"250 smtp-sink\r\n"
R_EHLO = (
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
R_MAIL = b"250 2.1.0 Ok\r\n"
R_RCPT = b"250 2.1.5 Ok\r\n"
R_OK = b"250 2.0.0 Ok\r\n"
R_LMTP_OK = b"250 2.2.0 Ok\r\n"
R_DATA = b"354 End data with <CR><LF>.<CR><LF>\r\n"
R_BYE = b"221 Bye\r\n"
R_UNKNOWN = b"500 5.5.1 Error: unknown command\r\n"
R_EMPTY = b"500 5.5.2 Error: unknown command\r\n"
R_NESTED = b"503 5.5.1 Error: nested MAIL command\r\n"
R_NEED_MAIL = b"503 5.5.1 Error: need MAIL command\r\n"
R_NEED_RCPT = b"503 5.5.1 Error: need RCPT command\r\n"
R_STORE_FAILED = b"451 4.3.0 Error: queue file write error\r\n"

MAX_COMMAND = 2046  # octets before the CRLF (reference §4.2)


def as_sent(raw: bytes) -> str:
    """A client's text as a live Transaction keeps it (the dump sanitises it)."""
    return raw.decode("utf-8", "surrogateescape")


def args_value(raw: bytes) -> str:
    """X-Mail-Args / X-Rcpt-Args (reference §14.2)."""
    text = as_sent(raw)
    colon = text.find(":")
    return "" if colon < 0 else text[colon:].lstrip(":").lstrip(" ")


class Model:
    """What smtp-sink (with our documented differences) answers, per reference §4-§10."""

    def __init__(self, lmtp: bool) -> None:
        self.lmtp = lmtp
        self.closed = False
        self.in_mail = False
        self.rcpts = 0
        self.helo: str | None = None
        self.in_data = False
        # the transaction being collected
        self.mail_args = ""
        self.rcpt_args: list[str] = []
        self.data: list[bytes] = []
        enabled = {b"AUTH", b"MAIL", b"RCPT", b"DATA", b".", b"RSET", b"NOOP", b"VRFY", b"QUIT"}
        enabled |= {b"XCLIENT", b"XFORWARD"}
        enabled |= {b"LHLO"} if lmtp else {b"HELO", b"EHLO"}
        self.enabled = enabled

    def reset(self) -> None:
        self.in_mail = False
        self.rcpt_args = []

    def command(self, line: bytes) -> bytes:
        """The reply to one command line (without CRLF); updates the state."""
        if len(line) > MAX_COMMAND:
            self.closed = True
            self.reset()
            return b""
        nul = line.find(b"\0")
        if nul >= 0:
            line = line[:nul]
        line = line.lstrip(b" \t")
        if not line:
            return R_EMPTY
        parts = re.split(rb"[ \t]", line, maxsplit=1)
        token, args = parts[0].upper(), parts[1] if len(parts) > 1 else b""
        if token not in self.enabled:
            return R_UNKNOWN
        if token == b"MAIL":
            if self.in_mail:
                return R_NESTED
            self.in_mail, self.rcpts = True, 0
            self.mail_args, self.rcpt_args = args_value(args), []
            return R_MAIL
        if token == b"RCPT":
            if not self.in_mail:
                return R_NEED_MAIL
            self.rcpts += 1
            self.rcpt_args.append(args_value(args))
            return R_RCPT
        if token == b"DATA":
            if not self.in_mail or self.rcpts <= 0:
                return R_NEED_RCPT
            self.in_data = True
            self.data = []
            return R_DATA
        if token == b".":
            # typed '.': SMTP 250 2.0.0; LMTP answers once (DESIGN §3, Q6)
            if self.lmtp and self.in_mail and self.rcpts > 0:
                return R_LMTP_OK
            return R_OK
        if token == b"RSET":
            self.reset()
            return R_MAIL
        if token in (b"NOOP", b"VRFY", b"XCLIENT", b"XFORWARD"):
            return R_OK
        if token == b"QUIT":
            self.closed = True
            self.reset()
            return R_BYE
        if token in (b"HELO", b"EHLO", b"LHLO"):
            self.reset()
            self.helo = as_sent(args).lstrip(" ")
            return R_HELO if token == b"HELO" else R_EHLO
        raise AssertionError(f"not modelled: {token!r}")  # AUTH is never generated

    def end_of_data(self, stored: bool) -> bytes:
        replies = self.rcpts if self.lmtp else 1
        self.in_data = False
        self.reset()
        self.rcpts = 0
        return (
            (R_LMTP_OK if self.lmtp else R_OK) * replies if stored else (R_STORE_FAILED * replies)
        )


# ------------------------------------------------------------------------- strategies
def _no_crlf(data: bytes) -> bytes:
    while b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    return data


spaces = st.sampled_from([b"", b" ", b"  ", b"\t", b" \t "])
address_args = st.sampled_from(
    [b"FROM:<a@x.test>", b"TO:<b@x.test>", b"FROM:<>", b"TO:<c@x.test> NOTIFY=NEVER",
     b"FROM:<a@x.test>  SIZE=10 BODY=8BITMIME", b"TO::<d@x.test>", b"x", b"", b":<e>",
     b"FROM: <\xe9t\xe9@x.test>", b"TO:<tab\there>"]
)  # fmt: skip
hello_args = st.sampled_from([b"client.test", b"", b" \tweird\thelo ", b"h\xe9llo", b"[1.2.3.4]"])
# Lines that are never an enabled command (reference §5.1).
unknown_lines = st.sampled_from(
    [b"ETRN x", b"BDAT 10 LAST", b"HELP", b"EXPN list", b"STARTTLS", b"CONNECT", b"connect",
     b"MAILFROM:<x>", b"NOOP\nNOOP", b"QUIT\r", b"NOOP\rX", b"NO-OP", b"\xffNOOP",
     b"RCPT\x0bTO:<x>", b"DATA\r\r"]
)  # fmt: skip
nul_lines = st.sampled_from(
    [b"\0NOOP", b"NO\0OP", b"NOOP\0", b"NOOP\0junk", b"VRFY \0x", b"\0", b" \0QUIT",
     b"QU\0IT", b"RSET\0\xff"]
)  # fmt: skip
junk_lines = st.binary(max_size=300).map(lambda b: b"#" + _no_crlf(b))
data_lines = st.lists(
    st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b".", b"..", b".x", b"", b"\r", b".\r", b"\0", b"\xff\xfe", b"\n."]),
        st.integers(2040, 5000).map(lambda n: b"L" * n),
    ),
    max_size=8,
).map(lambda lines: [_no_crlf(x) for x in lines])


SETTINGS = settings(
    max_examples=120,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class SinkMachine(RuleBasedStateMachine):
    """SinkProtocol (default configuration, collecting) against Model."""

    lmtp = False
    collect = True

    def __init__(self) -> None:
        super().__init__()
        self.proto = SinkProtocol(SinkConfig().replace(lmtp=self.lmtp), collect=self.collect)
        self.model = Model(self.lmtp)

    @initialize()
    def greet(self) -> None:
        self.proto.start()
        assert self.proto.take_output() == R_GREETING
        assert self.proto.take_events() == []

    # -------------------------------------------------------------- feeding

    def feed(self, data: bytes, draw: st.DataObject, *, store_ok: bool = True) -> list[Event]:
        """``data`` in random chunks; stores each message (ok or failed). All events."""
        cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=5), label="cuts"))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        events: list[Event] = []
        for piece in pieces:
            if not piece:
                continue
            self.proto.receive(piece)
            while True:
                new = self.proto.take_events()
                events += new
                received = [e for e in new if isinstance(e, MessageReceived)]
                if not received:
                    break
                assert len(received) == 1 and new[-1] is received[0]  # a pause ends a batch
                assert self.proto.paused
                self.proto.message_stored(store_ok)
        return events

    def expect(self, data: bytes, lines: list[bytes], draw: st.DataObject) -> None:
        """Send command ``lines`` (``data`` is their wire form); check replies and events."""
        was_closed = self.model.closed
        expected = b""
        for line in lines:
            if self.model.closed:
                break  # nothing is read after a close
            expected += self.model.command(line)
        events = self.feed(data, draw)
        out = self.proto.take_output()
        assert out == expected, (lines, out, expected)
        kinds = [type(e) for e in events]
        if was_closed:
            assert kinds == [], "events from a closed session"
            return
        closes = kinds.count(Close)
        assert closes == (1 if self.model.closed else 0), kinds
        assert all(k in (Close, QuitReceived) for k in kinds), kinds
        if Close in kinds:
            assert kinds[-1] is Close  # nothing after the close

    def commands(self, lines: list[bytes], draw: st.DataObject) -> None:
        self.expect(b"".join(x + b"\r\n" for x in lines), lines, draw)

    # ---------------------------------------------------------- command rules

    @precondition(lambda self: not self.model.in_data)
    @rule(verb=st.sampled_from([b"HELO", b"EHLO", b"LHLO", b"helo", b"eHlO", b"lhlo"]),
          lead=spaces, args=hello_args, draw=st.data())  # fmt: skip
    def hello(self, verb: bytes, lead: bytes, args: bytes, draw: st.DataObject) -> None:
        self.commands([lead + verb + b" " + args], draw)

    @precondition(lambda self: not self.model.in_data)
    @rule(verb=st.sampled_from([b"MAIL", b"mail", b"Mail"]), sep=st.sampled_from([b" ", b"\t"]),
          args=address_args, draw=st.data())  # fmt: skip
    def mail(self, verb: bytes, sep: bytes, args: bytes, draw: st.DataObject) -> None:
        self.commands([verb + sep + args], draw)

    @precondition(lambda self: not self.model.in_data)
    @rule(verb=st.sampled_from([b"RCPT", b"rcpt"]), n=st.integers(1, 3), args=address_args,
          draw=st.data())  # fmt: skip
    def rcpt(self, verb: bytes, n: int, args: bytes, draw: st.DataObject) -> None:
        self.commands([verb + b" " + args] * n, draw)

    @precondition(lambda self: not self.model.in_data)
    @rule(verb=st.sampled_from([b"DATA", b"data", b"  DaTa", b"DATA extra args"]), draw=st.data())
    def data_command(self, verb: bytes, draw: st.DataObject) -> None:
        self.commands([verb], draw)

    @precondition(lambda self: not self.model.in_data)
    @rule(verb=st.sampled_from([b"RSET", b"rset", b"NOOP", b"noop x", b"VRFY a", b"XCLIENT A=B",
                                b"XFORWARD A=B", b".", b" .", b". x"]),
          draw=st.data())  # fmt: skip
    def simple(self, verb: bytes, draw: st.DataObject) -> None:
        self.commands([verb], draw)

    @precondition(lambda self: not self.model.in_data)
    @rule(line=st.one_of(unknown_lines, nul_lines, junk_lines, spaces), draw=st.data())
    def odd_line(self, line: bytes, draw: st.DataObject) -> None:
        self.commands([line], draw)

    @precondition(lambda self: not self.model.in_data)
    @rule(n=st.integers(MAX_COMMAND - 8, MAX_COMMAND), verb=st.sampled_from([b"NOOP ", b"#"]),
          draw=st.data())  # fmt: skip
    def longest_line(self, n: int, verb: bytes, draw: st.DataObject) -> None:
        # up to 2,046 octets before the CRLF: still a command (reference §4.2)
        self.commands([verb + b"a" * (n - len(verb))], draw)

    @precondition(lambda self: not self.model.in_data)
    @rule(n_rcpt=st.integers(1, 4), with_data=st.booleans(), draw=st.data())
    def transaction(self, n_rcpt: int, with_data: bool, draw: st.DataObject) -> None:
        """MAIL, RCPTs and DATA in one write (pipelining), so that messages get going."""
        lines = [b"MAIL FROM:<t@x.test> SIZE=1"]
        lines += [b"RCPT TO:<r%d@x.test>" % i for i in range(n_rcpt)]
        self.commands([*lines, b"DATA"] if with_data else lines, draw)

    @precondition(lambda self: not self.model.in_data)
    @rule(
        batch=st.lists(
            st.sampled_from([b"MAIL FROM:<p@x>", b"RCPT TO:<q@x>", b"NOOP", b"RSET", b"HELO h",
                             b"EHLO e", b"LHLO l", b"ETRN", b"", b"DATA", b"."]),
            min_size=2, max_size=8,
        ),
        draw=st.data(),
    )  # fmt: skip
    def pipelined(self, batch: list[bytes], draw: st.DataObject) -> None:
        # a DATA that is accepted turns what follows into message data: stop the batch there
        lines: list[bytes] = []
        probe = copy.deepcopy(self.model)
        for line in batch:
            lines.append(line)
            if probe.closed:
                break
            probe.command(line)
            if probe.in_data:
                break
        self.commands(lines, draw)

    @precondition(lambda self: not self.model.in_data or len(self.model.data) > 4)
    @rule(
        how=st.sampled_from(["QUIT", "QUIT+NOOP", "quit now", "EOF", "overlong", "overlong#"]),
        n=st.integers(MAX_COMMAND + 1, MAX_COMMAND + 9) | st.integers(MAX_COMMAND + 1, 6000),
        draw=st.data(),
    )
    def close(self, how: str, n: int, draw: st.DataObject) -> None:
        """End the session: QUIT (anything after it in the same write is ignored), end of
        file, or a command line of 2,047+ octets (close, no reply, reference §4.2). In the
        data phase (after some data) only EOF ends it. Later rules check that nothing comes
        out any more."""
        if how == "EOF" or self.model.in_data:
            was_closed = self.model.closed
            self.proto.receive(b"")
            assert self.proto.take_output() == b""
            events = self.proto.take_events()
            assert [type(e) for e in events] == ([] if was_closed else [Close])
            self.model.closed = True
            self.model.in_data = False
            self.model.reset()
        elif how.startswith("overlong"):
            verb = b"#" if how.endswith("#") else b"NOOP "
            self.commands([verb + b"a" * (n - len(verb))], draw)
        else:
            lines = [how.encode()] + ([b"NOOP"] if how.endswith("NOOP") else [])
            self.commands([x.replace(b"+NOOP", b"") for x in lines], draw)

    # ------------------------------------------------------------- data rules

    @precondition(lambda self: self.model.in_data and not self.model.closed)
    @rule(lines=data_lines, draw=st.data())
    def data_lines(self, lines: list[bytes], draw: st.DataObject) -> None:
        wire = b"".join((b"." + x if x.startswith(b".") else x) + b"\r\n" for x in lines)
        events = self.feed(wire, draw)
        assert self.proto.take_output() == b""
        assert events == []
        self.model.data += [x.replace(b"\r", b"") + b"\n" for x in lines]

    @precondition(lambda self: self.model.in_data and not self.model.closed)
    @rule(stored=st.booleans(), then=st.sampled_from([b"", b"NOOP\r\n"]),
          draw=st.data())  # fmt: skip
    def end_of_data(self, stored: bool, then: bytes, draw: st.DataObject) -> None:
        stored = stored or not self.collect  # nothing to store when not collecting
        model = self.model
        want_tx = (model.mail_args, tuple(model.rcpt_args), model.helo,
                   b"".join(model.data) + b"\n")  # fmt: skip
        expected = model.end_of_data(stored)
        if then:
            expected += model.command(then[:-2])
        events = self.feed(b".\r\n" + then, draw, store_ok=stored)
        assert self.proto.take_output() == expected
        kinds = [type(e) for e in events]
        if self.collect:
            assert kinds == [MessageReceived, MessageEnd, MessageAnswered], kinds
            ev = events[0]
            assert isinstance(ev, MessageReceived)
            tx = Transaction.from_envelope(ev.envelope)
            assert (tx.mail_args, tx.rcpt_args, tx.helo, tx.data) == want_tx
        else:
            assert kinds == [MessageEnd], kinds

    # ------------------------------------------------------------- invariants

    @invariant()
    def state_matches(self) -> None:
        assert self.proto.closed == self.model.closed
        assert self.proto.in_data == self.model.in_data
        assert self.proto.in_mail == self.model.in_mail
        if self.model.in_mail:
            assert self.proto.rcpts == self.model.rcpts
        assert not self.proto.paused
        assert self.proto.output == b""
        assert self.proto.take_events() == []


class LmtpMachine(SinkMachine):
    lmtp = True


class FastPathMachine(SinkMachine):
    """Not collecting (no dump, no capture): the path that never splits data."""

    collect = False


TestSinkProtocolStateful = SinkMachine.TestCase
TestSinkProtocolStateful.settings = SETTINGS
TestLmtpProtocolStateful = LmtpMachine.TestCase
TestLmtpProtocolStateful.settings = SETTINGS
TestFastPathProtocolStateful = FastPathMachine.TestCase
TestFastPathProtocolStateful.settings = SETTINGS
