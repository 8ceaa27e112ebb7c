"""The sans-IO smtp-sink session: bytes in, reply bytes and events out.

Modelled on h11: no sockets, clocks or trio here. The driver feeds received bytes with
``receive()``, sends ``take_output()`` and acts on ``take_events()``. Processing stops at a
pause (a ``Delay`` or a ``MessageReceived`` that the driver must store) until the driver calls
``resume()`` / ``message_stored()``, so replies always leave in command order.
"""

from __future__ import annotations

import base64
import binascii
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..dump.transaction import (
    Transaction,
    format_date,
    mail_or_rcpt_value,
    received_value,
)
from .config import SinkConfig
from .values import encode_text

MAX_LINE = 2048  # octets, CRLF included (reference §4.2)
END_OF_DATA = b"\r\n.\r\n"
ABORT_REPLY = b"550 This violates SMTP\r\n"

# Non-printable octets become '?' before arguments are logged or dumped (reference §4.3).
_SANITIZE = bytes(c if 0x20 <= c <= 0x7E else 0x3F for c in range(256))


def sanitize(raw: bytes) -> str:
    return raw.translate(_SANITIZE).decode("ascii")


# ------------------------------------------------------------------------- events


class Event:
    """Base class of what the protocol asks its driver to do or know."""

    __slots__ = ()


@dataclass(slots=True)
class Delay(Event):
    """Wait ``seconds``, then call ``resume()`` (a -W reply delay)."""

    seconds: float


@dataclass(slots=True)
class ReadDelay(Event):
    """Flush, then wait ``seconds`` before the next read from the client (-H)."""

    seconds: float


@dataclass(slots=True)
class Abort(Event):
    """Flush, stop reading, wait ``seconds``, send ABORT_REPLY and close (-A)."""

    seconds: float


@dataclass(slots=True)
class Close(Event):
    """Flush the output and close. ``warning`` is logged on stderr when set."""

    warning: str | None = None


@dataclass(slots=True)
class MessageReceived(Event):
    """End of data while collecting: store ``transaction``, then call ``message_stored()``."""

    transaction: Transaction
    timestamp: float  # the MAIL time: dump file names and dates are built from it


@dataclass(slots=True)
class MessageEnd(Event):
    """End of data was seen (counters, -M)."""


@dataclass(slots=True)
class QuitReceived(Event):
    """QUIT was handled (counters, -n)."""


@dataclass(slots=True)
class LogLine(Event):
    """A -v conversation log line (already sanitised)."""

    text: str


@dataclass(slots=True)
class CommandLogged(Event):
    """A -s record: ``<command> <args>``, args cut to 100 characters."""

    text: str


# -------------------------------------------------------------------- reply tables


def _line(text: str) -> bytes:
    return encode_text(text) + b"\r\n"


class Tables:
    """Replies and command tables computed once per configuration."""

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        host = config.hostname
        esmtp = config.esmtp and not config.pix
        if config.pix:
            self.greeting = b"220 ********\r\n"
        elif not esmtp:
            self.greeting = _line(f"220 {host}")
        else:
            self.greeting = _line(f"220 {host} ESMTP")
        lines = [host]
        if config.advertise_pipelining:
            lines.append("PIPELINING")
        if config.eightbitmime:
            lines.append("8BITMIME")
        if config.auth:
            lines.append("AUTH PLAIN LOGIN")
        if config.xclient:
            lines.append("XCLIENT NAME HELO")
        if config.xforward:
            lines.append("XFORWARD NAME ADDR PROTO HELO")
        if config.enhanced_status_codes:
            lines.append("ENHANCEDSTATUSCODES")
        if config.dsn:
            lines.append("DSN")
        self.ehlo = b"".join(_line(f"250-{x}") for x in lines) + b"250 \r\n"
        self.helo = _line(f"250 {host}")
        self.hard = _line(config.hard_bounce_reply)
        self.soft = _line(config.soft_bounce_reply)
        enabled = ["AUTH", "MAIL", "RCPT", "DATA", ".", "RSET", "NOOP", "VRFY", "QUIT"]
        if config.lmtp:
            enabled.append("LHLO")
        elif esmtp:
            enabled += ["HELO", "EHLO"]
        else:
            enabled.append("HELO")
        if config.xclient:
            enabled.append("XCLIENT")
        if config.xforward:
            enabled.append("XFORWARD")
        self.enabled: dict[bytes, str] = {name.encode(): name for name in enabled}
        # Commands that need more than the normal reply; the fast path skips the rest.
        self.special = (
            config.reject | config.soft_reject | config.disconnect | config.disconnect_421
            | config.log_commands | frozenset(config.delays)
        )  # fmt: skip
        self.initial_proto = "LMTP" if config.lmtp else "SMTP"


