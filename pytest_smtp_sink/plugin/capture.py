"""Capture: the transactions and conversations a sink saw, shared across threads.

The server's trio loop adds (from its own thread); tests read and wait (from theirs). A
transaction is added once its end of data got its reply, before that reply is sent: it is
*accepted* (the client was told so) or *refused* (an error reply, or the connection dropped).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..dump.transaction import Transaction

# A client's protocol error: the sink's 5.5.x answers to bad syntax, bad sequence, unknown
# commands (strict mode fails a test on them).
_PROTOCOL_ERROR = re.compile(rb"^50[0-4] 5\.5\.[0-9]", re.M)


@dataclass(frozen=True)
class Criteria:
    """Which transactions a wait or an expectation is about; every given part must hold."""

    to: str | None = None  # one of the recipients (case-insensitive)
    sender: str | None = None  # the MAIL FROM address (case-insensitive)
    subject: str | re.Pattern[str] | None = None  # the Subject, or a pattern searched in it
    match: Callable[[Transaction], bool] | None = None

    def __call__(self, tx: Transaction) -> bool:
        if self.to is not None and self.to.lower() not in (r.lower() for r in tx.rcpt_to):
            return False
        if self.sender is not None and self.sender.lower() != tx.mail_from.lower():
            return False
        if self.subject is not None:
            subject = str(tx.message.get("Subject", ""))
            if isinstance(self.subject, re.Pattern):
                if self.subject.search(subject) is None:
                    return False
            elif subject != self.subject:
                return False
        return self.match is None or bool(self.match(tx))

    def describe(self) -> str:
        parts = []
        if self.to is not None:
            parts.append(f"to {self.to}")
        if self.sender is not None:
            parts.append(f"from {self.sender}")
        if self.subject is not None:
            shown = self.subject.pattern if isinstance(self.subject, re.Pattern) else self.subject
            parts.append(f"with subject {shown!r}")
        if self.match is not None:
            parts.append(f"matching {getattr(self.match, '__name__', 'the predicate')}")
        return " ".join(parts)


ANY = Criteria()


def summary(tx: Transaction) -> str:
    """One line for an error message: who to whom, the subject, the reply."""
    subject = str(tx.message.get("Subject", ""))
    reply = "" if tx.accepted else f" -> {tx.reply or 'dropped'}"
    return f"from {tx.mail_from or '<>'} to {', '.join(tx.rcpt_to)} {subject!r}{reply}"


class Transcript:
    """One client connection's conversation: (direction, bytes); "!" marks a fault a rule
    injected."""

    def __init__(self, session_id: int, client: str) -> None:
        self.session_id = session_id
        self.client = client
        self.lines: list[tuple[str, bytes]] = []

    def add(self, direction: str, data: bytes) -> None:
        self.lines.append((direction, data))

    def protocol_errors(self) -> list[str]:
        """The client's commands the sink answered with a 5.5.x protocol error."""
        errors = []
        last = b""
        for direction, data in self.lines:
            if direction == "C":
                last = data.splitlines()[-1] if data.strip() else last
            elif direction == "S" and _PROTOCOL_ERROR.search(data):
                reply = _PROTOCOL_ERROR.search(data)
                assert reply is not None
                line = data[reply.start() :].split(b"\r\n", 1)[0]
                errors.append(f"{last.decode('latin-1')!r} -> {line.decode('latin-1')}")
        return errors

    def text(self, heading: str = "", mode: str = "full", data_lines: int = 20) -> str:
        """The conversation, one line per line sent. ``mode``: ``full``, or ``envelope``
        (no message data); at most ``data_lines`` lines of each message's data."""
        out = [heading or f"--- session {self.session_id} from {self.client}"]
        in_data = False
        shown = hidden = 0
        for direction, data in self.lines:
            if direction == "!":  # what a rule injected, after the reply it shaped
                out.append(f"   [{data.decode('utf-8', 'replace')}]")
                continue
            for line in data.splitlines(keepends=True):
                if direction == "C" and in_data:
                    if line in (b".\r\n", b"."):
                        in_data = False
                        if hidden:
                            out.append(f"C: ... {hidden} more line(s) of message data")
                    elif mode == "envelope" or shown >= data_lines:
                        hidden += 1
                        continue
                    else:
                        shown += 1
                elif direction == "S" and line.startswith(b"354 "):
                    in_data, shown, hidden = True, 0, 0
                    if mode == "envelope":
                        out.append(f"{direction}: {line!r}")
                        out.append("C: (message data not shown: smtp_sink_report = envelope)")
                        continue
                out.append(f"{direction}: {line!r}")
        if in_data and hidden:
            out.append(f"C: ... {hidden} more line(s) of message data")
        return "\n".join(out)

    def __repr__(self) -> str:
        return (
            f"<Transcript session={self.session_id} client={self.client} "
            f"lines={len(self.lines)}>"
        )


