"""Failure rules in the sans-IO protocol: matching, actions, counting, seeded odds."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pytest_smtp_sink.core.argv import parse_argv
from pytest_smtp_sink.core.config import SinkConfig
from pytest_smtp_sink.core.errors import ConfigError
from pytest_smtp_sink.core.events import Delay, FaultInjected, MessageReceived
from pytest_smtp_sink.core.protocol import SinkProtocol
from pytest_smtp_sink.core.replies import Tables
from pytest_smtp_sink.core.rules import Rule, parse_rule

MAIL = b"HELO c\r\nMAIL FROM:<a@x.example>\r\n"


class Session:
    def __init__(self, tables: Tables, collect: bool = True) -> None:
        self.p = SinkProtocol(tables, collect=collect, rng=random.Random(1))
        self.events: list[Any] = []
        self.p.start()
        self.pump()

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

    def send(self, data: bytes) -> list[bytes]:
        self.p.receive(data)
        return self.pump().split(b"\r\n")[:-1]

    def faults(self) -> list[str]:
        return [e.description for e in self.events if isinstance(e, FaultInjected)]


def tables(*rules: str | Rule, **options: Any) -> Tables:
    return Tables(SinkConfig().replace(rules=list(rules), **options))


def rcpt(session: Session, address: str) -> bytes:
    return session.send(f"RCPT TO:<{address}>\r\n".encode())[-1]


# ----------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("RCPT bad@*: 550 5.1.1 No such user",
         Rule("RCPT", "bad@*", reply="550 5.1.1 No such user")),
        ("rcpt times=2: 450 4.7.1 Greylisted", Rule("RCPT", times=2, reply="450 4.7.1 Greylisted")),
        ("MAIL after=3 per=connection: 421", Rule("MAIL", action="421", after=3, per="connection")),
        ("DATA odds=0.25: soft", Rule("DATA", action="soft", odds=0.25)),
        ("HELO re:^evil: drop", Rule("HELO", "re:^evil", action="drop")),
        ("NOOP every=2: delay=1.5", Rule("NOOP", action="delay", delay=1.5, every=2)),
        ("MAIL param=BODY=8BITMIME: 555 5.5.4 No 8-bit",
         Rule("MAIL", param="BODY=8BITMIME", reply="555 5.5.4 No 8-bit")),
    ],
)  # fmt: skip
def test_text_form_round_trips(text: str, rule: Rule) -> None:
    assert parse_rule(text) == rule
    assert parse_rule(str(rule)) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("RCPT bad@*", "no ': ' before the action"),
        ("ETRN: 550 no", "unknown command: ETRN"),
        ("RCPT: 650 what", "a reply needs a 2xx-5xx code"),
        ("RCPT times=0: hard", "times must be a positive count"),
        ("RCPT odds=2: hard", "odds must be a probability"),
        ("RCPT per=world: hard", "per must be sink or connection"),
        ("RCPT a b: hard", "what is 'b'?"),
        ("RCPT times=x: hard", "bad times: x"),
        ("RCPT re:(: hard", "bad regular expression"),
        ("RCPT: delay=0", "delay needs a positive number"),
    ],
)
def test_bad_rules_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rule(text)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert text in str(info.value)  # the error names the rule


def test_spellings() -> None:
    cfg = SinkConfig().replace(
        rules=["RCPT a@x: hard"], rcpt={"b@x": "550 5.1.1 Unknown"}, mail={"@spam.example": "drop"}
    )
    assert [str(r) for r in cfg.rules] == [
        "RCPT a@x: hard", "RCPT b@x: 550 5.1.1 Unknown", "MAIL @spam.example: drop"
    ]
    inv = parse_argv(["--rule", "RCPT bad@*: 550 5.1.1 No", "--rule=DATA: soft", ":25", "1"])
    assert [str(r) for r in inv.config.rules] == ["RCPT bad@*: 550 5.1.1 No", "DATA: soft"]
    with pytest.raises(ConfigError, match="rcpt must map addresses to replies"):
        SinkConfig().replace(rcpt=["bad@x"])


# ------------------------------------------------------------------------ matching


@pytest.mark.parametrize(
    ("pattern", "hits", "misses"),
    [
        ("bad@example.com", ["bad@example.com", "BAD@Example.COM"], ["bad@example.org"]),
        ("bad@*", ["bad@a", "bad@b.example"], ["good@a"]),
        ("@example.com", ["x@example.com"], ["x@example.org", "x@sub.example.org"]),
        ("re:^(a|b)@", ["a@x", "b@y"], ["c@x"]),
    ],
)
def test_address_patterns(pattern: str, hits: list[str], misses: list[str]) -> None:
    t = tables(f"RCPT {pattern}: 550 5.1.1 Unknown")
    s = Session(t)
    s.send(MAIL)
    for address in hits:
        assert rcpt(s, address) == b"550 5.1.1 Unknown"
    for address in misses:
        assert rcpt(s, address) == b"250 2.1.5 Ok"


def test_one_recipient_of_three() -> None:
    s = Session(tables(rcpt={"bad@example.com": "550 5.1.1 User unknown"}))
    s.send(MAIL)
    replies = [rcpt(s, a) for a in ("ok@example.com", "bad@example.com", "also@example.com")]
    assert replies == [b"250 2.1.5 Ok", b"550 5.1.1 User unknown", b"250 2.1.5 Ok"]
    assert s.send(b"DATA\r\nx\r\n.\r\n")[-1] == b"250 2.0.0 Ok"
    [received] = [e for e in s.events if isinstance(e, MessageReceived)]
    assert received.envelope.rcpt_args == ("<ok@example.com>", "<also@example.com>")
    assert s.faults() == ["rule: RCPT bad@example.com: 550 5.1.1 User unknown"]


def test_helo_and_params() -> None:
    s = Session(tables("EHLO re:spam: 554 5.7.1 Go away", "MAIL param=SMTPUTF8: 555 5.5.4 No"))
    assert s.send(b"EHLO spammer.example\r\n") == [b"554 5.7.1 Go away"]
    assert s.send(b"MAIL FROM:<a@x> SMTPUTF8\r\n") == [b"555 5.5.4 No"]
    assert s.send(b"MAIL FROM:<a@x>\r\n") == [b"250 2.1.0 Ok"]


def test_actions() -> None:
    assert Session(tables("MAIL: hard")).send(MAIL)[-1] == b"500 5.3.0 Error: command failed"
    assert Session(tables("MAIL: soft")).send(MAIL)[-1] == b"450 4.3.0 Error: command failed"
    dropped = Session(tables("MAIL: drop"))
    assert dropped.send(MAIL) == [b"250 smtp-sink"] and dropped.p.closed
    closed = Session(tables("MAIL: 421"))
    assert closed.send(MAIL)[-1] == b"421 4.0.0 Server closing connection" and closed.p.closed
    delayed = Session(tables("MAIL: delay=2"))
    assert delayed.send(MAIL)[-1] == b"250 2.1.0 Ok"
    assert Delay(2.0) in delayed.events
    worded = Session(tables("RCPT: 251 2.1.5 Will forward"))
    worded.send(MAIL)
    assert rcpt(worded, "b@x") == b"251 2.1.5 Will forward"  # accepted, in these words
    assert worded.p.rcpts == 1
    refused_data = Session(tables("DATA: 554 5.5.1 No data today"))
    refused_data.send(MAIL)
    rcpt(refused_data, "b@x")
    assert refused_data.send(b"DATA\r\n") == [b"554 5.5.1 No data today"]
    assert not refused_data.p.in_data


def test_end_of_data_rules_smtp_and_lmtp() -> None:
    smtp = Session(tables(". full@x: 452 4.2.2 Mailbox full"))
    smtp.send(MAIL + b"RCPT TO:<ok@x>\r\nRCPT TO:<full@x>\r\nDATA\r\n")
    assert smtp.send(b"x\r\n.\r\n") == [b"452 4.2.2 Mailbox full"]
    lmtp = Session(tables(". full@x: 452 4.2.2 Mailbox full", lmtp=True))
    lmtp.send(b"LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<ok@x>\r\nRCPT TO:<full@x>\r\n")
    lmtp.send(b"RCPT TO:<ok2@x>\r\nDATA\r\n")
    assert lmtp.send(b"x\r\n.\r\n") == [b"250 2.2.0 Ok", b"452 4.2.2 Mailbox full",
                                         b"250 2.2.0 Ok"]  # fmt: skip
    assert lmtp.send(b"NOOP\r\n") == [b"250 2.0.0 Ok"]  # one reply per command, still


def test_rules_come_before_the_flags() -> None:
    argv = ["-f", "rcpt", "--rule", "RCPT vip@*: 250 2.1.5 Welcome", ":25", "1"]
    t = Tables(parse_argv(argv).config)
    s = Session(t)
    s.send(MAIL)
    assert rcpt(s, "vip@x") == b"250 2.1.5 Welcome"
    assert rcpt(s, "other@x") == b"500 5.3.0 Error: command failed"  # -f, as Postfix


# ------------------------------------------------------------------------ counting


def test_times_across_connections_per_sink() -> None:
    t = tables("RCPT times=2: 450 4.7.1 Greylisted")
    results = []
    for _ in range(3):  # a retrying client reconnects: the counter is the sink's
        s = Session(t)
        s.send(MAIL)
        results.append(rcpt(s, "b@x"))
    assert results == [b"450 4.7.1 Greylisted"] * 2 + [b"250 2.1.5 Ok"]
    t.counters.reset()
    s = Session(t)
    s.send(MAIL)
    assert rcpt(s, "b@x") == b"450 4.7.1 Greylisted"


def test_after_per_connection() -> None:
    t = tables("MAIL after=3 per=connection: 421")
    for _ in range(2):
        s = Session(t)
        replies = [s.send(b"MAIL FROM:<a@x>\r\nRSET\r\n")[0] for _ in range(4)]
        assert replies == [b"250 2.1.0 Ok"] * 3 + [b"421 4.0.0 Server closing connection"]


def test_every() -> None:
    s = Session(tables("NOOP every=3: 550 5.0.0 Third"))
    replies = [s.send(b"NOOP\r\n")[0] for _ in range(7)]
    third = b"550 5.0.0 Third"
    ok = b"250 2.0.0 Ok"
    assert replies == [ok, ok, third, ok, ok, third, ok]


def test_times_with_every_and_after() -> None:
    rule = Rule("NOOP", reply="550 5.0.0 x", after=1, every=2, times=2)
    assert [n for n in range(1, 12) if rule.acts_on(n)] == [3, 5]


# ------------------------------------------------------------------------- odds


def failures(t: Tables, n: int = 200) -> list[int]:
    s = Session(t)
    return [i for i in range(n) if s.send(b"NOOP\r\n")[0].startswith(b"4")]


def test_odds_are_reproducible_with_a_seed() -> None:
    first = failures(tables("NOOP odds=0.2: soft", seed=42))
    again = failures(tables("NOOP odds=0.2: soft", seed=42))
    other = failures(tables("NOOP odds=0.2: soft", seed=43))
    assert first == again and first != other
    assert 20 < len(first) < 60  # about one in five


def test_the_w_dice_are_seeded_too_and_named() -> None:
    def delays(seed: int) -> list[float]:
        s = Session(Tables(SinkConfig(seed=seed, delays={"NOOP": (1.0, 50)})))
        for _ in range(30):
            s.send(b"NOOP\r\n")
        return [e.seconds for e in s.events if isinstance(e, Delay)]

    assert delays(7) == delays(7) != delays(8)
    s = Session(Tables(SinkConfig(seed=7, delays={"NOOP": (1.0, 50)})))
    for _ in range(30):
        s.send(b"NOOP\r\n")
    assert any(f.startswith("-W noop:1:50: delay x") for f in s.faults())


def test_flag_only_configurations_have_no_rules_to_evaluate() -> None:
    t = Tables(parse_argv(["-f", "rcpt", "-W", "data:1", ":25", "1"]).config)
    assert t.rules_for == {} and not t.track_rcpts