R_MAIL = b"250 2.1.0 Ok\r\n"
R_RCPT = b"250 2.1.5 Ok\r\n"
R_OK = b"250 2.0.0 Ok\r\n"
R_DATA = b"354 End data with <CR><LF>.<CR><LF>\r\n"
R_LMTP_DOT = b"250 2.2.0 Ok\r\n"
R_BYE = b"221 Bye\r\n"
R_421 = b"421 4.0.0 Server closing connection\r\n"
R_UNKNOWN = b"500 5.5.1 Error: unknown command\r\n"
R_EMPTY = b"500 5.5.2 Error: unknown command\r\n"
R_NESTED = b"503 5.5.1 Error: nested MAIL command\r\n"
R_NEED_MAIL = b"503 5.5.1 Error: need MAIL command\r\n"
R_NEED_RCPT = b"503 5.5.1 Error: need RCPT command\r\n"
R_STORE_FAILED = b"451 4.3.0 Error: queue file write error\r\n"
R_TOO_BIG = b"552 5.3.4 Error: message file too big\r\n"
R_AUTH_OK = b"235 2.7.0 Authentication successful\r\n"
R_AUTH_SYNTAX = b"501 5.5.4 Syntax: AUTH mechanism\r\n"
R_AUTH_MECH = b"504 5.5.4 Error: unsupported authentication mechanism\r\n"
R_AUTH_AGAIN = b"503 5.5.1 Error: already authenticated\r\n"
R_AUTH_ABORTED = b"501 5.7.0 Authentication aborted\r\n"
R_AUTH_BAD64 = b"501 5.5.2 Error: invalid base64 data\r\n"
R_334_EMPTY = b"334 \r\n"
R_334_USER = b"334 VXNlcm5hbWU6\r\n"
R_334_PASS = b"334 UGFzc3dvcmQ6\r\n"

# phases
_COMMAND, _DATA, _AUTH, _CLOSED = 0, 1, 2, 3


