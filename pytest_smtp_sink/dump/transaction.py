"""Transaction: one mail transaction as smtp-sink dumps it, and its dump rendering.

The field names follow the dump headers (reference §14.2). ``data`` holds the message exactly
as the dump stores it: CRs removed, leading dots stripped, plus the final empty line.

Texts from the client (HELO, MAIL and RCPT arguments, the AUTH user) are kept as sent in a live
Transaction; the dump sanitises them as Postfix does (every octet that is not printable ASCII
becomes ``?``), except in an SMTPUTF8 transaction, whose dump holds them as UTF-8 (and says
``X-SMTPUTF8: yes``). ``parse_dump`` reads back what was written.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

# The email package (and html) load on first use: the command line never parses mail,
# and its start-up should not pay for them.
if TYPE_CHECKING:
    from email.message import EmailMessage

from ..core.envelope import Envelope, address_of, params_of
from ..core.framing import sanitize

# Control characters in a UTF-8 header value become '?': the header stays one line.
_CONTROLS = {c: "?" for c in (*range(0x20), 0x7F)}


def dump_text(value: str, utf8: bool) -> str:
    """A client's text as the dump holds it: sanitised octet by octet (Postfix), or, in an
    SMTPUTF8 transaction, as UTF-8 with only control characters replaced."""
    if value.isascii() and value.isprintable():
        return value  # (the usual case: both ways leave it as it is)
    if utf8:
        return value.translate(_CONTROLS)
    return sanitize(value.encode("utf-8", "surrogateescape"))


def local_time_key(timestamp: float) -> tuple[int, int, int, str, str]:
    """What a local-time text of ``timestamp`` depends on: its second and the time zone
    (``time.tzset`` may change it), for caches of such texts."""
    return (int(timestamp // 1), time.timezone, time.altzone, *time.tzname)


_last_date: tuple[tuple[int, int, int, str, str], str] | None = None


def format_date(timestamp: float) -> str:
    """RFC 2822 date in local time as smtp-sink writes it (``%e``-padded day, C names)."""
    global _last_date
    key = local_time_key(timestamp)
    last = _last_date
    if last is not None and last[0] == key:
        return last[1]  # a busy sink dumps many messages a second
    text = _format_date(timestamp)
    _last_date = (key, text)
    return text


def _format_date(timestamp: float) -> str:
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


@dataclass(frozen=True)
class Transaction:
    """A completed mail transaction (live capture or parsed from a dump).

    The fields are the dump headers; ``mail_from``, ``rcpt_to``, ``message``, ``subject``,
    ``text``, ``html``, ``attachments`` and ``links`` read them. Captured live (``smtp_sink``),
    a transaction also knows what the client was told (``reply``, ``replies``, ``accepted``)
    and on which connection of the test it came (``session``).
    """

    #: ``X-Client-Addr``: ``"127.0.0.1"``, ``"ipv6:::1"`` or ``"local"`` (unix socket)
    client_addr: str
    #: ``X-Client-Proto``: ``SMTP``, ``ESMTP`` or ``LMTP``
    client_proto: str
    #: ``X-Helo-Args``: the HELO/EHLO/LHLO name, None when the client sent none
    helo: str | None
    #: ``X-Mail-Args``: the MAIL FROM argument as sent (``<a@example.com> SIZE=12``)
    mail_args: str
    #: ``X-Rcpt-Args``: each RCPT TO argument as sent, in order
    rcpt_args: tuple[str, ...]
    #: The queue id (8 lowercase hex digits) of the ``Received:`` header and dump file name
    queue_id: str
    #: The ``Received:`` header value smtp-sink adds (three lines joined with ``"\n\t"``)
    received: str
    #: The message as dumped: CRs removed, leading dots stripped, the final empty line kept
    data: bytes
    #: The ``-S`` text that preceded the dump, if any
    start_string: str = ""
    #: Live capture: the reply the client got to the end of data (in LMTP the first one);
    #: None when the connection was dropped without one
    reply: str | None = field(default=None, compare=False)
    #: ``MAIL ... SMTPUTF8``: the texts are UTF-8 in the dump (``X-SMTPUTF8: yes``)
    smtputf8: bool = False
    #: The user of a successful AUTH (``X-Auth-User``), else None
    auth_user: str | None = None
    #: The TLS protocol and cipher (``X-TLS``), e.g. ``"TLSv1.3 TLS_AES_256_GCM_SHA384"``
    tls: str | None = None
    #: BDAT: the message octets as received (the dump form drops CRs; this keeps them)
    raw: bytes | None = field(default=None, compare=False, repr=False)
    #: Live capture: every reply to the end of data (one per recipient in LMTP)
    replies: tuple[str, ...] = field(default=(), compare=False)
    #: Live capture: the connection's number in the test (as reports number them), from 1
    session: int = field(default=0, compare=False)

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Transaction:
        """The transaction of a message the protocol received."""
        e = envelope
        return cls(
            e.client_addr, e.client_proto, e.helo, e.mail_args, e.rcpt_args, e.queue_id,
            received_of(e, e.queue_id), e.data, e.start_string, smtputf8=e.smtputf8,
            auth_user=e.auth_user, tls=e.tls, raw=e.raw,
        )  # fmt: skip

    # ------------------------------------------------------------- derived values

    @property
    def accepted(self) -> bool:
        """The client was told the message was accepted (for some recipient in LMTP)."""
        return any(r.startswith("2") for r in self.replies)

    @property
    def mail_from(self) -> str:
        """The MAIL FROM address, without brackets and parameters (``""``: null sender)."""
        return address_of(self.mail_args)

    @property
    def mail_params(self) -> dict[str, str | None]:
        """The ESMTP parameters of MAIL FROM: ``{"SIZE": "12", "SMTPUTF8": None}``."""
        return params_of(self.mail_args)

    @property
    def rcpt_to(self) -> list[str]:
        """The RCPT TO addresses, in order, without brackets and parameters."""
        return [address_of(a) for a in self.rcpt_args]

    @property
    def message_bytes(self) -> bytes:
        """The message: as received for BDAT, else as dumped (LF line ends) without the
        final empty line that the dump format adds."""
        if self.raw is not None:
            return self.raw
        return self.data[:-1] if self.data.endswith(b"\n") else self.data

    @cached_property
    def message(self) -> EmailMessage:
        """The message, parsed (``email.policy.default``)."""
        import email.policy
        from email.message import EmailMessage
        from email.parser import BytesParser

        msg = BytesParser(policy=email.policy.default).parsebytes(self.message_bytes)
        assert isinstance(msg, EmailMessage)
        return msg

    @property
    def subject(self) -> str:
        """The Subject header (decoded), or ""."""
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str | None:
        """The plain-text body (of a multipart message: its text/plain part), or None."""
        return _body(self.message, "plain")

    @property
    def html(self) -> str | None:
        """The HTML body (of a multipart message: its text/html part), or None."""
        return _body(self.message, "html")

    @property
    def attachments(self) -> list[Attachment]:
        """The attachments: file name, content type, the decoded octets."""
        from email.message import EmailMessage

        return [
            Attachment(part.get_filename(), part.get_content_type(), _payload(part))
            for part in self.message.iter_attachments()
            if isinstance(part, EmailMessage)
        ]

    @property
    def links(self) -> list[str]:
        """The URLs in the text and HTML bodies (``href`` targets and bare http(s) URLs),
        in order, each once."""
        import html

        found: list[str] = []
        for body in (self.html or "", self.text or ""):
            for url in _HREF.findall(body) + _URL.findall(body):
                url = html.unescape(url).rstrip(".,;:!?")  # a sentence's end is not the URL's
                if url not in found:
                    found.append(url)
        return found

    # ------------------------------------------------------------------ rendering

    def header_bytes(self) -> bytes:
        """The ``X-...`` headers and ``Received:`` line that precede ``data`` in a dump."""
        return dump_header(
            self.start_string, self.client_addr, self.client_proto, self.smtputf8, self.tls,
            self.auth_user, self.helo, self.mail_args, self.rcpt_args, self.received,
        )  # fmt: skip

    def render(self) -> bytes:
        """The bytes smtp-sink writes to a dump file for this transaction."""
        return self.header_bytes() + self.data


class Attachment(NamedTuple):
    """One attachment of a message."""

    #: The file name of its ``Content-Disposition``, or None
    filename: str | None
    #: Its MIME type, e.g. ``"application/pdf"``
    content_type: str
    #: The decoded octets
    data: bytes


_HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_URL = re.compile(r"""https?://[^\s<>"')\]]+""")


