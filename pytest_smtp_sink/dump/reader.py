"""parse_dump(): read smtp-sink dump files back into Transaction objects.

Reads ``-d`` single-message files, ``-D`` multi-message files and folders of either, including
files written by Postfix's own smtp-sink. ``Transaction.render()`` and ``parse_dump()``
round-trip.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .transaction import Transaction

_HEADER = (
    rb"X-Client-Addr: (?P<addr>[^\n]*)\n"
    rb"X-Client-Proto: (?P<proto>[^\n]*)\n"
    rb"(?P<utf8>X-SMTPUTF8: yes\n)?"
    rb"(?:X-TLS: (?P<tls>[^\n]*)\n)?"
    rb"(?:X-Auth-User: (?P<auth>[^\n]*)\n)?"
    rb"(?:X-Helo-Args: (?P<helo>[^\n]*)\n)?"
    rb"X-Mail-Args: (?P<mail>[^\n]*)\n"
    rb"(?P<rcpts>(?:X-Rcpt-Args: [^\n]*\n)*)"
    rb"Received: (?P<received>from [^\n]*\n\tby [^\n]* \(smtp-sink\) with [^\n]*"
    rb" id (?P<id>[0-9a-fA-F]+);\n\t[^\n]*)\n"
)
_HEADER_RE = re.compile(_HEADER)
_FIRST_ADDR = re.compile(rb"X-Client-Addr: ")


class DumpFormatError(ValueError):
    """The bytes are not in the smtp-sink dump format."""


def _text(raw: bytes) -> str:
    return raw.decode("latin-1")


def _utf8(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def parse_dump_bytes(
    data: bytes, start_string: str | None = None, single: bool = False
) -> list[Transaction]:
    """Parse one dump file's contents (one message for -d, several for -D).

    With ``single`` everything after the first header block is that message's body, so a
    body that contains something looking like a dump header block cannot split it (the
    multi-message -D format itself cannot tell them apart).
    """
    if not data:
        return []
    if start_string is None:
        first = _FIRST_ADDR.search(data)
        if first is None:
            raise DumpFormatError("no X-Client-Addr header: not an smtp-sink dump")
        start = data[: first.start()]
    else:
        start = start_string.encode("latin-1")
    if not data.startswith(start):
        raise DumpFormatError(f"dump does not begin with the start string {start!r}")
    boundary = re.compile(b"(?:^|(?<=\n))" + re.escape(start) + _HEADER)
    if single:
        first_match = boundary.match(data)
        matches = [first_match] if first_match is not None else []
    else:
        matches = list(boundary.finditer(data))
    if not matches or matches[0].start() != 0:
        raise DumpFormatError("dump does not begin with the smtp-sink headers")
    out: list[Transaction] = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(data)
        body = data[m.end() : end]
        utf8 = m.group("utf8") is not None
        text = _utf8 if utf8 else _text  # an SMTPUTF8 transaction's headers are UTF-8
        rcpts = m.group("rcpts")
        rcpt_args = tuple(
            text(line[len(b"X-Rcpt-Args: ") :]) for line in rcpts.split(b"\n") if line
        )
        helo, tls, auth = m.group("helo"), m.group("tls"), m.group("auth")
        out.append(
            Transaction(
                client_addr=_text(m.group("addr")),
                client_proto=_text(m.group("proto")),
                helo=None if helo is None else text(helo),
                mail_args=text(m.group("mail")),
                rcpt_args=rcpt_args,
                queue_id=_text(m.group("id")),
                received=text(m.group("received")),
                data=body,
                start_string=_text(start),
                smtputf8=utf8,
                auth_user=None if auth is None else text(auth),
                tls=None if tls is None else _text(tls),
            )
        )
    return out


def _single_message_file(path: Path, data: bytes) -> bool:
    """A -d file (or a --smtp-sink-dump file): named after its message's queue id."""
    m = re.search(rb" id ([0-9a-fA-F]+);\n\t", data[:4096])
    if m is None:
        return False
    queue_id = m.group(1).decode("ascii")
    name = path.name
    return name.endswith(queue_id) or name.startswith(queue_id + ".")


def _parse_file(path: Path, start_string: str | None, single: bool | None) -> list[Transaction]:
    data = path.read_bytes()
    one = _single_message_file(path, data) if single is None else single
    try:
        return parse_dump_bytes(data, start_string, one)
    except DumpFormatError as exc:
        raise DumpFormatError(f"{path}: {exc}") from None


def parse_dump(
    source: str | os.PathLike[str] | bytes,
    start_string: str | None = None,
    single: bool | None = None,
) -> list[Transaction]:
    """Transactions from dump bytes, a dump file, or a folder of dump files.

    ``start_string`` is the ``-S`` text; by default it is whatever precedes the first
    ``X-Client-Addr:`` header. Folders are read recursively, in name order. ``single``:
    one message per file (-d); by default a file named after the queue id of its first
    message (as -d and --smtp-sink-dump name them) is read as one message, anything
    else (bytes, -D files) as a sequence of messages.
    """
    if isinstance(source, bytes):
        return parse_dump_bytes(source, start_string, bool(single))
    path = Path(source)
    if path.is_dir():
        out: list[Transaction] = []
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            out.extend(_parse_file(file, start_string, single))
        return out
    return _parse_file(path, start_string, single)