class SinkProtocol:
    """One smtp-sink session. See the module docstring for the driving contract."""

    def __init__(
        self,
        config: SinkConfig | Tables,
        client_addr: str = "127.0.0.1",
        *,
        collect: bool | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tables = config if isinstance(config, Tables) else Tables(config)
        self.config = self.tables.config
        self.client_addr = client_addr
        # Collect transactions (dump or capture) or just count them.
        self.collect = self.config.dumping if collect is None else collect
        self.rng = rng or random.Random()
        self.clock = clock
        self.output = bytearray()
        self.events: list[Event] = []
        self._in = bytearray()
        self._phase = _COMMAND
        self._paused = False
        self._resume: Callable[[], None] | None = None
        self._eof = False
        self.lines = 0  # complete command lines received
        # session state (reference §6)
        self.in_mail = False
        self.rcpts = 0
        self.helo: str | None = None
        self.proto = self.tables.initial_proto
        self.authenticated = False
        self._auth_step: str | None = None
        self._aborting = False
        # transaction being collected
        self._mail_args = ""
        self._rcpt_args: list[str] = []
        self._start_time = 0.0
        self._queue_id = ""
        self._tx_helo: str | None = None
        self._tx_proto = ""
        self._chunks: list[bytes] = []
        self._tail = b"\r\n"
        # end-of-data bookkeeping for the '.' reply
        self._dot_count = 0
        self._eod = False
        self._dot_error: bytes | None = None  # 451 (not stored) or 552 (too big) for "."
        self._size = 0  # octets of DATA collected so far (max_message_size)
        self._too_big = False
        self._pending_tx: Transaction | None = None
        self.last_transaction: Transaction | None = None

    # ------------------------------------------------------------------ driver API

    @property
    def closed(self) -> bool:
        return self._phase == _CLOSED

    @property
    def partial_command(self) -> bool:
        """Part of a command line is waiting for its CRLF (the -t command deadline runs)."""
        return (self._phase == _COMMAND or self._phase == _AUTH) and bool(self._in)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def in_data(self) -> bool:
        """True between the 354 reply and the end of data."""
        return self._phase == _DATA

    def set_tables(self, tables: Tables, collect: bool) -> None:
        """Switch to another configuration; it applies from the next command on."""
        self.tables = tables
        self.config = tables.config
        self.collect = collect

    def take_output(self) -> bytes:
        out = bytes(self.output)
        self.output.clear()
        return out

    def take_events(self) -> list[Event]:
        events = self.events
        self.events = []
        return events

    def start(self) -> None:
        """Handle the CONNECT pseudo-command: the greeting."""
        self._dispatch("CONNECT", "connect", b"")
        self._run()

    def receive(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means end of file."""
        if self._phase == _CLOSED or self._aborting:
            return  # -A: nothing more is read until the abort
        if not data:
            self._eof = True
            if not self._paused:
                self._close(None)
            return
        self._in += data
        if not self._paused:
            self._run()

    def resume(self) -> None:
        """Continue after a ``Delay``: send the delayed reply, then go on with the input."""
        action = self._resume
        self._resume = None
        self._paused = False
        if action is not None and self._phase != _CLOSED:
            action()
        self._run()

    def message_stored(self, ok: bool) -> None:
        """The driver stored (or failed to store) the ``MessageReceived`` transaction."""
        self._paused = False
        self._after_store(ok)
        self._run()

    # ---------------------------------------------------------------- main loop

    def _run(self) -> None:
        buf = self._in
        pos = 0  # consumed octets: removed once at the end, not per line
        try:
            while not self._paused:
                phase = self._phase
                if phase == _DATA:
                    if pos:
                        del buf[:pos]
                        pos = 0
                    if not self._scan_data():
                        break
                    continue
                if phase == _CLOSED:
                    buf.clear()
                    return
                idx = buf.find(b"\r\n", pos)
                if idx < 0:
                    if len(buf) - pos > MAX_LINE:
                        self._close("command line too long")
                        return
                    break
                if idx - pos > MAX_LINE - 2:
                    self._close("command line too long")
                    return
                line = bytes(buf[pos:idx])
                pos = idx + 2
                self.lines += 1
                if phase == _AUTH:
                    self._auth_line(line)
                else:
                    self._command(line)
        finally:
            if pos:
                del buf[:pos]
        if self._eof and not self._paused and self._phase != _CLOSED:
            self._close(None)

    def _command(self, line: bytes) -> None:
        nul = line.find(b"\0")
        if nul >= 0:
            line = line[:nul]  # the C string ends here, for the log line too
        if self.config.verbose:
            self.events.append(LogLine(sanitize(line)))
        if line[:1] in (b" ", b"\t"):
            line = line.lstrip(b" \t")
        if not line:
            self.output += R_EMPTY
            return
        sp = line.find(b" ")
        tab = line.find(b"\t")
        if tab >= 0 and (sp < 0 or tab < sp):
            sp = tab
        if sp < 0:
            token, args = line, b""
        else:
            token, args = line[:sp], line[sp + 1 :]
        name = self.tables.enabled.get(token.upper())
        if name is None:
            self.output += R_UNKNOWN
            return
        if name in self.tables.special:
            self._dispatch(name, sanitize(token), args)
        else:
            self._normal(name, args)

    # ----------------------------------------------------------------- dispatch

    def _dispatch(self, name: str, token: str, args: bytes) -> None:
        """Postfix's order (reference §5.2): -s, -q, -Q, -f, -r, -W, normal reply."""
        cfg = self.config
        if name in cfg.log_commands:
            self.events.append(CommandLogged(f"{token} {sanitize(args)[:100]}"))
        if name in cfg.disconnect:
            self._close(None)
            return
        if name in cfg.disconnect_421:
            self.output += R_421
            self._close(None)
            return
        delay = cfg.delays.get(name)
        if name == "CONNECT" and delay is not None:
            # Unlike Postfix (Q8), a rejected greeting still waits for its delay.
            self._pause(delay, lambda: self._respond(name, args))
            return
        if name in cfg.reject or name in cfg.soft_reject or delay is None:
            self._respond(name, args)
            return
        self._pause(delay, lambda: self._respond(name, args))

    def _respond(self, name: str, args: bytes) -> None:
        cfg = self.config
        if name == "." and self._eod and self._dot_error is not None:
            self.output += self._dot_error * self._dot_replies()
        elif name in cfg.reject:
            self.output += self.tables.hard * (self._dot_replies() if name == "." else 1)
        elif name in cfg.soft_reject:
            self.output += self.tables.soft * (self._dot_replies() if name == "." else 1)
        else:
            self._normal(name, args)
            return
        if name == ".":
            self._eod = False

    def _pause(self, delay: tuple[float, int], action: Callable[[], None]) -> None:
        seconds, odds = delay
        if odds:
            rolls = 0
            while self.rng.randrange(100) < odds:
                rolls += 1
            seconds *= rolls
        if seconds <= 0:
            action()
            return
        self._paused = True
        self._resume = action
        self.events.append(Delay(seconds))

    def _dot_replies(self) -> int:
        """How many replies a '.' gets: one per recipient in LMTP, else one."""
        if not self.config.lmtp:
            return 1
        if self._eod:
            return max(self._dot_count, 1)
        return 1  # a typed '.' is one command: one reply (DESIGN §3, Q6)

    # ------------------------------------------------------------ normal replies

    def _normal(self, name: str, args: bytes) -> None:
        out = self.output
        if name == "MAIL":
            if self.in_mail:
                out += R_NESTED
                return
            self.in_mail = True
            self.rcpts = 0
            out += R_MAIL
            if self.collect:
                self._start_transaction(args)
        elif name == "RCPT":
            if not self.in_mail:
                out += R_NEED_MAIL
                return
            self.rcpts += 1
            out += R_RCPT
            if self.collect:
                self._rcpt_args.append(mail_or_rcpt_value(sanitize(args)))
        elif name == "DATA":
            if not self.in_mail or self.rcpts <= 0:
                out += R_NEED_RCPT
                return
            out += R_DATA
            self._begin_data()
        elif name == ".":
            self._dot_reply()
        elif name == "CONNECT":
            out += self.tables.greeting
        elif name in ("NOOP", "VRFY", "XCLIENT", "XFORWARD"):
            out += R_OK
        elif name == "RSET":
            self._reset()
            out += R_MAIL
        elif name == "QUIT":
            out += R_BYE
            self.events.append(QuitReceived())
            self._close(None)
        elif name == "HELO":
            self._reset()
            if not self.config.lmtp:
                self.proto = "SMTP"
            self.helo = sanitize(args).lstrip(" ")
            out += self.tables.helo
        elif name in ("EHLO", "LHLO"):
            self._reset()
            if not self.config.lmtp:
                self.proto = "ESMTP"
            self.helo = sanitize(args).lstrip(" ")
            out += self.tables.ehlo
        elif name == "AUTH":
            self._auth_start(args)

    def _dot_reply(self) -> None:
        if self.config.lmtp:
            if self._eod:
                self.output += R_LMTP_DOT * max(self._dot_count, 1)
            elif self.in_mail and self.rcpts > 0:
                # A typed '.' inside an LMTP transaction: Postfix answers once per recipient
                # and leaves rcpts at -1 (Q6); we answer once and change nothing.
                self.output += R_LMTP_DOT
            else:
                self.output += R_OK
        else:
            self.output += R_OK
        self._eod = False

    def _reset(self) -> None:
        """Abort any transaction (reference §6.1)."""
        if self.in_mail:
            self.in_mail = False
            self._rcpt_args = []
            self._chunks = []

    # -------------------------------------------------------------- transactions

    def _start_transaction(self, args: bytes) -> None:
        self._start_time = self.clock()
        self._queue_id = f"{self.rng.getrandbits(31):08x}"
        self._mail_args = mail_or_rcpt_value(sanitize(args))
        self._rcpt_args = []
        self._tx_helo = self.helo
        self._tx_proto = self.proto

    def _begin_data(self) -> None:
        cfg = self.config
        if cfg.abort_delay is not None:
            # -A: the data phase is never entered; buffered input is still parsed as
            # commands (as in Postfix), then reading stops until the abort.
            if not self._aborting:
                self._aborting = True
                self.events.append(Abort(cfg.abort_delay))
            return
        self._phase = _DATA
        self._tail = b"\r\n"
        self._chunks = []
        self._size = 0
        self._too_big = False
        if cfg.data_read_delay is not None:
            self.events.append(ReadDelay(cfg.data_read_delay))

    def _scan_data(self) -> bool:
        """Look for CRLF.CRLF in the buffer; True when the data phase ended."""
        buf = self._in
        if not buf:
            return False
        tail = self._tail
        probe = tail + bytes(buf[:4])
        k = probe.find(END_OF_DATA)
        if k >= 0:
            end = k + 5 - len(tail)
        else:
            idx = buf.find(END_OF_DATA)
            if idx < 0:
                if self.collect:
                    self._keep(bytes(buf))
                self._tail = (tail + bytes(buf[-4:]))[-4:]
                buf.clear()
                return False
            end = idx + 5
        if self.collect:
            self._keep(bytes(buf[:end]))
        del buf[:end]
        self._phase = _COMMAND
        self._end_of_data()
        return True

    def _keep(self, chunk: bytes) -> None:
        """Collect a piece of DATA, unless the message is over max_message_size."""
        limit = self.config.max_message_size
        if limit is not None:
            self._size += len(chunk)
            if self._size > limit:
                self._too_big = True
                self._chunks = []
        if not self._too_big:
            # Transform as it arrives (dump_body piece by piece), so that a big message is
            # held once, in its dumped form. The two raw octets before the chunk decide
            # whether a dot at its start follows a CRLF.
            self._chunks.append(dump_form(self._tail[-2:], chunk))

    def _end_of_data(self) -> None:
        self._dot_count = self.rcpts
        if self.collect and self._too_big:
            self._chunks = []
            self._pending_tx = None
            self._after_store(False, R_TOO_BIG)
            return
        if self.collect:
            data = b"".join(self._chunks)
            self._chunks = []
            tx = Transaction(
                client_addr=self.client_addr,
                client_proto=self._tx_proto,
                helo=self._tx_helo,
                mail_args=self._mail_args,
                rcpt_args=tuple(self._rcpt_args),
                queue_id=self._queue_id,
                received=received_value(
                    self.helo,
                    self.client_addr,
                    self.config.hostname,
                    self.proto,
                    self._queue_id,
                    format_date(self._start_time),
                ),
                data=data,
                start_string=self.config.start_string,
            )
            self._pending_tx = tx
            self._paused = True
            self.events.append(MessageReceived(tx, self._start_time))
            return
        self._after_store(True)

    def _after_store(self, ok: bool, error: bytes = R_STORE_FAILED) -> None:
        self.last_transaction = self._pending_tx
        self._pending_tx = None
        self.in_mail = False
        self._rcpt_args = []
        self.rcpts = 0
        self._dot_error = None if ok else error
        self._eod = True
        self.events.append(MessageEnd())
        if self.config.verbose:
            self.events.append(LogLine("."))
        if "." in self.tables.special or not ok:
            self._dispatch(".", ".", b"")
        else:
            self._dot_reply()

    # ----------------------------------------------------------------------- AUTH

    def _auth_start(self, args: bytes) -> None:
        parts = args.split()
        if not parts:
            self.output += R_AUTH_SYNTAX
            return
        if self.authenticated:
            self.output += R_AUTH_AGAIN
            return
        mech = parts[0].upper()
        initial = parts[1] if len(parts) > 1 else None
        if mech == b"PLAIN":
            if initial is None:
                self._auth_step = "plain"
                self._phase = _AUTH
                self.output += R_334_EMPTY
            else:
                self._auth_finish(initial)
        elif mech == b"LOGIN":
            self._phase = _AUTH
            if initial is None:
                self._auth_step = "user"
                self.output += R_334_USER
            elif self._decodes(initial):
                self._auth_step = "password"
                self.output += R_334_PASS
            else:
                self._phase = _COMMAND
                self.output += R_AUTH_BAD64
        else:
            self.output += R_AUTH_MECH

    @staticmethod
    def _decodes(data: bytes) -> bool:
        if data == b"=":
            return True
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return False
        return True

    def _auth_finish(self, response: bytes) -> None:
        self._phase = _COMMAND
        self._auth_step = None
        if self._decodes(response):
            self.authenticated = True
            self.output += R_AUTH_OK
        else:
            self.output += R_AUTH_BAD64

    def _auth_line(self, line: bytes) -> None:
        line = line.strip()
        if line == b"*":
            self._phase = _COMMAND
            self._auth_step = None
            self.output += R_AUTH_ABORTED
            return
        if self._auth_step == "user":
            if not self._decodes(line):
                self._phase = _COMMAND
                self.output += R_AUTH_BAD64
                return
            self._auth_step = "password"
            self.output += R_334_PASS
            return
        self._auth_finish(line)

    # ---------------------------------------------------------------------- close

    def _close(self, warning: str | None) -> None:
        if self._phase == _CLOSED:
            return
        self._reset()
        self._phase = _CLOSED
        self._paused = False
        self._resume = None
        self._in.clear()
        self.events.append(Close(warning))


def dump_form(context: bytes, raw: bytes) -> bytes:
    """``raw`` DATA as dumped (reference §14.4): every CR dropped, and each dot that follows
    CRLF. ``context`` is the (at most two) raw octets before it, already transformed."""
    text = (context + raw).replace(b"\r\n.", b"\r\n").replace(b"\r", b"")
    return text[len(context) - context.count(b"\r") :]


def dump_body(raw: bytes) -> bytes:
    """A whole message's DATA as dumped (the data phase starts as if after a CRLF)."""
    return dump_form(b"\r\n", raw)
