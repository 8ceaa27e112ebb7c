"""Session: its shortcuts for the usual events (a message ended, QUIT, the greeting) leave it
exactly where the general steps (``_process``, ``next_step``) do.

A session with a transcript recorder always takes the general steps; the same reads through
a session without one take the shortcuts. Both must make the same calls to their host and
give the same replies, flags and answers, read after read.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_smtp_sink.core.argv import parse_argv
from pytest_smtp_sink.core.config import SinkConfig
from pytest_smtp_sink.core.protocol import SinkProtocol
from pytest_smtp_sink.core.replies import Tables
from pytest_smtp_sink.server.session import READ, SEND, Session


class Host:
    """Records what a session asks of its server; -M after ``max_messages``."""

    def __init__(self, max_messages: int | None, observed: bool, stores: bool) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.messages = 0
        self.max_messages = max_messages
        self.observed = observed  # someone wants the replies to stored messages
        self.stores = stores  # False: storing fails (the client gets 451)

    def log(self, level: str, text: str) -> None:
        self.calls.append(("log", level, text))

    def command_logged(self, text: str) -> None:
        self.calls.append(("command_logged", text))

    def store(self, envelope: object, stream: object = None) -> bool:
        self.calls.append(("store",))
        return self.stores

    def open_stream(self, envelope: object) -> None:
        return None

    def awaits_reply(self, envelope: object) -> bool:
        return self.observed

    def message_answered(self, session: int, envelope: object, replies: object) -> None:
        self.calls.append(("message_answered", replies))

    def message_ended(self) -> bool:
        self.messages += 1
        self.calls.append(("message_ended", self.messages))
        return self.max_messages is not None and self.messages >= self.max_messages

    def quit_received(self) -> None:
        self.calls.append(("quit_received",))

    def stop(self, reason: str) -> None:
        self.calls.append(("stop", reason))

    def session_closed(self, session: object, counted: bool) -> None:
        self.calls.append(("session_closed", counted))

    def session_crashed(self, exc: Exception) -> None:
        raise exc


class Transport:
    def close(self) -> None:
        pass


def run(
    config: SinkConfig, reads: list[bytes], general: bool, collect: bool = False,
    observed: bool = False, stores: bool = True,
) -> list[object]:
    """What a driver sees, step by step: the session's replies, its answer to each read,
    its flags and what the host was asked (``collect``: messages are stored; ``observed``:
    and the replies to them are awaited)."""
    host = Host(config.max_messages, observed, stores)
    proto = SinkProtocol(Tables(config), "127.0.0.1", collect=collect)
    record = (lambda direction, data: None) if general else None
    session = Session(host, Transport(), proto, record)  # type: ignore[arg-type]
    seen: list[object] = []
    if general:
        step = session.next_step()  # (greets, by the general steps)
        seen.append(step in (SEND, READ))
    else:
        seen.append(session.greet())
    seen.append(session.outbox)
    session.outbox = b""
    for now, data in enumerate(reads, 1):
        if session.closing or session.closed or session.stop_pending:
            break
        seen.append(session.received(data, float(now)))
        seen += [session.outbox, session.closing, session.stop_pending, session.disconnect_log]
        seen.append(session.line_since)  # (-t: when the unfinished command line began)
        session.outbox = b""
    seen.append(host.calls)
    return seen


COMMANDS = [
    b"EHLO client\r\n",
    b"HELO client\r\n",
    b"MAIL FROM:<a@example.com>\r\n",
    b"RCPT TO:<b@example.com>\r\n",
    b"DATA\r\n",
    b"Subject: x\r\n\r\nbody\r\n.\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"bogus\r\n",
    b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
    b"MAIL FROM:<a@exa",  # a command line in pieces (-t bounds the time it takes)
    b"mple.com>\r\nRCPT TO:<b@",
    b"example.com>\r\n",
    b"",  # the client leaves
]
MESSAGE = [COMMANDS[2], COMMANDS[3], COMMANDS[4], COMMANDS[5]]
CONFIGS = [[], ["-v"], ["-M", "2"], ["-L"], ["-c"], ["-n", "1"], ["-q", "quit"], ["-Q", "."]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    args=st.sampled_from(CONFIGS),
    reads=st.lists(st.one_of(st.sampled_from(COMMANDS), st.just(b"".join(MESSAGE))), max_size=14),
    collect=st.booleans(),
    observed=st.booleans(),
    stores=st.booleans(),
)
def test_shortcuts_and_general_steps_agree(
    args: list[str], reads: list[bytes], collect: bool, observed: bool, stores: bool
) -> None:
    config = parse_argv([*args, "127.0.0.1:25", "1"]).config
    fast = run(config, reads, False, collect=collect, observed=observed, stores=stores)
    assert fast == run(config, reads, True, collect=collect, observed=observed, stores=stores)


def test_a_message_then_quit() -> None:
    """The usual dialogue through the shortcuts; with -M 1 the '.' read tells the driver to
    leave the fast path (the stop comes once the reply is out)."""
    greeting = [True, b"220 smtp-sink ESMTP\r\n"]
    config = parse_argv(["127.0.0.1:25", "1"]).config
    assert run(config, [COMMANDS[8]], general=False) == [
        *greeting, False, b"221 Bye\r\n", True, False, False, None, [("quit_received",)]
    ]
    config = parse_argv(["-M", "1", "127.0.0.1:25", "1"]).config
    seen = run(config, MESSAGE, general=False)
    ok, replies, closing, stop_pending, disconnect_log, line_since, calls = seen[-7:]
    assert (ok, closing, stop_pending, disconnect_log, line_since) == (
        False, False, True, False, None
    )  # fmt: skip
    assert isinstance(replies, bytes) and replies.startswith(b"250 2.0.0 Ok")
    assert calls == [("message_ended", 1)]


def test_an_unfinished_command_line_is_timed_from_the_read_that_began_it() -> None:
    """-t bounds one command line: its clock starts with the read that began the line, and
    again when a read completes it and begins the next (reads at times 1, 2, 3, 4)."""
    config = parse_argv(["127.0.0.1:25", "1"]).config
    for general in (False, True):
        seen = run(config, [b"MAIL FROM:<a@exa", b"mple.com>\r\nRCPT TO:<b@", b"exa",
                            b"mple.com>\r\n"], general)  # fmt: skip
        assert seen[7::6] == [1.0, 2.0, 2.0, None]
