"""Capture: the transactions and conversations a sink saw, shared across threads.

The server's trio loop appends (from its own thread); tests read and wait (from theirs).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from ..dump.transaction import Transaction


class Transcript:
    """One client connection's conversation, as (direction, bytes) pairs."""

    def __init__(self, session_id: int, client: str) -> None:
        self.session_id = session_id
        self.client = client
        self.lines: list[tuple[str, bytes]] = []

    def add(self, direction: str, data: bytes) -> None:
        self.lines.append((direction, data))

    def text(self) -> str:
        out = [f"--- session {self.session_id} from {self.client}"]
        for direction, data in self.lines:
            if direction == "!":  # what a rule injected, after the reply it shaped
                out.append(f"   [{data.decode('utf-8', 'replace')}]")
                continue
            for line in data.splitlines(keepends=True):
                out.append(f"{direction}: {line!r}")
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
        self._transactions: list[Transaction] = []
        self._transcripts: dict[int, Transcript] = {}
        self._listeners: list[Callable[[], None]] = []

    # -- written from the server's thread
    def add(self, tx: Transaction) -> None:
        with self._cond:
            self._transactions.append(tx)
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
        with self._cond:
            return list(self._transactions)

    @property
    def transcripts(self) -> list[Transcript]:
        with self._cond:
            return list(self._transcripts.values())

    def clear(self) -> None:
        with self._cond:
            self._transactions.clear()
            self._transcripts.clear()

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[Transaction]:
        """Block until ``count`` transactions are captured; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._transactions) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.timeout_error(count, timeout)
                self._cond.wait(left)
            return list(self._transactions)

    def result(self, count: int, timeout: float) -> list[Transaction]:
        """The transactions if there are ``count`` already, else the TimeoutError."""
        with self._cond:
            if len(self._transactions) < count:
                raise self.timeout_error(count, timeout)
            return list(self._transactions)

    def timeout_error(self, count: int, timeout: float) -> TimeoutError:
        return TimeoutError(
            f"smtp_sink: expected {count} transaction(s), got "
            f"{len(self._transactions)} within {timeout:g} s"
        )

    def add_listener(self, wake: Callable[[], None]) -> None:
        with self._cond:
            self._listeners.append(wake)

    def remove_listener(self, wake: Callable[[], None]) -> None:
        with self._cond:
            if wake in self._listeners:
                self._listeners.remove(wake)

    def __len__(self) -> int:
        with self._cond:
            return len(self._transactions)
