"""The sans-IO smtp-sink session: bytes in, reply bytes and events out.

Modelled on h11: no sockets, clocks or trio here. The driver feeds received bytes with
``receive()``, sends ``take_output()`` and acts on ``take_events()`` (see ``events.py``: a
batch ends at a pause, and each pause has its acknowledgement), so replies always leave in
command order. A new configuration (``set_tables``) applies from the next command outside a
transaction: a transaction in progress keeps the configuration it began with.
"""

from __future__ import annotations

import base64
import binascii
import random
import time
from collections.abc import Callable

from .config import SinkConfig
from .envelope import Envelope, mail_or_rcpt_value
from .events import (
    CLOSE,
    MESSAGE_END,
    QUIT_RECEIVED,
    Abort,
    Close,
    CommandLogged,
    Delay,
    Event,
    LogLine,
    MessageReceived,
    Pause,
    ReadDelay,
)
from .framing import END_OF_DATA, MAX_LINE, dump_form, sanitize
from .replies import (
    ABORT_REPLY,
    R_334_EMPTY,
    R_334_PASS,
    R_334_USER,
    R_421,
    R_AUTH_ABORTED,
    R_AUTH_AGAIN,
    R_AUTH_BAD64,
    R_AUTH_MECH,
    R_AUTH_OK,
    R_AUTH_SYNTAX,
    R_BYE,
    R_DATA,
    R_EMPTY,
    R_LMTP_DOT,
    R_MAIL,
    R_NEED_MAIL,
    R_NEED_RCPT,
    R_NESTED,
    R_OK,
    R_RCPT,
    R_STORE_FAILED,
    R_TOO_BIG,
    R_UNKNOWN,
    Tables,
)