class Capture:
    """Thread-safe store of transactions and transcripts, with blocking waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._accepted: list[Transaction] = []
        self._refused: list[Transaction] = []
        self._all: list[Transaction] = []  # both, in the order they came
        self._transcripts: dict[int, Transcript] = {}
        self._listeners: list[Callable[[], None]] = []
        self._seen = 0  # _accepted[:_seen] ends with the last transaction a wait returned
        self.first_session = 0  # the server's session number when the capture was cleared

    # -- written from the server's thread
    def add(self, tx: Transaction) -> None:
        with self._cond:
            (self._accepted if tx.accepted else self._refused).append(tx)
            self._all.append(tx)
            self._cond.notify_all()
            listeners = list(self._listeners)
        for wake in listeners:
            # A waiter whose event loop has just ended must not fail the server's store.
            with contextlib.suppress(Exception):
                wake()

    def record(self, session_id: int, client: str, direction: str, data: bytes) -> None:
        with self._cond:
            tr = self._transcripts.get(session_id)
            if tr is None:
                tr = self._transcripts[session_id] = Transcript(session_id, client)
            tr.add(direction, data)

    # -- read from tests
    @property
    def transactions(self) -> list[Transaction]:
        """The accepted ones."""
        with self._cond:
            return list(self._accepted)

    @property
    def refused(self) -> list[Transaction]:
        with self._cond:
            return list(self._refused)

    @property
    def everything(self) -> list[Transaction]:
        """Accepted and refused, in the order they came."""
        with self._cond:
            return list(self._all)

    @property
    def transcripts(self) -> list[Transcript]:
        with self._cond:
            return list(self._transcripts.values())

    def clear(self, first_session: int = 0) -> None:
        with self._cond:
            self._accepted.clear()
            self._refused.clear()
            self._all.clear()
            self._transcripts.clear()
            self._seen = 0
            self.first_session = first_session

    def mark(self) -> int:
        """Where the transactions accepted from now on begin (``assert_no_mail``)."""
        with self._cond:
            return len(self._accepted)

    def unseen(self) -> int:
        """Where the transactions no wait returned yet begin (``new=True`` waits): after the
        last one an earlier wait returned. Mail accepted before the wait began counts, so
        ``send(); wait_for(new=True)`` has no race."""
        with self._cond:
            return self._seen

    def _returned(self, found: list[Transaction], start: int) -> None:
        # under self._cond: later new=True waits begin after the last transaction returned
        last = found[-1]
        for i in range(len(self._accepted) - 1, start - 1, -1):
            if self._accepted[i] is last:
                self._seen = max(self._seen, i + 1)
                return

    def matching(self, criteria: Criteria, start: int = 0) -> list[Transaction]:
        with self._cond:
            return [tx for tx in self._accepted[start:] if criteria(tx)]

    def wait(
        self, count: int, timeout: float, criteria: Criteria = ANY, start: int = 0
    ) -> list[Transaction]:
        """Block until ``count`` accepted transactions match; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [tx for tx in self._accepted[start:] if criteria(tx)]
                if len(found) >= count:
                    if found:
                        self._returned(found, start)
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.timeout_error(count, timeout, criteria, start)
                self._cond.wait(left)

    def result(
        self, count: int, timeout: float, criteria: Criteria = ANY, start: int = 0
    ) -> list[Transaction]:
        """The matching transactions if there are ``count`` already, else the error."""
        with self._cond:
            found = [tx for tx in self._accepted[start:] if criteria(tx)]
            if len(found) >= count:
                if found:
                    self._returned(found, start)
                return found
        raise self.timeout_error(count, timeout, criteria, start)

    def timeout_error(
        self, count: int, timeout: float, criteria: Criteria = ANY, start: int = 0
    ) -> TimeoutError:
        with self._cond:
            arrived = self._accepted[start:]
            refused = list(self._refused)
            found = sum(1 for tx in arrived if criteria(tx))
        what = criteria.describe()
        lines = [
            f"smtp_sink: expected {count} {'new ' if start else ''}transaction(s)"
            f"{' ' + what if what else ''}, got {found} within {timeout:g} s"
        ]
        others = [tx for tx in arrived if not criteria(tx)]
        if others:
            lines.append(f"accepted but not matching ({len(others)}):")
            lines += [f"  {summary(tx)}" for tx in others[:10]]
        if refused:
            lines.append(f"refused ({len(refused)}):")
            lines += [f"  {summary(tx)}" for tx in refused[:10]]
        if not arrived and not refused:
            lines.append("no transaction arrived at all")
        return TimeoutError("\n".join(lines))

    def add_listener(self, wake: Callable[[], None]) -> None:
        with self._cond:
            self._listeners.append(wake)

    def remove_listener(self, wake: Callable[[], None]) -> None:
        with self._cond:
            if wake in self._listeners:
                self._listeners.remove(wake)

    def __len__(self) -> int:
        with self._cond:
            return len(self._accepted)
