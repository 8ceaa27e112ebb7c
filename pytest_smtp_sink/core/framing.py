"""Framing of the byte stream: command lines, the end of data, and message data as dumped."""

from __future__ import annotations

MAX_LINE = 2048  # octets, CRLF included (reference §4.2)
END_OF_DATA = b"\r\n.\r\n"

# Non-printable octets become '?' before arguments are logged or dumped (reference §4.3).
_SANITIZE = bytes(c if 0x20 <= c <= 0x7E else 0x3F for c in range(256))


def sanitize(raw: bytes) -> str:
    return raw.translate(_SANITIZE).decode("ascii")


def dump_form(context: bytes, raw: bytes) -> bytes:
    """``raw`` DATA as dumped (reference §14.4): every CR dropped, and each dot that follows
    CRLF. ``context`` is the (at most two) raw octets before it, already transformed."""
    text = (context + raw).replace(b"\r\n.", b"\r\n").replace(b"\r", b"")
    return text[len(context) - context.count(b"\r") :]


def dump_body(raw: bytes) -> bytes:
    """A whole message's DATA as dumped (the data phase starts as if after a CRLF)."""
    return dump_form(b"\r\n", raw)
