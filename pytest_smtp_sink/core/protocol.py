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
import hashlib
import hmac
import random
import time
from collections.abc import Callable

from .config import SinkConfig
from .envelope import Envelope, address_of, client_text, mail_or_rcpt_value, params_of
from .events import (
    CLOSE,
    CLOSE_SILENTLY,
    MESSAGE_END,
    QUIT_RECEIVED,
    START_TLS,
    Abort,
    Close,
    CommandLogged,
    Delay,
    Event,
    FaultInjected,
    LogLine,
    MessageAnswered,
    MessageReceived,
    Pause,
    ReadDelay,
    StartTls,
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
    R_AUTH_INVALID,
    R_AUTH_MECH,
    R_AUTH_OK,
    R_AUTH_REQUIRED,
    R_AUTH_SYNTAX,
    R_BDAT_SYNTAX,
    R_BINARYMIME_NEEDS_BDAT,
    R_BYE,
    R_DATA,
    R_DATA_AFTER_BDAT,
    R_EMPTY,
    R_LMTP_DOT,
    R_MAIL,
    R_NEED_MAIL,
    R_NEED_RCPT,
    R_NESTED,
    R_OK,
    R_RCPT,
    R_SIZE_EXCEEDED,
    R_SIZE_SYNTAX,
    R_STARTTLS,
    R_STARTTLS_SYNTAX,
    R_STORE_FAILED,
    R_TLS_ACTIVE,
    R_TLS_REQUIRED,
    R_TOO_BIG,
    R_UNKNOWN,
    Tables,
    bdat_ok,
)
from .rules import Rule
from .values import encode_text


class ProtocolError(RuntimeError):
    """The driver broke the contract (an acknowledgement that does not match the pause)."""


# the first octets of an end of data begun before a read: its part in the read begins so
_END_CONTINUES = (b"\r", b"\n", b".")

# phases
_COMMAND, _DATA, _AUTH, _CLOSED, _BDAT = 0, 1, 2, 3, 4


