"""TLS: a Transport that speaks TLS over a session's non-blocking socket.

``ssl.SSLObject`` with memory BIOs, driven by plain non-blocking socket calls and trio's
``wait_readable``/``wait_writable`` (as ``PlainTransport``), so that a STARTTLS upgrade keeps
the socket and closing never has to wait. Used by the portable driver only: plain sessions
never pay for it.
"""

from __future__ import annotations

import contextlib
import socket as stdsocket
import ssl
from collections.abc import Callable

import trio

from .transport import RECV_SIZE, PlainTransport, fair_turn


class TlsError(Exception):
    """The TLS handshake failed; ``str()`` says why in one line."""


def server_context(cert_file: str, key_file: str | None = None) -> ssl.SSLContext:
    """A server context for a PEM certificate chain (and its key, if in another file)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def describe(tls: ssl.SSLObject) -> str:
    """What Transactions record of a TLS connection: ``TLSv1.3 TLS_AES_256_GCM_SHA384``."""
    cipher = tls.cipher()
    return f"{tls.version()} {cipher[0] if cipher else '?'}"


class TlsTransport:
    """A server-side TLS connection over a connected non-blocking socket."""

    __slots__ = ("_incoming", "_outgoing", "_ready_reads", "_tls", "fd", "sock")

    def __init__(self, sock: stdsocket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._ready_reads = 0

    @classmethod
    def over(cls, plain: PlainTransport, context: ssl.SSLContext) -> TlsTransport:
        """TLS on the connection of ``plain`` (STARTTLS, implicit TLS)."""
        return cls(plain.sock, context)

    async def handshake(self) -> str:
        """Do the server side of the handshake; its description, or TlsError."""
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not await self._flush():
                    raise TlsError("the client went away during the TLS handshake") from None
                if not await self._fill():
                    raise TlsError("the client went away during the TLS handshake") from None
            except ssl.SSLError as exc:
                await self._flush()  # the alert, if there is one
                raise TlsError(f"TLS handshake failed: {exc.reason or exc}") from None
        if not await self._flush():
            raise TlsError("the client went away during the TLS handshake")
        return describe(self._tls)

    async def receive(self) -> bytes:
        await fair_turn(self)
        while True:
            try:
                return self._tls.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                if not await self._flush() or not await self._fill():
                    return b""
            except (ssl.SSLError, OSError):  # close_notify, a ragged end, garbage
                return b""

    async def send_all(self, data: bytes, progressed: Callable[[], None]) -> bool:
        try:
            self._tls.write(data)  # into the memory BIO: never blocks
        except ssl.SSLError:
            return False
        return await self._flush(progressed)

    def close(self) -> None:
        """Say close_notify if the socket takes it at once, then close."""
        with contextlib.suppress(ssl.SSLError, ValueError):
            self._tls.unwrap()
        pending = self._outgoing.read()
        if pending:
            with contextlib.suppress(OSError):
                self.sock.send(pending)
        self.sock.close()

    # ----------------------------------------------------------------- the socket

    async def _flush(self, progressed: Callable[[], None] | None = None) -> bool:
        """Send what TLS has written; False when the client is gone."""
        data = self._outgoing.read()
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)
                if progressed is not None:
                    progressed()
                continue
            except OSError:
                return False
            view = view[sent:]
        return True

    async def _fill(self) -> bool:
        """Feed TLS what the socket has (waiting for it); False at end of file."""
        while True:
            try:
                data = self.sock.recv(RECV_SIZE)
            except BlockingIOError:
                self._ready_reads = 0
                await trio.lowlevel.wait_readable(self.sock)
                continue
            except OSError:
                data = b""
            if not data:
                self._incoming.write_eof()
                return False
            self._incoming.write(data)
            return True