class ProtocolError(RuntimeError):
    """The driver broke the contract (an acknowledgement that does not match the pause)."""


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
        self._events: list[Event] = []
        self._in = bytearray()
        self._phase = _COMMAND
        self._pause: Pause | None = None  # the pause waiting for its acknowledgement
        self._resume: Callable[[], None] | None = None  # the delayed reply of a Delay
        self._pending: tuple[Tables, bool] | None = None  # set_tables during a transaction
        self._eof = False
        self.lines = 0  # complete command lines received
        # session state (reference §6)
        self.in_mail = False
        self.rcpts = 0
        self.helo: str | None = None
        self.proto = self.tables.initial_proto
        self.authenticated = False
        self._auth_step: str | None = None
        # -A and -H: pauses that come once the buffered input is used up
        self._aborting = False
        self._abort_after: float | None = None
        self._read_delay: float | None = None
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
        self._pending_envelope: Envelope | None = None
        self.last_envelope: Envelope | None = None  # of the last end of data, if collected

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
        """A pause is waiting for its acknowledgement."""
        return self._pause is not None

    @property
    def in_data(self) -> bool:
        """True between the 354 reply and the end of data."""
        return self._phase == _DATA

    def set_tables(self, tables: Tables, collect: bool) -> None:
        """Switch to another configuration: from the next command, or, during a
        transaction, from the first command after it."""
        if self.in_mail:
            self._pending = (tables, collect)
        else:
            self._adopt(tables, collect)

    def take_output(self) -> bytes:
        out = bytes(self.output)
        self.output.clear()
        return out

    def take_events(self) -> list[Event]:
        """The events since the last call; a pause, if any, is the last one."""
        events = self._events
        self._events = []
        return events

    def start(self) -> None:
        """Handle the CONNECT pseudo-command: the greeting."""
        self._dispatch("CONNECT", "connect", b"")
        self._run()

    def receive(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means end of file. While paused, the bytes
        wait until the acknowledgement."""
        if self._phase == _CLOSED or self._aborting:
            return  # -A: nothing more is read until the abort
        if not data:
            self._eof = True
            if self._pause is None:
                self._close(None)
            return
        self._in += data
        if self._pause is None:
            self._run()

    def delay_elapsed(self) -> None:
        """Acknowledge a ``Delay``: the delayed reply, then the rest of the input."""
        self._acknowledge(Delay)
        action = self._resume
        self._resume = None
        if action is not None and self._phase != _CLOSED:
            action()
        self._run()

    def message_stored(self, ok: bool) -> None:
        """Acknowledge ``MessageReceived``: the driver stored the message (or failed to)."""
        self._acknowledge(MessageReceived)
        self._after_store(ok)
        self._run()

    def read_delay_elapsed(self) -> None:
        """Acknowledge a ``ReadDelay``: reading goes on."""
        self._acknowledge(ReadDelay)
        self._run()

    def abort_elapsed(self) -> None:
        """Acknowledge an ``Abort``: the 550, then ``Close``."""
        self._acknowledge(Abort)
        self.output += ABORT_REPLY
        self._close(None)

    def _acknowledge(self, kind: type[Pause]) -> None:
        if not isinstance(self._pause, kind):
            raise ProtocolError(f"{kind.__name__} acknowledged while the pause is {self._pause!r}")
        self._pause = None

    def _adopt(self, tables: Tables, collect: bool) -> None:
        self.tables = tables
        self.config = tables.config
        self.collect = collect
        self._pending = None

    # ---------------------------------------------------------------- main loop

    def _run(self) -> None:
        buf = self._in
        pos = 0  # consumed octets: removed once at the end, not per line
        try:
            while self._pause is None:
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
        if self._pause is not None or self._phase == _CLOSED:
            return
        # The buffered input is used up: the pauses that wait for that come now.
        if self._abort_after is not None:
            self._pause_for(Abort(self._abort_after))
            self._abort_after = None
        elif self._read_delay is not None:
            self._pause_for(ReadDelay(self._read_delay))
            self._read_delay = None
        elif self._eof:
            self._close(None)

    def _pause_for(self, pause: Pause) -> None:
        self._pause = pause
        self._events.append(pause)

    def _command(self, line: bytes) -> None:
        if self._pending is not None and not self.in_mail:
            self._adopt(*self._pending)
        nul = line.find(b"\0")
        if nul >= 0:
            line = line[:nul]  # the C string ends here, for the log line too
        if self.config.verbose:
            self._events.append(LogLine(sanitize(line)))
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
            self._events.append(CommandLogged(f"{token} {sanitize(args)[:100]}"))
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
            self._delay(delay, lambda: self._respond(name, args))
            return
        if name in cfg.reject or name in cfg.soft_reject or delay is None:
            self._respond(name, args)
            return
        self._delay(delay, lambda: self._respond(name, args))

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

    def _delay(self, delay: tuple[float, int], action: Callable[[], None]) -> None:
        seconds, odds = delay
        if odds:
            rolls = 0
            while self.rng.randrange(100) < odds:
                rolls += 1
            seconds *= rolls
        if seconds <= 0:
            action()
            return
        self._resume = action
        self._pause_for(Delay(seconds))

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
            self._events.append(QUIT_RECEIVED)
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
                self._abort_after = cfg.abort_delay
            return
        self._phase = _DATA
        self._tail = b"\r\n"
        self._chunks = []
        self._size = 0
        self._too_big = False
        if cfg.data_read_delay is not None:
            self._read_delay = cfg.data_read_delay

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
            self._pending_envelope = None
            self._after_store(False, R_TOO_BIG)
            return
        if self.collect:
            data = b"".join(self._chunks)
            self._chunks = []
            envelope = Envelope(
                client_addr=self.client_addr,
                client_proto=self._tx_proto,
                helo=self._tx_helo,
                mail_args=self._mail_args,
                rcpt_args=tuple(self._rcpt_args),
                queue_id=self._queue_id,
                timestamp=self._start_time,
                received_helo=self.helo,
                received_proto=self.proto,
                hostname=self.config.hostname,
                start_string=self.config.start_string,
                data=data,
            )
            self._pending_envelope = envelope
            self._pause_for(MessageReceived(envelope))
            return
        self._after_store(True)

    def _after_store(self, ok: bool, error: bytes = R_STORE_FAILED) -> None:
        self.last_envelope = self._pending_envelope
        self._pending_envelope = None
        self.in_mail = False
        self._rcpt_args = []
        self.rcpts = 0
        self._dot_error = None if ok else error
        self._eod = True
        self._events.append(MESSAGE_END)
        if self.config.verbose:
            self._events.append(LogLine("."))
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
        self._pause = None
        self._resume = None
        self._abort_after = self._read_delay = None
        self._in.clear()
        self._events.append(CLOSE if warning is None else Close(warning))

