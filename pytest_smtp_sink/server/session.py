"""Session: one client connection's life, whichever driver serves it.

A Session owns the protocol, the transport, the transcript recorder and the -t deadlines,
acts on the protocol's events, and closes the connection exactly once (``close``). Drivers
ask it what to do next (``next_step``), do it (send, sleep, read) and report back; they talk
to the server only through the small ``SessionHost`` interface the server implements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..core.envelope import Envelope
from ..core.events import (
    CLOSE,
    MESSAGE_END,
    QUIT_RECEIVED,
    Abort,
    Close,
    CommandLogged,
    Delay,
    Event,
    FaultInjected,
    LogLine,
    MessageAnswered,
    MessageEnd,
    MessageReceived,
    QuitReceived,
    ReadDelay,
    StartTls,
    assert_never,
)
from ..core.protocol import SinkProtocol
from ..dump.writer import DumpStream
from .transport import Transport

if TYPE_CHECKING:
    import ssl  # (imported when TLS is used: it costs the start-up several ms)

# (direction, bytes): the transcript; "C" client, "S" server, "!" a fault a rule injected
Recorder = Callable[[str, bytes], None]

STREAM_FROM = 65536  # octets of a message held before it goes to its -d dump as it comes

# What a driver does next (``Session.next_step``).
SEND = 0  # send ``outbox``, then ``sent(n)`` / ``lost()``
SLEEP = 1  # sleep ``pause.seconds``, then ``slept()``
READ = 2  # wait for the client (until ``read_deadline``), then ``received(data, now)``
DONE = 3  # the session is closed
UPGRADE = 4  # TLS handshake (STARTTLS, implicit TLS): then ``upgraded(transport, desc)``


class SessionHost(Protocol):
    """What a session needs from its server."""

    def log(self, level: str, text: str) -> None: ...

    def command_logged(self, text: str) -> None: ...

    def store(self, envelope: Envelope, stream: DumpStream | None = None) -> bool:
        """Dump / capture a received message; False when it could not be kept. ``stream``:
        where its data went as it arrived (``envelope.data`` is the rest)."""
        ...

    def open_stream(self, envelope: Envelope) -> DumpStream | None:
        """A dump to write the message being received to as it arrives, or None (keep it
        whole until the end of data)."""
        ...

    def message_answered(
        self, session: int, envelope: Envelope, replies: tuple[str, ...]
    ) -> None:
        """Session number ``session``'s stored ``envelope`` got these replies to its end of
        data (none: dropped)."""
        ...

    def awaits_reply(self, envelope: Envelope) -> bool:
        """A stored ``envelope``'s observers want to know what the client was told
        (``message_answered``)."""
        ...

    def message_ended(self) -> bool:
        """Count a message; True when the server must stop once its reply is out (-M)."""
        ...

    def quit_received(self) -> None: ...

    def stop(self, reason: str) -> None: ...

    def session_closed(self, session: Session, counted: bool) -> None: ...

    def session_crashed(self, exc: Exception) -> None: ...

    def tls_context(self) -> ssl.SSLContext:
        """The server-side TLS context (only asked for when TLS is configured)."""
        ...


class Session:
    """One connection; see the module docstring."""

    __slots__ = (
        "answering",
        "closed",
        "closing",
        "disconnect_log",
        "drivers",
        "greeted",
        "host",
        "idle_since",
        "implicit_tls",
        "line_since",
        "lines",
        "number",
        "outbox",
        "proto",
        "rearm",
        "record",
        "stop_pending",
        "stream",
        "stream_phase",
        "transport",
    )  # fmt: skip

    def __init__(
        self,
        host: SessionHost,
        transport: Transport,
        proto: SinkProtocol,
        record: Recorder | None = None,
        *,
        implicit_tls: bool = False,
    ) -> None:
        self.host = host
        self.implicit_tls = implicit_tls  # the handshake comes before the greeting
        self.greeted = False
        self.transport = transport
        self.proto = proto
        self.record = record
        self.outbox = b""  # replies taken from the protocol, not yet sent
        self.closing = False  # the protocol closed: send the outbox, then close
        self.disconnect_log = False  # -v: log "disconnect" when closing
        self.answering: Envelope | None = None  # stored, its reply not given yet
        self.number = 0  # the server's count of the connection (transcripts name it)
        self.stop_pending = False  # -M reached: stop the server once the reply is out
        self.closed = False
        self.drivers = ""  # the drivers that served it, in order: "selector+portable"
        self.idle_since = 0.0  # when the wait for the client began
        self.line_since: float | None = None  # when the unfinished command line began
        self.lines = 0
        self.stream: DumpStream | None = None  # -d: the message goes there as it arrives
        self.stream_phase = 0  # the protocol's data phase the host was last asked about
        # set by a waiting driver: the -t limit changed (a new configuration)
        self.rearm: Callable[[], None] | None = None

    # ------------------------------------------------------------ the driver's side

    @property
    def timeout(self) -> float:
        return self.proto.config.timeout

    def tls_context(self) -> ssl.SSLContext:
        return self.host.tls_context()

    @property
    def pause(self) -> Delay | ReadDelay | Abort | StartTls | None:
        """The protocol's pause the driver must carry out (see next_step)."""
        pause = self.proto.pause
        assert not isinstance(pause, MessageReceived)  # stored in _process
        return pause

    def next_step(self) -> int:
        """SEND, SLEEP, READ, UPGRADE or DONE; see the constants."""
        if self.closed:
            return DONE
        if not self.greeted:
            if self.implicit_tls and self.proto.tls is None:
                return UPGRADE  # implicit TLS: the handshake comes first
            self.greeted = True
            self.proto.start()
            self._process()
        pause = self.proto.pause
        if pause is not None and type(pause) is Delay:
            return SLEEP  # the replies before a delayed one leave with it
        if self.outbox:
            return SEND
        self._stop_if_pending()
        if self.closing:
            if self.disconnect_log:
                self.host.log("info", "disconnect")
            self.close()
            return DONE
        if pause is not None:
            # -H, -A, STARTTLS: once the replies so far are out
            return UPGRADE if type(pause) is StartTls else SLEEP
        return READ

    def sent(self, count: int) -> None:
        """``count`` octets of the outbox were sent."""
        self.outbox = self.outbox[count:]

    def lost(self) -> None:
        """The client is gone while we were sending."""
        self.host.log("warning", "lost connection")
        self.close()

    def slept(self) -> None:
        """The pause's wait is over: acknowledge it."""
        pause = self.proto.pause
        if type(pause) is Delay:
            self.proto.delay_elapsed()
        elif type(pause) is ReadDelay:
            self.proto.read_delay_elapsed()
        elif type(pause) is Abort:
            self.proto.abort_elapsed()
        self._process()

    def upgraded(self, transport: Transport, description: str) -> None:
        """The TLS handshake is done: from now on the session speaks through ``transport``."""
        self.transport = transport
        self.proto.tls_started(description)
        self._process()

    def upgrade_failed(self, reason: str) -> None:
        """The TLS handshake failed (or the client left during it): close, with a warning."""
        self.host.log("warning", reason)
        self.close()

    def received(self, data: bytes, now: float) -> bool:
        """Bytes from the client (``b""``: end of file). True when all there is to do next
        is to send the outbox (if any) and wait for the client again: no pause, no close,
        no -M stop (what ``next_step`` would say once the outbox is out), for a driver's
        fast path."""
        if self.record is not None or self.stream is not None:
            return self._received_in_full(data, now)
        proto = self.proto
        proto.receive(data)
        if proto.data_held >= STREAM_FROM:
            self._stream()  # (a big message being collected; _stream looks closer)
        # (the attributes first: each property read is a call, and this runs per read)
        if proto.unread and proto.partial_command:
            self._partial_line(now)
        elif self.line_since is not None:
            self.line_since = None
        events = proto.events
        if events and self.stream is None:
            # What _act_on does for the usual events, without its calls: a message to
            # store, a message ended (once per message on every plain path), QUIT.
            first = events[0]
            if len(events) == 1 and type(first) is MessageReceived:
                proto.events = []
                stored = self._store(first.envelope, None)
                proto.message_stored(stored, self.answering is not None)
                events = proto.events
            if len(events) == 1 and events[0] is MESSAGE_END:
                proto.events = []
                if self.host.message_ended():
                    self.stop_pending = True
                events = proto.events
            elif len(events) == 2 and events[0] is QUIT_RECEIVED and events[1] is CLOSE:
                proto.events = []
                self.host.quit_received()
                self.closing = True
                self.disconnect_log = bool(proto.config.verbose)
                self._take_output()
                return False
        if events or self.stream is not None:
            self._process()
            return self._reads_next()
        if proto.output:  # (_process with nothing but replies to move)
            out = bytes(proto.output)
            proto.output.clear()
            self.outbox = self.outbox + out if self.outbox else out
        # No events: no pause came (it is an event) and nothing closed; and a session
        # being read was neither closing nor stopping (but by -M, just now).
        return not self.stop_pending

    def _received_in_full(self, data: bytes, now: float) -> bool:
        """``received`` by the general steps: a transcript, a message streaming to its dump."""
        if data and self.record is not None:
            self.record("C", data)
        proto = self.proto
        proto.receive(data)
        if self.stream is not None or proto.data_held >= STREAM_FROM:
            self._stream()
        if proto.unread and proto.partial_command:
            self._partial_line(now)
        else:
            self.line_since = None
        self._process()
        return self._reads_next()

    def _reads_next(self) -> bool:
        """After the general steps: nothing but the outbox (if any) before the next read (no
        pause, no close, no -M stop), the answer of ``received`` and ``greet``."""
        return self.proto.pause is None and not (self.closing or self.stop_pending or self.closed)

    def _partial_line(self, now: float) -> None:
        """Part of a command line waits for its end: -t also bounds the time one line takes,
        from the read that began it."""
        lines = self.proto.lines
        if self.line_since is None or lines != self.lines:
            self.line_since = now
            self.lines = lines

    def _take_output(self) -> None:
        """The protocol's replies go to the outbox (no transcript: the caller knows)."""
        proto = self.proto
        out = bytes(proto.output)
        proto.output.clear()
        self.outbox = self.outbox + out if self.outbox else out

    def greet(self) -> bool:
        """The greeting (a driver's first step for a session without implicit TLS, instead
        of ``next_step``); True when what follows is to send the outbox and wait for the
        client, as for ``received``."""
        self.greeted = True
        proto = self.proto
        proto.start()
        if proto.events or self.record is not None:
            self._process()
            return self._reads_next()
        if proto.output:
            self._take_output()
        return True

    def _stream(self) -> None:
        """-d: the message so far goes to its dump file (held once, not whole, in memory)."""
        proto = self.proto
        if not proto.in_data:
            return  # (a stream whose data phase ended is for _process to settle)
        if self.stream is None:
            if proto.data_held < STREAM_FROM:
                return  # a small message is written whole, with one write
            if self.stream_phase == proto.data_phases or not proto.collect:
                return  # asked already: no stream for this message
            self.stream_phase = proto.data_phases
            self.stream = self.host.open_stream(proto.data_envelope())
            if self.stream is None:
                return
        elif self.stream_phase != proto.data_phases:
            return  # the stream's message ended; this is the next one's data
        chunks = proto.take_data()
        if chunks:
            self.stream.write(chunks)

    def waiting(self, now: float) -> None:
        """The driver starts waiting for the client."""
        self.idle_since = now

    def shift_clock(self, delta: float) -> None:
        """Its times move to another clock (the server's switch to trio's)."""
        self.idle_since += delta
        if self.line_since is not None:
            self.line_since += delta

    def read_deadline(self) -> float:
        timeout = self.timeout
        deadline = self.idle_since + timeout
        if self.line_since is not None:
            deadline = min(deadline, self.line_since + timeout)
        return deadline

    def timed_out(self, waiting: str) -> None:
        """-t expired while waiting to ``read`` or to ``write``."""
        self.host.log("warning", f"{waiting} timeout")
        self.close()

    def crashed(self, exc: Exception) -> None:
        """A bug while serving this session: reported; this session closes, others go on."""
        self.host.session_crashed(exc)
        self.close()

    def close(self, counted: bool = True) -> None:
        """Close the connection, once. ``counted``: False when the server shuts down."""
        if self.closed:
            return
        self.closed = True
        self.rearm = None
        if self.stream is not None:  # gone during DATA: no dump
            self.stream.discard()
            self.stream = None
        try:
            if self.answering is not None:  # gone before its message got a reply
                envelope, self.answering = self.answering, None
                self.host.message_answered(self.number, envelope, ())
            self._stop_if_pending()  # -M: even when the client vanished before the reply
            # counted before the client sees the end (it may look at the server then)
            self.host.session_closed(self, counted)
        finally:
            self.transport.close()

    def _stop_if_pending(self) -> None:
        if self.stop_pending:
            self.stop_pending = False
            self.host.stop("max_messages")

    def config_changed(self) -> None:
        """The server applied a new configuration (the -t limit may have changed)."""
        if self.rearm is not None:
            self.rearm()

    # ------------------------------------------------------------------ events

    def _process(self) -> None:
        """Act on the protocol's events and move its replies to the outbox."""
        proto = self.proto
        events = proto.take_events()
        notes = self._act_on(events) if events else None
        stream = self.stream
        if stream is not None and (not proto.in_data or self.stream_phase != proto.data_phases):
            self.stream = None  # its data phase ended, and the message was not kept
            stream.discard()
        if proto.output:
            out = proto.take_output()
            if self.record is not None:
                self.record("S", out)
            self.outbox = self.outbox + out if self.outbox else out
        if notes and self.record is not None:  # the transcript says what was injected
            for note in notes:
                self.record("!", note.encode("utf-8", "surrogateescape"))

    def _act_on(self, events: list[Event]) -> list[str]:
        """Act on the protocol's events, and on those that acknowledging them brings;
        returns the faults injected, for the transcript."""
        proto = self.proto
        host = self.host
        notes: list[str] = []
        while events:
            stored: bool | None = None
            for event in events:
                # (the usual events first: a match tries its cases in order)
                match event:
                    case MessageEnd():
                        if host.message_ended():
                            self.stop_pending = True
                    case MessageReceived(envelope=envelope):
                        stream, self.stream = self.stream, None
                        stored = self._store(envelope, stream)
                    case MessageAnswered(replies=replies):
                        if self.answering is not None:
                            envelope, self.answering = self.answering, None
                            host.message_answered(self.number, envelope, replies)
                    case QuitReceived():
                        host.quit_received()
                    case Close(warning=warning, disconnect=disconnect):
                        self.closing = True
                        self.disconnect_log = disconnect and bool(proto.config.verbose)
                        if warning:
                            host.log("warning", warning)
                    case LogLine(text=text):
                        host.log("info", text)
                    case CommandLogged(text=text):
                        host.command_logged(text)
                    case FaultInjected(description=description):
                        notes.append(description)
                    case Delay() | ReadDelay() | Abort() | StartTls():
                        pass  # the driver carries it out (next_step)
                    case _:
                        assert_never(event)
            if stored is None:
                break
            # the "." reply, then the rest of the input
            proto.message_stored(stored, self.answering is not None)
            events = proto.take_events()
        return notes

    def _store(self, envelope: Envelope, stream: DumpStream | None) -> bool:
        """A received message goes to the host; it is ``answering`` when stored and someone
        awaits the reply to it. False when it could not be kept."""
        host = self.host
        stored = host.store(envelope, stream)
        self.answering = envelope if stored and host.awaits_reply(envelope) else None
        return stored

    def __repr__(self) -> str:
        return f"<Session {self.proto.client_addr} drivers={self.drivers or '-'}>"

