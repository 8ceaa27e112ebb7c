"""What the protocol tells its driver: frozen events, one union type (in h11's manner).

The driver takes a batch with ``SinkProtocol.take_events()`` and acts on every event in
order. A *pause* (``Delay``, ``ReadDelay``, ``Abort``, ``StartTls``, ``MessageReceived``) is
the last event of its batch: the protocol does nothing more until the driver calls the
pause's acknowledgement, named in its docstring. The other events only inform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from .envelope import Envelope


@dataclass(frozen=True, slots=True)
class Delay:
    """Pause: wait ``seconds`` (a -W/-w reply delay), then ``delay_elapsed()``.

    The replies produced before it are sent together with the delayed one, after the wait.
    """

    seconds: float


@dataclass(frozen=True, slots=True)
class ReadDelay:
    """Pause (-H): send the replies so far, wait ``seconds`` before reading from the client
    again, then ``read_delay_elapsed()``. Comes once the buffered input is used up: input
    already received is processed without waiting, as in Postfix."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Abort:
    """Pause (-A): send the replies so far, read nothing more, wait ``seconds``, then
    ``abort_elapsed()`` (which produces ``550 This violates SMTP`` and a ``Close``)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class StartTls:
    """Pause: STARTTLS was accepted. Send the replies so far (``220 2.0.0 Ready to start
    TLS``), do the TLS handshake, then ``tls_started(description)`` (or close)."""


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """Pause: end of data while collecting. Store ``envelope`` (dump, capture), then
    ``message_stored(ok)``; the reply to "." depends on ``ok``."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class MessageAnswered:
    """The end of data of a stored message got its reply (one per recipient in LMTP; none
    when the connection was dropped instead). Comes before that reply is sent."""

    replies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MessageEnd:
    """End of data was seen (counters, -M)."""


@dataclass(frozen=True, slots=True)
class QuitReceived:
    """QUIT was handled (counters, -n)."""


@dataclass(frozen=True, slots=True)
class Close:
    """Send the replies so far, then close. ``warning`` goes to the log when set;
    ``disconnect``: -v logs "disconnect" (not after an -A abort, as in Postfix)."""

    warning: str | None = None
    disconnect: bool = True


@dataclass(frozen=True, slots=True)
class LogLine:
    """A -v conversation log line (already sanitised)."""

    text: str


@dataclass(frozen=True, slots=True)
class FaultInjected:
    """A rule (or a -W die) acted on the command just answered: ``description`` names it
    (for the transcript: ``rule: RCPT bad@*: 550 5.1.1 No such user``)."""

    description: str


@dataclass(frozen=True, slots=True)
class CommandLogged:
    """A -s record: ``<command> <args>``, args cut to 100 characters."""

    text: str


Event = (
    Delay | ReadDelay | Abort | StartTls | MessageReceived | MessageAnswered | MessageEnd
    | QuitReceived | Close | LogLine | CommandLogged | FaultInjected
)  # fmt: skip
Pause = Delay | ReadDelay | Abort | StartTls | MessageReceived

# Events without fields are immutable: one instance serves every session.
START_TLS = StartTls()
MESSAGE_END = MessageEnd()
QUIT_RECEIVED = QuitReceived()
CLOSE = Close()
CLOSE_SILENTLY = Close(disconnect=False)


def assert_never(value: NoReturn) -> NoReturn:
    """For exhaustive ``match`` statements over ``Event`` (mypy checks the cases)."""
    raise AssertionError(f"unhandled event: {value!r}")
