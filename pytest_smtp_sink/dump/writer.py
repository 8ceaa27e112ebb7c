"""Writing -d (one file per message) and -D (append to a shared file) dumps (reference §14).

A dump is complete before the reply to ".", so a client that got its reply can read it, and
an aborted transaction leaves nothing behind. A transaction is written whole at end of data;
a -d dump may instead be streamed (``open_stream``): header first, the data as it arrives,
completed at end of data or removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import time

from ..core.config import SinkConfig
from ..core.envelope import Envelope
from .transaction import Transaction, envelope_dump, local_time_key, with_queue_id

FILE_MODE = 0o644
DIR_MODE = 0o755
MAX_TRIES = 100
# Dumps are bytes: no newline translation where the platform has text-mode files (Windows).
_BINARY = getattr(os, "O_BINARY", 0)
CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY
APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | _BINARY


_expanded: dict[tuple[str, tuple[int, int, int, str, str]], str] = {}


def expand_template(template: str, timestamp: float) -> str:
    """strftime expansion in local time, as the C program does."""
    if "%" not in template:
        return template
    key = (template, local_time_key(timestamp))
    text = _expanded.get(key)
    if text is None:  # once a second per template (the cache keeps the latest few)
        if len(_expanded) > 16:
            _expanded.clear()
        text = _expanded[key] = time.strftime(template, time.localtime(timestamp))
    return text


def _makedirs_for(path: str) -> None:
    parent = os.path.dirname(path)
    if not parent or os.path.isdir(parent):
        return
    # Not os.makedirs: it creates intermediate folders with mode 0777 (less the umask);
    # every folder Postfix creates is 0755 (less the umask).
    _makedirs_for(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(parent, DIR_MODE)


class DumpWriter:
    """Writes transactions in the smtp-sink dump format for one configuration."""

    def __init__(self, config: SinkConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()

    def write(self, tx: Transaction, when: float) -> Transaction:
        """Write ``tx`` (MAIL at ``when``); returns it under the id actually used.

        Raises OSError when the dump cannot be written.
        """
        if self.config.dump_template is not None:
            return self._write_single(self.config.dump_template, tx, when)
        if self.config.dump_file_template is not None:
            self._append(expand_template(self.config.dump_file_template, when), tx.render())
        return tx

    def write_envelope(self, envelope: Envelope) -> None:
        """Write the dump of a message nobody observes, straight from its envelope (no
        Transaction is made). Raises OSError when the dump cannot be written."""
        when = envelope.timestamp
        if self.config.dump_template is not None:
            fd, path, queue_id = self._create(self.config.dump_template, envelope.queue_id, when)
            try:
                _write_all(fd, envelope_dump(envelope, queue_id))
            except OSError:
                os.close(fd)
                os.unlink(path)
                raise
            os.close(fd)
        elif self.config.dump_file_template is not None:  # (as write: -d, else -D)
            path = expand_template(self.config.dump_file_template, when)
            self._append(path, envelope_dump(envelope, envelope.queue_id))

    def open_stream(self, tx: Transaction, when: float) -> DumpStream:
        """A -d dump of ``tx`` (its header; its data comes through the stream). OSError
        when the file cannot be made."""
        assert self.config.dump_template is not None
        fd, path, queue_id = self._create(self.config.dump_template, tx.queue_id, when)
        if queue_id != tx.queue_id:
            tx = with_queue_id(tx, queue_id)
        return DumpStream(fd, path, tx)

    def _write_single(self, template: str, tx: Transaction, when: float) -> Transaction:
        fd, path, queue_id = self._create(template, tx.queue_id, when)
        if queue_id != tx.queue_id:
            tx = with_queue_id(tx, queue_id)
        try:
            _write_all(fd, tx.render())
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        return tx

    def _create(self, template: str, queue_id: str, when: float) -> tuple[int, str, str]:
        """A new file for the message ``queue_id``: its descriptor, path, and the id it has
        (another one when a file of that name was there)."""
        prefix = expand_template(template, when)
        for _ in range(MAX_TRIES):
            path = prefix + queue_id
            try:
                fd = os.open(path, CREATE_NEW, FILE_MODE)
            except FileExistsError:
                queue_id = f"{self.rng.getrandbits(31):08x}"
                continue
            except FileNotFoundError:
                _makedirs_for(path)
                fd = os.open(path, CREATE_NEW, FILE_MODE)
            return fd, path, queue_id
        raise OSError(errno.EEXIST, "mail_file_open: something is looping", prefix)

    @staticmethod
    def _append(path: str, data: bytes) -> None:
        try:
            fd = os.open(path, APPEND, FILE_MODE)
        except FileNotFoundError:
            _makedirs_for(path)
            fd = os.open(path, APPEND, FILE_MODE)
        try:
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
            except OSError:
                # Disk full part-way: cut the shared file back, so that it holds only
                # whole messages (the client gets 451 for this one).
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)


class DumpStream:
    """A -d dump being written as its message arrives (``DumpWriter.open_stream``)."""

    def __init__(self, fd: int, path: str, tx: Transaction) -> None:
        self.fd: int | None = fd
        self.path = path
        self.tx = tx  # its header fields and queue id (data: not here)
        self.error: OSError | None = None  # the first failed write: finish raises it
        header = tx.header_bytes()
        self._header = len(header)  # where the data begins (``data``)
        self.write([header])

    def write(self, chunks: list[bytes]) -> None:
        """Append these pieces (after a failure: nothing, ``finish`` reports it)."""
        if self.error is not None or self.fd is None:
            return
        try:
            _write_all(self.fd, chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except OSError as exc:
            self.error = exc

    def finish(self, rest: bytes) -> Transaction:
        """Append the rest of the data and close: the dump is complete. OSError (the file
        is removed) when some write failed."""
        if rest:
            self.write([rest])
        self._close()
        if self.error is not None:
            self.discard()
            raise self.error
        return self.tx

    def data(self) -> bytes:
        """The data written so far, read back (for observers that came during DATA)."""
        with open(self.path, "rb") as fh:
            fh.seek(self._header)
            return fh.read()

    def discard(self) -> None:
        """The message will not be kept: close and remove the file."""
        self._close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def _close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written == len(data):
        return  # (a regular file takes it whole: no view, no loop)
    view = memoryview(data)[written:]
    while view:
        written = os.write(fd, view)
        view = view[written:]
