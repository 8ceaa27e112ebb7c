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


def parse_dump_bytes(data: bytes, start_string: str | None = None) -> list[Transaction]:
    """Parse one dump file's contents (one message for -d, several for -D)."""
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
    matches = list(boundary.finditer(data))
    if not matches or matches[0].start() != 0:
        raise DumpFormatError("dump does not begin with the smtp-sink headers")
    out: list[Transaction] = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(data)
        body = data[m.end() : end]
        rcpts = m.group("rcpts")
        rcpt_args = tuple(
            _text(line[len(b"X-Rcpt-Args: ") :]) for line in rcpts.split(b"\n") if line
        )
        helo = m.group("helo")
        out.append(
            Transaction(
                client_addr=_text(m.group("addr")),
                client_proto=_text(m.group("proto")),
                helo=None if helo is None else _text(helo),
                mail_args=_text(m.group("mail")),
                rcpt_args=rcpt_args,
                queue_id=_text(m.group("id")),
                received=_text(m.group("received")),
                data=body,
                start_string=_text(start),
            )
        )
    return out


def parse_dump(
    source: str | os.PathLike[str] | bytes, start_string: str | None = None
) -> list[Transaction]:
    """Transactions from dump bytes, a dump file, or a folder of dump files.

    ``start_string`` is the ``-S`` text; by default it is whatever precedes the first
    ``X-Client-Addr:`` header. Folders are read recursively, in name order.
    """
    if isinstance(source, bytes):
        return parse_dump_bytes(source, start_string)
    path = Path(source)
    if path.is_dir():
        out: list[Transaction] = []
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            try:
                out.extend(parse_dump_bytes(file.read_bytes(), start_string))
            except DumpFormatError as exc:
                raise DumpFormatError(f"{file}: {exc}") from None
        return out
    try:
        return parse_dump_bytes(path.read_bytes(), start_string)
    except DumpFormatError as exc:
        raise DumpFormatError(f"{path}: {exc}") from None