def _body(message: EmailMessage, subtype: str) -> str | None:
    from email.message import EmailMessage

    part = message.get_body(preferencelist=(subtype,))
    if part is None or not isinstance(part, EmailMessage):
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def _payload(part: EmailMessage) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def dump_header(
    start_string: str,
    client_addr: str,
    client_proto: str,
    utf8: bool,
    tls: str | None,
    auth_user: str | None,
    helo: str | None,
    mail_args: str,
    rcpt_args: tuple[str, ...],
    received: str,
) -> bytes:
    """The ``X-...`` headers and ``Received:`` line that precede the data in a dump."""
    lines = [f"X-Client-Addr: {client_addr}", f"X-Client-Proto: {client_proto}"]
    if utf8:
        lines.append("X-SMTPUTF8: yes")
    if tls is not None:
        lines.append(f"X-TLS: {tls}")
    if auth_user is not None:
        lines.append(f"X-Auth-User: {dump_text(auth_user, utf8)}")
    if helo is not None:
        lines.append(f"X-Helo-Args: {dump_text(helo, utf8)}")
    lines.append(f"X-Mail-Args: {dump_text(mail_args, utf8)}")
    for arg in rcpt_args:
        lines.append(f"X-Rcpt-Args: {dump_text(arg, utf8)}")
    lines.append(f"Received: {received}")
    lines.append("")
    text = "\n".join(lines)
    encoded = text.encode("utf-8", "surrogateescape") if utf8 else text.encode("latin-1")
    return start_string.encode("latin-1") + encoded if start_string else encoded