class SinkProtocol:
    """One smtp-sink session. See the module docstring for the driving contract."""

    # Slots: with more than 30 attributes an instance's attributes leave CPython's shared-key
    # fast path for plain dict lookups on every access.
    __slots__ = (
        "_abort_after",
        "_aborting",
        "_after_input",
        "_answer_mark",
        "_auth_step",
        "_auth_user_step",
        "_bdat_args",
        "_bdat_last",
        "_bdat_left",
        "_bdat_seen",
        "_bdat_size",
        "_bdat_token",
        "_binarymime",
        "_challenge",
        "_chunks",
        "_dot_count",
        "_dot_error",
        "_eod",
        "_eof",
        "_mail_args",
        "_pending",
        "_pending_envelope",
        "_phase",
        "_queue_id",
        "_raw",
        "_rcpt_addrs",
        "_rcpt_args",
        "_read_delay",
        "_resume",
        "_rule_counts",
        "_size",
        "_start_time",
        "_started",
        "_tail",
        "_too_big",
        "_tx_helo",
        "_tx_proto",
        "_tx_smtputf8",
        "auth_user",
        "authenticated",
        "client_addr",
        "clock",
        "collect",
        "config",
        "data_held",
        "data_phases",
        "events",
        "helo",
        "in_mail",
        "last_envelope",
        "lines",
        "output",
        "pause",
        "proto",
        "rcpts",
        "rng",
        "tables",
        "tls",
        "unread",
    )

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
        # (public for drivers to read, not to change: plain attributes, as a property
        # costs a call on every read)
        self.events: list[Event] = []  # not taken yet (take_events)
        self.unread = bytearray()  # received octets not parsed yet (an unfinished line)
        self._phase = _COMMAND
        self.pause: Pause | None = None  # the pause waiting for its acknowledgement
        self._resume: Callable[[], None] | None = None  # the delayed reply of a Delay
        self._pending: tuple[Tables, bool] | None = None  # set_tables during a transaction
        self._eof = False
        self.lines = 0  # complete command lines received
        self.data_phases = 0  # DATA phases begun (a driver streaming data tells them apart)
        self.data_held = 0  # octets of the message's dump form held (not taken) so far
        # session state (reference §6)
        self.in_mail = False
        self.rcpts = 0
        self.helo: str | None = None
        self.proto = self.tables.initial_proto
        self.authenticated = False
        self.auth_user: str | None = None
        self._auth_step: str | None = None
        self._auth_user_step: str | None = None  # LOGIN: the user name, until the password
        self._challenge = b""  # CRAM-MD5
        self.tls: str | None = None  # "TLSv1.3 TLS_AES_256_GCM_SHA384" once TLS is on
        self._started = False
        # -A and -H: pauses that come once the buffered input is used up
        self._aborting = False
        self._abort_after: float | None = None
        self._read_delay: float | None = None
        # one of the three above may be set: _input_used_up has work once a read is used up
        self._after_input = False
        # transaction being collected
        self._mail_args = ""
        self._rcpt_args: list[str] = []
        self._start_time = 0.0
        self._queue_id = ""
        self._tx_helo: str | None = None
        self._tx_proto = ""
        self._tx_smtputf8 = False
        self._binarymime = False  # MAIL ... BODY=BINARYMIME: only BDAT may follow
        self._bdat_seen = False  # a BDAT chunk came in this transaction: DATA may not
        self._bdat_left = 0  # octets of the current BDAT chunk still to come
        self._bdat_size = 0
        self._bdat_last = False
        self._bdat_token = ""
        self._bdat_args = b""
        self._raw: list[bytes] = []  # BDAT: the message octets as received
        self._rcpt_addrs: list[str] = []  # for rules on "." (the recipients)
        self._rule_counts: dict[Rule, int] = {}  # rules counted per connection
        self._answer_mark: int | None = None  # where the stored message's reply begins
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
        return bool(self.unread) and (self._phase == _COMMAND or self._phase == _AUTH)

    @property
    def paused(self) -> bool:
        """A pause is waiting for its acknowledgement."""
        return self.pause is not None

    @property
    def in_data(self) -> bool:
        """True between the 354 reply and the end of data."""
        return self._phase == _DATA

    def take_data(self) -> list[bytes]:
        """The message so far (dump form), taken away: a driver that streams it to a dump
        takes the pieces as they come (``in_data``); the envelope of ``MessageReceived``
        then holds only the rest, and ``data_envelope`` gives the fields to begin with."""
        chunks = self._chunks
        self._chunks = []
        self.data_held = 0
        return chunks

    def data_envelope(self) -> Envelope:
        """During DATA: the envelope of the message being received, without its data."""
        return self._envelope(b"", None)

    def set_tables(self, tables: Tables, collect: bool) -> None:
        """Switch to another configuration: at once when no transaction is under way, else
        once it is over (its end-of-data reply given, or it was reset)."""
        if self.in_mail or self._eod or self.pause is not None:
            self._pending = (tables, collect)
        else:
            self._adopt(tables, collect)

    def take_output(self) -> bytes:
        out = bytes(self.output)
        self.output.clear()
        return out

    def take_events(self) -> list[Event]:
        """The events since the last call; a pause, if any, is the last one."""
        events = self.events
        self.events = []
        return events

    def start(self) -> None:
        """Handle the CONNECT pseudo-command: the greeting."""
        self._started = True
        if "CONNECT" in self.tables.special:
            self._dispatch("CONNECT", "connect", b"")
        else:
            self._normal("CONNECT", b"")  # (what _dispatch would come to)
        self._run()

    def receive(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means end of file. While paused, the bytes
        wait until the acknowledgement."""
        if self._phase == _CLOSED or self._aborting:
            return  # -A: nothing more is read until the abort
        if not data:
            self._eof = self._after_input = True
            if self.pause is None:
                self._close(None)
            return
        if self.pause is not None or self.unread:
            self.unread += data
            if self.pause is None:
                self._run()
            return
        # Nothing buffered: the usual cases take the bytes as they are, no copies.
        phase = self._phase
        if phase == _COMMAND:
            # (partition, not find: the methods that take start and end arguments parse
            # them the slow way; partition takes one argument, and its parts are needed)
            line, crlf, rest = data.partition(b"\r\n")
            if crlf and not rest and len(data) <= MAX_LINE:
                # One whole command line.
                self.lines += 1
                self._command(line)
                if self.unread or self._phase == _BDAT:
                    self._run()  # bytes a pause held back, or a chunk (BDAT 0) begins
                    return
            else:
                self.unread += data
                self._run()
                return
        elif phase == _DATA:
            end = self._data_end(data)
            if end < 0:  # all of it is message data
                if self.collect:
                    self._keep(data)
                self._tail = (self._tail + data[-4:])[-4:]
            else:
                if self.collect:
                    self._keep(data if end == len(data) else data[:end])
                self._phase = _COMMAND
                self._end_of_data()
                if end < len(data):
                    self.unread += data[end:]  # commands pipelined behind the end of data
                    self._run()
                    return
        else:
            self.unread += data
            self._run()
            return
        # The read is used up (what _run ends with), without the call when nothing waits.
        if self._after_input:
            self._input_used_up()

    def delay_elapsed(self) -> None:
        """Acknowledge a ``Delay``: the delayed reply, then the rest of the input."""
        self._acknowledge(Delay)
        action = self._resume
        self._resume = None
        if action is not None and self._phase != _CLOSED:
            action()
        self._run()

    def message_stored(self, ok: bool, answered: bool = True) -> None:
        """Acknowledge ``MessageReceived``: the driver stored the message (or failed to).
        ``answered``: a ``MessageAnswered`` event is to say what the client was told."""
        self._acknowledge(MessageReceived)
        self._after_store(ok, answered=answered)
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
        self.events[-1] = CLOSE_SILENTLY  # Postfix's -v says no "disconnect" here

    def tls_started(self, description: str) -> None:
        """TLS is on: acknowledges ``StartTls``, or, before ``start()``, says that the
        connection began with TLS (implicit TLS). ``description``: "version cipher"."""
        if not self._started:
            self.tls = description
            return
        self._acknowledge(StartTls)
        # RFC 3207 §4.2: forget what the client said before; plaintext that was pipelined
        # behind STARTTLS is discarded, never executed.
        self.unread.clear()
        self._reset()
        self.helo = None
        self.proto = self.tables.initial_proto
        self.authenticated = False
        self.auth_user = None
        self.tls = description
        self._run()

    def _acknowledge(self, kind: type[Pause]) -> None:
        if not isinstance(self.pause, kind):
            raise ProtocolError(f"{kind.__name__} acknowledged while the pause is {self.pause!r}")
        self.pause = None

    def _adopt(self, tables: Tables, collect: bool) -> None:
        self.tables = tables
        self.config = tables.config
        self.collect = collect
        self._pending = None

    def _transaction_over(self) -> None:
        """The end of data is answered: say how; a configuration that came during the
        transaction applies from now on."""
        self._answered()
        self._eod = False
        if self._pending is not None and not self.in_mail:
            self._adopt(*self._pending)

    # ---------------------------------------------------------------- main loop

    def _run(self) -> None:
        buf = self.unread
        if not buf and self._phase != _BDAT:  # (a BDAT 0 chunk completes with no octets)
            self._input_used_up()  # nothing to parse: what the loop below would end with
            return
        pos = 0  # consumed octets: removed once at the end, not per line
        try:
            while self.pause is None:
                phase = self._phase
                if phase == _DATA:
                    if pos:
                        del buf[:pos]
                        pos = 0
                    if not self._scan_data():
                        break
                    continue
                if phase == _BDAT:
                    if pos:
                        del buf[:pos]
                        pos = 0
                    if not self._take_chunk():
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
        self._input_used_up()

    def _input_used_up(self) -> None:
        """The buffered input is used up: the pauses that wait for that come now."""
        if not self._after_input or self.pause is not None or self._phase == _CLOSED:
            return
        if self._abort_after is not None:
            self._pause_for(Abort(self._abort_after))
            self._abort_after = None
        elif self._read_delay is not None:
            self._pause_for(ReadDelay(self._read_delay))
            self._read_delay = None
        elif self._eof:
            self._close(None)
        self._after_input = (
            self._abort_after is not None or self._read_delay is not None or self._eof
        )

    def _pause_for(self, pause: Pause) -> None:
        self.pause = pause
        self.events.append(pause)

    def _command(self, line: bytes) -> None:
        if self._pending is not None and not self.in_mail:
            self._adopt(*self._pending)
        # (partition, not "in" or find: bytes.__contains__ tries its operand as an int
        # first, and the TypeError it raises and clears costs more than the search)
        line = line.partition(b"\0")[0]  # the C string ends at a NUL, for the log too
        if self.config.verbose:
            self.events.append(LogLine(sanitize(line)))
        tables = self.tables
        token, _, args = line.partition(b" ")
        # A verb as clients send it (upper case, a space after) is found as it is; the
        # keys are upper case, with no blank in them, so the general steps below would
        # have found the same.
        name = tables.enabled.get(token)
        if name is None:
            if line[:1] in (b" ", b"\t"):
                line = line.lstrip(b" \t")
            if not line:
                self.output += R_EMPTY
                return
            token, _, args = line.partition(b" ")
            if token.partition(b"\t")[1]:  # a tab before the first space ends the verb
                token, _, args = line.partition(b"\t")
            name = tables.enabled.get(token.upper())
            if name is None:
                self.output += R_UNKNOWN
                return
        if name in tables.special:
            if name == "BDAT":  # its reply comes once the chunk is in
                self._bdat_command(sanitize(token), args)
            else:
                self._dispatch(name, sanitize(token), args)
        else:
            self._normal(name, args)

    # ----------------------------------------------------------------- dispatch

    def _dispatch(self, name: str, token: str, args: bytes) -> None:
        """Postfix's order (reference §5.2): -s, -q, -Q, -f, -r, -W, normal reply; the
        failure rules come after -s, before the flags."""
        cfg = self.config
        if name in cfg.log_commands:
            self.events.append(CommandLogged(f"{token} {sanitize(args)[:100]}"))
        rules = self.tables.rules_for.get(name)
        if rules is not None and self._apply_rules(name, rules, args):
            return
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
            self._delay(delay, lambda: self._respond(name, args), name)
            return
        if name in cfg.reject or name in cfg.soft_reject or delay is None:
            self._respond(name, args)
            return
        self._delay(delay, lambda: self._respond(name, args), name)

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
            self._transaction_over()
        elif name == "BDAT":
            self._reset()  # a refused chunk: the message is not delivered

    # ------------------------------------------------------------------- rules

    def _apply_rules(self, name: str, rules: tuple[Rule, ...], args: bytes) -> bool:
        """Act on the first rule that acts on this command; False: none did."""
        if name == ".":
            if not self._eod or self._dot_error is not None:
                return False  # a typed "."; or the message was not kept (451, 552)
            return self._dot_rules(rules)
        text = client_text(args)
        params: dict[str, str | None] | None = None
        if name in ("MAIL", "RCPT"):
            value = mail_or_rcpt_value(text)
            subject, params = address_of(value), params_of(value)
        elif name == "AUTH":
            subject = text.split(" ", 1)[0]
        else:
            subject = text.strip(" \t")
        rule = self._first_rule(rules, subject, params)
        if rule is None:
            return False
        self._act(rule, name, args)
        return True

    def _first_rule(
        self, rules: tuple[Rule, ...], subject: str, params: dict[str, str | None] | None
    ) -> Rule | None:
        for rule in rules:
            if not rule.matches(subject, params):
                continue
            if rule.per == "sink":
                nth = self.tables.counters.next(rule)
            else:
                nth = self._rule_counts[rule] = self._rule_counts.get(rule, 0) + 1
            if not rule.acts_on(nth):
                continue
            if rule.odds is not None and not self.tables.odds_hit(rule):
                continue
            return rule
        return None

    def _act(self, rule: Rule, name: str, args: bytes) -> None:
        self.events.append(FaultInjected(f"rule: {rule}"))
        action = rule.action
        if action == "drop":
            self._close(None)
        elif action == "421":
            self.output += R_421
            self._close(None)
        elif action == "delay":
            assert rule.delay is not None
            self._delay((rule.delay, 0), lambda: self._respond(name, args), name)
        elif action == "hard" or action == "soft" or (rule.reply or "")[:1] in "45":
            line = self.tables.hard if action == "hard" else self.tables.soft
            if action == "reply":
                line = encode_text(rule.reply or "") + b"\r\n"
            self.output += line
            if name == "BDAT":
                self._reset()  # a refused chunk: the message is not delivered
        else:  # a 2xx/3xx reply text: the command succeeds, with these words
            start = len(self.output)
            self._normal(name, args)
            produced = self.output[start:].count(b"\r\n")
            self.output[start:] = (encode_text(rule.reply or "") + b"\r\n") * produced

    def _dot_rules(self, rules: tuple[Rule, ...]) -> bool:
        """End of data: SMTP answers once (a rule on any recipient acts); LMTP answers
        each recipient, a rule on that one's address giving its reply."""
        recipients = self._rcpt_addrs or [""]
        if not self.config.lmtp or len(recipients) == 1:
            for address in recipients:
                rule = self._first_rule(rules, address, None)
                if rule is not None:
                    self._act(rule, ".", b"")
                    self._transaction_over()
                    return True
            return False
        chosen = [self._first_rule(rules, address, None) for address in recipients]
        if all(rule is None for rule in chosen):
            return False
        for rule in chosen:
            if rule is None:
                self.output += R_LMTP_DOT
                continue
            self.events.append(FaultInjected(f"rule: {rule}"))
            if rule.action == "hard":
                self.output += self.tables.hard
            elif rule.action == "soft":
                self.output += self.tables.soft
            elif rule.action == "reply":
                self.output += encode_text(rule.reply or "") + b"\r\n"
            else:  # drop, 421, delay: for the whole reply, not one recipient
                self.output += R_LMTP_DOT
        self._transaction_over()
        return True

    def _delay(
        self, delay: tuple[float, int], action: Callable[[], None], name: str = ""
    ) -> None:
        seconds, odds = delay
        if odds:
            dice = self.tables.dice or self.rng
            rolls = 0
            while dice.randrange(100) < odds:
                rolls += 1
            if rolls:  # the man page's dice rule: say what it drew
                self.events.append(
                    FaultInjected(f"-W {name.lower()}:{seconds:g}:{odds}: delay x{rolls}")
                )
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
            if self.tables.guarded and not self._mail_allowed():
                return
            if self.in_mail:
                out += R_NESTED
                return
            if self.tables.mail_params and not self._mail_params(args):
                return
            self.in_mail = True
            self.rcpts = 0
            if self._rcpt_addrs:
                self._rcpt_addrs = []
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
                self._rcpt_args.append(mail_or_rcpt_value(client_text(args)))
            if self.tables.track_rcpts:
                self._rcpt_addrs.append(address_of(mail_or_rcpt_value(client_text(args))))
        elif name == "DATA":
            if not self.in_mail or self.rcpts <= 0:
                out += R_NEED_RCPT
                return
            if self._bdat_seen or self._binarymime:
                out += R_DATA_AFTER_BDAT if self._bdat_seen else R_BINARYMIME_NEEDS_BDAT
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
            self.events.append(QUIT_RECEIVED)
            self._close(None)
        elif name == "HELO":
            self._reset()
            if not self.config.lmtp:
                self.proto = "SMTP"
            self.helo = client_text(args).lstrip(" ")
            out += self.tables.helo
        elif name in ("EHLO", "LHLO"):
            self._reset()
            if not self.config.lmtp:
                self.proto = "ESMTP"
            self.helo = client_text(args).lstrip(" ")
            out += self.tables.ehlo if self.tls is None else self.tables.ehlo_tls
        elif name == "AUTH":
            self._auth_start(args)
        elif name == "STARTTLS":
            if args.strip(b" \t"):
                out += R_STARTTLS_SYNTAX
            elif self.tls is not None:
                out += R_TLS_ACTIVE
            else:
                out += R_STARTTLS
                self._pause_for(START_TLS)
        elif name == "BDAT":
            self._bdat_reply()

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
        self._transaction_over()

    def _reset(self) -> None:
        """Abort any transaction (reference §6.1)."""
        if self.in_mail:
            self.in_mail = False
            self._rcpt_args = []
            self._chunks = []
            self._raw = []
            self._bdat_seen = self._binarymime = False
            if self._pending is not None:
                self._adopt(*self._pending)

    def _mail_allowed(self) -> bool:
        """require_tls and auth_required: MAIL must wait for TLS / AUTH."""
        if self.config.require_tls and self.tls is None:
            self.output += R_TLS_REQUIRED
            return False
        if self.config.auth_required and not self.authenticated:
            self.output += R_AUTH_REQUIRED
            return False
        return True

    def _mail_params(self, args: bytes) -> bool:
        """SIZE=, BODY= and SMTPUTF8 of MAIL (the extensions that are on); False: refused."""
        close = args.find(b">")
        words = args[close + 1 :].split() if close >= 0 else args.split()[1:]
        for word in words:
            key, _, value = word.partition(b"=")
            key = key.upper()
            if key == b"SIZE" and self.tables.size_limit is not None:
                if not value.isdigit():
                    self.output += R_SIZE_SYNTAX
                    return False
                if int(value) > self.tables.size_limit:
                    self.output += R_SIZE_EXCEEDED
                    return False
            elif key == b"BODY" and value.upper() == b"BINARYMIME" and self.config.chunking:
                self._binarymime = True
            elif key == b"SMTPUTF8" and self.config.smtputf8:
                self._tx_smtputf8 = True
        return True

    # -------------------------------------------------------------- transactions

    def _start_transaction(self, args: bytes) -> None:
        self._start_time = self.clock()
        self._queue_id = f"{self.rng.getrandbits(31):08x}"
        self._mail_args = mail_or_rcpt_value(client_text(args))
        self._raw = []
        self._size = 0
        self._too_big = False
        self._rcpt_args = []
        self._tx_helo = self.helo
        self._tx_proto = self.proto

    def _begin_data(self) -> None:
        cfg = self.config
        if cfg.abort_delay is not None:
            # -A: the data phase is never entered; buffered input is still parsed as
            # commands (as in Postfix), then reading stops until the abort.
            if not self._aborting:
                self._aborting = self._after_input = True
                self._abort_after = cfg.abort_delay
            return
        self._phase = _DATA
        self.data_phases += 1
        self.data_held = 0
        self._tail = b"\r\n"
        self._chunks = []
        self._size = 0
        self._too_big = False
        if cfg.data_read_delay is not None:
            self._read_delay = cfg.data_read_delay
            self._after_input = True

    def _bdat_command(self, token: str, args: bytes) -> None:
        """``BDAT n [LAST]``: the chunk's n octets come next, whatever the reply will be."""
        words = args.split()
        if not 1 <= len(words) <= 2 or not words[0].isdigit() or (
            len(words) == 2 and words[1].upper() != b"LAST"
        ):
            self.output += R_BDAT_SYNTAX
            return
        self._bdat_size = self._bdat_left = int(words[0])
        self._bdat_last = len(words) == 2
        self._bdat_token, self._bdat_args = token, args
        self._phase = _BDAT

    def _take_chunk(self) -> bool:
        """Take the current BDAT chunk from the buffer; True once it is complete."""
        buf = self.unread
        left = self._bdat_left
        if left:
            if not buf:
                return False
            piece = bytes(buf[:left])
            del buf[:left]
            left = self._bdat_left = left - len(piece)
            if self.collect and self.in_mail and self.rcpts > 0:
                self._keep_raw(piece)
            if left:
                return False
        self._phase = _COMMAND
        if self.tables.bdat_rules:
            self._dispatch("BDAT", self._bdat_token, self._bdat_args)
        else:
            self._bdat_reply()
        return True

    def _keep_raw(self, piece: bytes) -> None:
        limit = self.config.max_message_size
        if limit is not None:
            self._size += len(piece)
            if self._size > limit:
                self._too_big = True
                self._raw = []
        if not self._too_big:
            self._raw.append(piece)

    def _bdat_reply(self) -> None:
        """The reply to a complete chunk; after the last one, the end of the message."""
        if not self.in_mail:
            self.output += R_NEED_MAIL
            return
        if self.rcpts <= 0:
            self.output += R_NEED_RCPT
            return
        self._bdat_seen = True
        if not self._bdat_last:
            self.output += bdat_ok(self._bdat_size)
            return
        self._end_of_data()

    def _scan_data(self) -> bool:
        """Look for CRLF.CRLF in the buffer; True when the data phase ended."""
        buf = self.unread
        if not buf:
            return False
        end = self._data_end(buf)
        if end < 0:
            if self.collect:
                self._keep(bytes(buf))
            self._tail = (self._tail + bytes(buf[-4:]))[-4:]
            buf.clear()
            return False
        if self.collect:
            self._keep(bytes(buf[:end]))
        del buf[:end]
        self._phase = _COMMAND
        self._end_of_data()
        return True

    def _data_end(self, data: bytes | bytearray) -> int:
        """Where the end of data (CRLF.CRLF, its first octets maybe among the ones before
        ``data``: the tail) ends in ``data``; -1 when it is not there."""
        if data[:1] in _END_CONTINUES:  # (else it cannot begin among the tail's octets)
            tail = self._tail
            k = (tail + data[:4]).find(END_OF_DATA)
            if k >= 0:
                return k + 5 - len(tail)
        idx = data.find(END_OF_DATA)
        return idx + 5 if idx >= 0 else -1

    def _keep(self, chunk: bytes) -> None:
        """Collect a piece of DATA, unless the message is over max_message_size."""
        limit = self.config.max_message_size
        if limit is not None:
            self._size += len(chunk)
            if self._size > limit:
                self._too_big = True
                self._chunks = []
                self.data_held = 0
        if not self._too_big:
            # Transform as it arrives (dump_body piece by piece), so that a big message is
            # held once, in its dumped form. The two raw octets before the chunk decide
            # whether a dot at its start follows a CRLF.
            piece = dump_form(self._tail[-2:], chunk)
            self._chunks.append(piece)
            self.data_held += len(piece)

    def _end_of_data(self) -> None:
        self._dot_count = self.rcpts
        if self.collect and self._too_big:
            self._chunks = []
            self._pending_envelope = None
            self._after_store(False, R_TOO_BIG)
            return
        if self.collect:
            raw: bytes | None = None
            if self._bdat_seen:  # no dot-stuffing in BDAT: the dump form only drops CRs
                raw = b"".join(self._raw)
                self._raw = []
                data = raw.replace(b"\r", b"") + b"\n"
            else:
                data = b"".join(self._chunks)
                self._chunks = []
                self.data_held = 0  # (else the session looks for a stream on every read)
            envelope = self._envelope(data, raw)
            self._pending_envelope = envelope
            self._pause_for(MessageReceived(envelope))
            return
        self._after_store(True)

    def _envelope(self, data: bytes, raw: bytes | None) -> Envelope:
        cfg = self.config
        return Envelope(  # (positional: keywords cost a dict per message)
            self.client_addr,  # client_addr
            self._tx_proto,  # client_proto
            self._tx_helo,  # helo
            self._mail_args,  # mail_args
            tuple(self._rcpt_args),  # rcpt_args
            self._queue_id,  # queue_id
            self._start_time,  # timestamp
            self.helo,  # received_helo
            self.proto,  # received_proto
            cfg.hostname,  # hostname
            cfg.start_string,  # start_string
            data,  # data
            self._tx_smtputf8,  # smtputf8
            self.auth_user,  # auth_user
            self.tls,  # tls
            raw,  # raw
            cfg,  # config
        )

    def _after_store(
        self, ok: bool, error: bytes = R_STORE_FAILED, *, answered: bool = True
    ) -> None:
        self.last_envelope = self._pending_envelope
        self._pending_envelope = None
        self.in_mail = False
        self._rcpt_args = []
        self.rcpts = 0
        self._bdat_seen = self._binarymime = self._tx_smtputf8 = False
        self._dot_error = None if ok else error
        self._eod = True
        self.events.append(MESSAGE_END)
        if self.config.verbose:
            self.events.append(LogLine("."))
        if self.last_envelope is not None and answered:
            self._answer_mark = len(self.output)
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
        if self.config.require_tls and self.tls is None:
            self.output += R_TLS_REQUIRED
            return
        if self.authenticated:
            self.output += R_AUTH_AGAIN
            return
        mech = parts[0].upper()
        initial = parts[1] if len(parts) > 1 else None
        if mech.decode("ascii", "replace") not in self.tables.auth_mechanisms:
            self.output += R_AUTH_MECH
            return
        self._phase = _AUTH
        if mech == b"PLAIN":
            if initial is None:
                self._auth_step = "plain"
                self.output += R_334_EMPTY
            else:
                self._auth_plain(initial)
        elif mech == b"LOGIN":
            if initial is None:
                self._auth_step = "user"
                self.output += R_334_USER
            else:
                self._auth_login_user(initial)
        else:  # CRAM-MD5 (RFC 2195): a challenge that names us
            stamp = f"<{self.rng.getrandbits(32)}.{int(self.clock())}@{self.config.hostname}>"
            self._challenge = stamp.encode("latin-1")
            self._auth_step = "cram"
            self.output += b"334 " + base64.b64encode(self._challenge) + b"\r\n"

    @staticmethod
    def _decode64(data: bytes) -> bytes | None:
        if data == b"=":
            return b""
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return None

    def _auth_line(self, line: bytes) -> None:
        line = line.strip()
        if line == b"*":
            self._auth_end()
            self.output += R_AUTH_ABORTED
            return
        step = self._auth_step
        if step == "user":
            self._auth_login_user(line)
        elif step == "password":
            self._auth_login_password(line)
        elif step == "plain":
            self._auth_plain(line)
        else:
            self._auth_cram(line)

    def _auth_plain(self, response: bytes) -> None:
        data = self._decode64(response)
        if data is None:
            self._auth_bad64()
            return
        fields = data.split(b"\0")  # authzid NUL authcid NUL passwd (RFC 4616)
        if len(fields) == 3:
            self._auth_password(client_text(fields[1]), client_text(fields[2]))
        else:
            self._auth_password(None, None)

    def _auth_login_user(self, response: bytes) -> None:
        data = self._decode64(response)
        if data is None:
            self._auth_bad64()
            return
        self._auth_user_step = client_text(data)
        self._auth_step = "password"
        self.output += R_334_PASS

    def _auth_login_password(self, response: bytes) -> None:
        data = self._decode64(response)
        if data is None:
            self._auth_bad64()
            return
        self._auth_password(self._auth_user_step, client_text(data))

    def _auth_cram(self, response: bytes) -> None:
        data = self._decode64(response)
        if data is None:
            self._auth_bad64()
            return
        user, _, digest = client_text(data).rpartition(" ")
        users = self.config.users
        password = users.get(user) if users is not None else None
        if users is None:
            ok = True
        elif password is None:
            ok = False
        else:
            key = password.encode("utf-8", "surrogateescape")
            expected = hmac.new(key, self._challenge, hashlib.md5).hexdigest()
            answer = digest.lower().encode("utf-8", "surrogateescape")
            ok = hmac.compare_digest(answer, expected.encode())
        self._auth_finish(user or None, ok)

    def _auth_password(self, user: str | None, password: str | None) -> None:
        """PLAIN and LOGIN: with ``users`` configured the password must be the user's."""
        users = self.config.users
        ok = users is None or (user is not None and user in users and users[user] == password)
        self._auth_finish(user, ok)

    def _auth_finish(self, user: str | None, ok: bool) -> None:
        self._auth_end()
        if ok:
            self.authenticated = True
            self.auth_user = user
            self.output += R_AUTH_OK
        else:
            self.output += R_AUTH_INVALID

    def _auth_bad64(self) -> None:
        self._auth_end()
        self.output += R_AUTH_BAD64

    def _auth_end(self) -> None:
        self._phase = _COMMAND
        self._auth_step = None
        self._auth_user_step = None
        self._challenge = b""

    # ---------------------------------------------------------------------- close

    def _answered(self) -> None:
        mark = self._answer_mark
        if mark is not None:
            self._answer_mark = None
            text = bytes(self.output[mark:]).decode("latin-1")
            self.events.append(MessageAnswered(tuple(text.split("\r\n")[:-1])))

    def _close(self, warning: str | None) -> None:
        if self._phase == _CLOSED:
            return
        self._answered()  # dropped (-q .) or 421 (-Q .) instead of a normal reply
        self._reset()
        self._phase = _CLOSED
        self.pause = None
        self._resume = None
        self._abort_after = self._read_delay = None
        self.unread.clear()
        self.events.append(CLOSE if warning is None else Close(warning))

