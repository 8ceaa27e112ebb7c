"""Transaction: one mail transaction as smtp-sink dumps it, and its dump rendering.

The field names follow the dump headers (reference §14.2). ``data`` holds the message exactly
as the dump stores it: CRs removed, leading dots stripped, plus the final empty line.
"""

from __future__ import annotations

import email.policy
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from functools import cached_property

from ..core.envelope import Envelope


def format_date(timestamp: float) -> str:
    """RFC 2822 date in local time as smtp-sink writes it (``%e``-padded day, C names)."""
    tm = time.localtime(timestamp)
    # C-locale names regardless of the process locale.
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip
    offset_min = (tm.tm_gmtoff or 0) // 60
    hours = int(offset_min / 60)  # truncates toward zero, as the C code does
    # The sign comes from the truncated hour part: -00:30 prints as +0030, as in Postfix.
    sign = "-" if hours < 0 else "+"
    minutes = abs(offset_min) % 60
    return (
        f"{days[tm.tm_wday]}, {tm.tm_mday:2d} {months[tm.tm_mon - 1]} {tm.tm_year:04d} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} "
        f"{sign}{abs(hours):02d}{minutes:02d} ({tm.tm_zone or time.tzname[tm.tm_isdst > 0]})"
    )


def _addr_from_args(value: str) -> str:
    """The address inside ``<...>`` at the start of X-Mail-Args/X-Rcpt-Args."""
    value = value.strip()
    if value.startswith("<"):
        end = value.find(">")
        return value[1:end] if end >= 0 else value[1:]
    return value.split(" ", 1)[0]


def _params_from_args(value: str) -> dict[str, str | None]:
    value = value.strip()
    if value.startswith("<"):
        end = value.find(">")
        rest = value[end + 1 :] if end >= 0 else ""
    else:
        parts = value.split(" ", 1)
        rest = parts[1] if len(parts) > 1 else ""
    params: dict[str, str | None] = {}
    for item in rest.split():
        key, sep, val = item.partition("=")
        params[key.upper()] = val if sep else None
    return params


@dataclass(frozen=True)
class Transaction:
    """A completed mail transaction (live capture or parsed from a dump)."""

    client_addr: str  # "127.0.0.1", "ipv6:::1" or "local"
    client_proto: str  # SMTP, ESMTP or LMTP
    helo: str | None  # X-Helo-Args; None when the client sent no HELO/EHLO/LHLO
    mail_args: str  # X-Mail-Args
    rcpt_args: tuple[str, ...]  # X-Rcpt-Args, in order
    queue_id: str  # 8 lowercase hex digits
    received: str  # the Received: header value (three lines joined with "\n\t")
    data: bytes  # the message as dumped (LF line ends, final empty line included)
    start_string: str = ""  # the -S text that preceded the dump, if any
    reply: str | None = field(default=None, compare=False)  # live capture: reply to "."

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Transaction:
        """The transaction of a message the protocol received."""
        e = envelope
        received = received_value(
            e.received_helo, e.client_addr, e.hostname, e.received_proto, e.queue_id,
            format_date(e.timestamp),
        )  # fmt: skip
        return cls(
            e.client_addr, e.client_proto, e.helo, e.mail_args, e.rcpt_args, e.queue_id,
            received, e.data, e.start_string,
        )  # fmt: skip

    # ------------------------------------------------------------- derived values

    @property
    def mail_from(self) -> str:
        return _addr_from_args(self.mail_args)

    @property
    def mail_params(self) -> dict[str, str | None]:
        return _params_from_args(self.mail_args)

    @property
    def rcpt_to(self) -> list[str]:
        return [_addr_from_args(a) for a in self.rcpt_args]

    @property
    def message_bytes(self) -> bytes:
        """The message without the final empty line that the dump format adds."""
        return self.data[:-1] if self.data.endswith(b"\n") else self.data

    @cached_property
    def message(self) -> EmailMessage:
        msg = BytesParser(policy=email.policy.default).parsebytes(self.message_bytes)
        assert isinstance(msg, EmailMessage)
        return msg

    # ------------------------------------------------------------------ rendering

    def header_bytes(self) -> bytes:
        lines = [f"X-Client-Addr: {self.client_addr}", f"X-Client-Proto: {self.client_proto}"]
        if self.helo is not None:
            lines.append(f"X-Helo-Args: {self.helo}")
        lines.append(f"X-Mail-Args: {self.mail_args}")
        lines.extend(f"X-Rcpt-Args: {a}" for a in self.rcpt_args)
        lines.append(f"Received: {self.received}")
        return (self.start_string + "\n".join(lines) + "\n").encode("latin-1")

    def render(self) -> bytes:
        """The bytes smtp-sink writes to a dump file for this transaction."""
        return self.header_bytes() + self.data


def received_value(
    helo: str | None, client_addr: str, hostname: str, proto: str, queue_id: str, date: str
) -> str:
    sender = helo if helo is not None else f"[{client_addr}]"
    return (
        f"from {sender} ([{client_addr}])\n"
        f"\tby {hostname} (smtp-sink) with {proto} id {queue_id};\n"
        f"\t{date}"
    )


def with_queue_id(tx: Transaction, queue_id: str) -> Transaction:
    """The same transaction under another id (the Received header names it too)."""
    old = f" id {tx.queue_id};"
    received = tx.received.replace(old, f" id {queue_id};", 1)
    return Transaction(
        tx.client_addr, tx.client_proto, tx.helo, tx.mail_args, tx.rcpt_args,
        queue_id, received, tx.data, tx.start_string, tx.reply,
    )  # fmt: skip