def envelope_dump(e: Envelope, queue_id: str) -> bytes:
    """What ``Transaction.from_envelope(e)`` renders (under ``queue_id``), without the
    Transaction: the dump of a message nobody observes."""
    helo, received_helo, mail_args, rcpt_args = e.helo, e.received_helo, e.mail_args, e.rcpt_args
    if not (e.smtputf8 or e.start_string or e.tls is not None or e.auth_user is not None):
        # The usual message, in one piece: the client's texts are printable ASCII (checked
        # at once), so that the dump holds them as they are.
        texts = f"{helo}{received_helo}{mail_args}{''.join(rcpt_args)}"
        if texts.isascii() and texts.isprintable():
            addr = e.client_addr
            helo_line = "" if helo is None else f"X-Helo-Args: {helo}\n"
            rcpt_lines = "".join([f"X-Rcpt-Args: {arg}\n" for arg in rcpt_args])
            sender = f"[{addr}]" if received_helo is None else received_helo
            return (
                f"X-Client-Addr: {addr}\nX-Client-Proto: {e.client_proto}\n{helo_line}"
                f"X-Mail-Args: {mail_args}\n{rcpt_lines}Received: from {sender} ([{addr}])\n"
                f"\tby {e.hostname} (smtp-sink) with {e.received_proto} id {queue_id};\n"
                f"\t{format_date(e.timestamp)}\n"
            ).encode("latin-1") + e.data
    return dump_header(
        e.start_string, e.client_addr, e.client_proto, e.smtputf8, e.tls, e.auth_user, e.helo,
        e.mail_args, e.rcpt_args, received_of(e, queue_id),
    ) + e.data  # fmt: skip


def received_of(e: Envelope, queue_id: str) -> str:
    """The Received header value of the message ``e`` under ``queue_id``."""
    helo = None if e.received_helo is None else dump_text(e.received_helo, e.smtputf8)
    date = format_date(e.timestamp)
    return received_value(helo, e.client_addr, e.hostname, e.received_proto, queue_id, date)


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
    # (the last one: a client's HELO text, earlier in the header, may hold the same words)
    head, sep, tail = tx.received.rpartition(f" id {tx.queue_id};")
    received = head + f" id {queue_id};" + tail if sep else tx.received
    return dataclasses.replace(tx, queue_id=queue_id, received=received)
