"""SinkConfig: one typed field per smtp-sink option, and the Postfix command line parser.

Error texts follow Postfix smtp-sink 3.7 (reference §1.1) so that scripts see the same
diagnostics; ``ConfigError`` carries the text without the ``smtp-sink: fatal:`` prefix.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Command names accepted by -f/-q/-Q/-r/-s/-W, in Postfix's table order.
COMMAND_NAMES: tuple[str, ...] = (
    "CONNECT", "HELO", "EHLO", "LHLO", "XCLIENT", "XFORWARD", "AUTH",
    "MAIL", "RCPT", "DATA", ".", "RSET", "NOOP", "VRFY", "QUIT",
)  # fmt: skip

DEFAULT_SOFT_REPLY = "450 4.3.0 Error: command failed"
DEFAULT_HARD_REPLY = "500 5.3.0 Error: command failed"

USAGE = (
    "usage: {prog} [-468acCeEFLpPv] [-A abort_delay] [-b soft_bounce_reply]"
    " [-B hard_bounce_reply] [-d dump-template] [-D dump-template] [-f commands]"
    " [-h hostname] [-m max_concurrency] [-M message_quit_count] [-n quit_count]"
    " [-q commands] [-r commands] [-R root-dir] [-s commands] [-S start-string]"
    " [-u user_privs] [-w delay] [host]:port backlog"
)

OPTSTRING = "468aA:b:B:cCd:D:eEf:Fh:H:Ln:m:M:NpPq:Q:r:R:s:S:t:T:u:vw:W:"


class ConfigError(ValueError):
    """A bad option value. ``str(err)`` is the Postfix-style message (no prefix)."""

    def __init__(self, message: str, *, option: str | None = None, usage: bool = False):
        super().__init__(message)
        self.option = option
        self.usage = usage  # Postfix follows this error with the usage text


Delay = tuple[float, int]  # (seconds, odds 0..99)


@dataclass(frozen=True)
class SinkConfig:
    """Every smtp-sink behaviour option as a typed field (DESIGN §2)."""

    # listeners
    family: str = "inet"  # "inet" (both), "inet4" (-4), "inet6" (-6)
    max_connections: int = 256  # -m
    tcp_window: int | None = None  # -T
    # EHLO keywords (False removes the line)
    eightbitmime: bool = True  # -8
    auth: bool = True  # -a
    xclient: bool = True  # -C (also disables the command)
    xforward: bool = True  # -F (also disables the command)
    esmtp: bool = True  # -e
    enhanced_status_codes: bool = True  # -E
    dsn: bool = True  # -N
    pipelining: bool = True  # -p (also removed by any -f / -r)
    pix: bool = False  # -P (implies -e)
    lmtp: bool = False  # -L
    hostname: str = "smtp-sink"  # -h
    # replies
    soft_bounce_reply: str = DEFAULT_SOFT_REPLY  # -b
    hard_bounce_reply: str = DEFAULT_HARD_REPLY  # -B
    reject: frozenset[str] = frozenset()  # -f
    soft_reject: frozenset[str] = frozenset()  # -r
    disconnect: frozenset[str] = frozenset()  # -q
    disconnect_421: frozenset[str] = frozenset()  # -Q
    log_commands: frozenset[str] = frozenset()  # -s
    # timing
    delays: Mapping[str, Delay] = field(default_factory=dict)  # -W (and -w as DATA)
    abort_delay: float | None = None  # -A
    data_read_delay: float | None = None  # -H
    timeout: float = 100.0  # -t
    # dumps
    dump_template: str | None = None  # -d
    dump_file_template: str | None = None  # -D
    start_string: str = ""  # -S, escapes already processed
    # process
    counters: bool = False  # -c
    max_messages: int | None = None  # -M
    max_sessions: int | None = None  # -n
    user: str | None = None  # -u
    chroot: str | None = None  # -R
    verbose: int = 0  # -v (count)
    # capture (no smtp-sink flag): a collected message larger than this many octets of DATA
    # is answered 552 5.3.4 and not kept; None: no limit (the pytest plugin sets 64 MiB)
    max_message_size: int | None = None

    def __post_init__(self) -> None:
        validate(self)

    @property
    def data_delay(self) -> float | None:
        """The -w value: the delay of the DATA reply, if any (fixed odds only)."""
        d = self.delays.get("DATA")
        return d[0] if d is not None else None

    @property
    def advertise_pipelining(self) -> bool:
        return self.pipelining and not self.reject and not self.soft_reject

    @property
    def dumping(self) -> bool:
        return self.dump_template is not None or self.dump_file_template is not None

    def replace(self, **changes: Any) -> SinkConfig:
        """A copy with ``changes`` applied (marker-style names and values accepted)."""
        return from_options(changes, base=self)


# --------------------------------------------------------------------------- helpers


def parse_commands(value: str | Iterable[str], option: str = "-f") -> frozenset[str]:
    """Split a command list on space/tab/CR/LF/comma; names are case-insensitive."""
    if isinstance(value, str):
        names = [n for n in re.split(r"[ \t\r\n,]+", value) if n]
    else:
        names = []
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(f"bad command name: {item!r}", option=option)
            names.extend(n for n in re.split(r"[ \t\r\n,]+", item) if n)
    out = set()
    for name in names:
        upper = name.upper()
        if upper not in COMMAND_NAMES:
            raise ConfigError(f"unknown command: {name}", option=option)
        out.add(upper)
    return frozenset(out)


def _check_reply(text: str, first: str, kind: str, option: str) -> str:
    digits = re.match(r"[0-9]*", text)
    assert digits is not None
    if not text.startswith(first) or len(digits.group()) != 3:
        raise ConfigError(f"bad {kind} error reply: {text}", option=option, usage=True)
    if "\r" in text or "\n" in text:
        raise ConfigError(f"bad {kind} error reply: {text!r} (line break)", option=option)
    return text


def _positive_number(value: object, what: str, option: str) -> float:
    """Seconds or counts: a positive number (Postfix: integers only; we accept decimals)."""
    if isinstance(value, bool):
        raise ConfigError(f"bad {what}: {value}", option=option)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ConfigError(f"bad {what}: {value}", option=option) from None
    if not number > 0 or number != number or number == float("inf"):
        raise ConfigError(f"bad {what}: {value}", option=option)
    return number


def _positive_int(value: object, what: str, option: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"bad {what}: {value}", option=option)
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not re.fullmatch(r"[0-9]+", text):
            raise ConfigError(f"bad {what}: {value}", option=option)
        number = int(text)
    if number <= 0:
        raise ConfigError(f"bad {what}: {value}", option=option)
    return number


def parse_delay_spec(spec: str) -> tuple[str, Delay]:
    """Parse a -W argument ``cmd:delay[:odds]`` with Postfix's rules and error texts."""
    rest = spec.lstrip(":")
    cmd, sep, rest = rest.partition(":")
    if not sep or not cmd:
        raise ConfigError(f"invalid command delay argument: {spec}", option="-W")
    delay_text, sep, odds_text = rest.partition(":")
    if not delay_text:
        raise ConfigError(f"invalid command delay argument: {spec}", option="-W")
    name = cmd.upper()
    if name not in COMMAND_NAMES:
        raise ConfigError(f"unknown command: {cmd}", option="-W")
    seconds = _atof(delay_text)
    if not seconds > 0:
        raise ConfigError(f"non-positive '{cmd}' delay", option="-W")
    odds = _atoi(odds_text) if sep else 0
    if odds < 0 or odds > 99:
        raise ConfigError(f"delay odds for '{cmd}' out of range", option="-W")
    return name, (seconds, odds)


def _atoi(text: str) -> int:
    """C ``atoi``: leading whitespace, an optional sign, digits; anything else ends it."""
    m = re.match(r"\s*([+-]?[0-9]+)", text)
    return int(m.group(1)) if m else 0


def _atof(text: str) -> float:
    """``atoi`` that also takes a decimal fraction (we accept sub-second delays)."""
    m = re.match(r"\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))", text)
    return float(m.group(1)) if m else 0.0


def _cli_seconds(value: str, what: str, option: str) -> float:
    """A CLI number of seconds, parsed like Postfix's atoi (``5x`` is 5, ``x`` is 0)."""
    number = _atof(value)
    if not number > 0:
        raise ConfigError(f"bad {what}: {value}", option=option)
    return number


def _cli_count(value: str, what: str, option: str) -> int:
    """A CLI count, parsed with atoi as Postfix does; must be > 0."""
    number = _atoi(value)
    if number <= 0:
        raise ConfigError(f"bad {what}: {value}", option=option)
    return number


def _delay_value(name: str, value: object) -> Delay:
    """Marker form of one delay: seconds, or (seconds, odds)."""
    option = "delays"
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigError(
                f"delay for {name!r} must be seconds or (seconds, odds), not {value!r}",
                option=option,
            )
        seconds_v, odds_v = value
    else:
        seconds_v, odds_v = value, 0
    seconds = _positive_number(seconds_v, f"'{name}' delay", option)
    if isinstance(odds_v, bool) or not isinstance(odds_v, int) or not 0 <= odds_v <= 99:
        raise ConfigError(f"delay odds for '{name}' out of range", option=option)
    return seconds, odds_v


def encode_text(text: str) -> bytes:
    """The bytes of a configured text (hostname, reply, -S) on the wire and in the dump.

    Texts hold one octet per character (latin-1), like the dump reader; ``parse_argv``
    turns command-line strings into that form (``argv_text``).
    """
    return text.encode("latin-1")


def argv_text(value: str) -> str:
    """A command-line string as the octets the C program saw, one character per octet."""
    return os.fsencode(value).decode("latin-1")


def _encodable(name: str, text: str) -> str:
    try:
        encode_text(text)
    except UnicodeEncodeError:
        raise ConfigError(
            f"{name} must be latin-1 text (one character per octet), not {text!r}", option=name
        ) from None
    return text


def unescape(text: str) -> str:
    """C escape processing of -S (reference §14.3); stops at an embedded NUL."""
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        i += 1
        if ch != "\\":
            out.append(ch)
            continue
        if i >= n:
            break  # a lone trailing backslash is dropped
        ch = text[i]
        i += 1
        if ch in simple:
            out.append(simple[ch])
        elif ch in "01234567":
            digits = ch
            while i < n and len(digits) < 3 and text[i] in "01234567":
                digits += text[i]
                i += 1
            out.append(chr(int(digits, 8) & 0xFF))  # one octet = one latin-1 character
        else:
            out.append(ch)
    result = "".join(out)
    return result.split("\0", 1)[0]


# --------------------------------------------------------------- marker / ini values

_BOOL_FIELDS = {
    "eightbitmime", "auth", "xclient", "xforward", "esmtp", "enhanced_status_codes",
    "dsn", "pipelining", "pix", "lmtp", "counters",
}  # fmt: skip
_COMMAND_FIELDS = {"reject", "soft_reject", "disconnect", "disconnect_421", "log_commands"}
FIELD_NAMES: frozenset[str] = frozenset(f.name for f in dataclasses.fields(SinkConfig)) | {
    "data_delay"
}


def _bool_value(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{name} must be true or false, not {value!r}", option=name)


def _convert(name: str, value: Any) -> Any:
    """Convert one marker/ini value to the field's type, with clear errors."""
    if name in _BOOL_FIELDS:
        return _bool_value(name, value)
    if name in _COMMAND_FIELDS:
        if not isinstance(value, (str, list, tuple, set, frozenset)):
            raise ConfigError(f"{name} must be a command list, not {value!r}", option=name)
        return parse_commands(value, option=name)
    if name == "delays":
        if isinstance(value, str):
            specs = [s for s in re.split(r"[ \t\r\n,]+", value) if s]
            return dict(parse_delay_spec(s) for s in specs)
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"delays must be a mapping like {{'RCPT': 1.5}}, not {value!r}", option=name
            )
        out: dict[str, Delay] = {}
        for cmd, delay in value.items():
            if not isinstance(cmd, str) or cmd.upper() not in COMMAND_NAMES:
                raise ConfigError(f"unknown command: {cmd}", option=name)
            out[cmd.upper()] = _delay_value(cmd, delay)
        return out
    if name in ("abort_delay", "data_read_delay"):
        if value is None:
            return None
        if name == "abort_delay":
            # -A 0 aborts at once: zero is allowed here.
            try:
                number = float(value) if not isinstance(value, bool) else -1.0
            except (TypeError, ValueError):
                number = -1.0
            if not number >= 0 or number == float("inf"):
                raise ConfigError(f"bad abort delay: {value}", option=name)
            return number
        return _positive_number(value, "data read delay", name)
    if name == "timeout":
        return _positive_number(value, "timeout", name)
    if name in ("max_connections", "tcp_window", "max_messages", "max_sessions"):
        if value is None and name != "max_connections":
            return None
        what = {
            "max_connections": "concurrency limit",
            "tcp_window": "TCP window size",
            "max_messages": "message quit count",
            "max_sessions": "quit count",
        }[name]
        return _positive_int(value, what, name)
    if name == "max_message_size":
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "0")):
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value == 0:
            return None
        return _positive_int(value, "max_message_size", name)
    if name == "verbose":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int) and value >= 0:
            return value
        if isinstance(value, str):
            try:
                return int(_bool_value(name, value))
            except ConfigError:
                if value.strip().isdigit():
                    return int(value)
                raise
        raise ConfigError(f"verbose must be true/false or a count, not {value!r}", option=name)
    if name == "family":
        low = str(value).lower()
        aliases = {"inet": "inet", "all": "inet", "inet4": "inet4", "ipv4": "inet4",
                   "4": "inet4", "inet6": "inet6", "ipv6": "inet6", "6": "inet6"}  # fmt: skip
        if low not in aliases:
            raise ConfigError(f"family must be inet, inet4 or inet6, not {value!r}", option=name)
        return aliases[low]
    if name == "soft_bounce_reply":
        return _encodable(name, _check_reply(_str_value(name, value), "4", "soft", name))
    if name == "hard_bounce_reply":
        return _encodable(name, _check_reply(_str_value(name, value), "5", "hard", name))
    if name == "hostname":
        host = _str_value(name, value)
        if not host or any(c in host for c in "\r\n"):
            raise ConfigError(f"bad hostname: {host!r}", option=name)
        return _encodable(name, host)
    if name in ("dump_template", "dump_file_template", "user", "chroot"):
        if value is None:
            return None
        text = _str_value(name, value)
        if name in ("dump_template", "dump_file_template") and not text:
            raise ConfigError(f"{name} must not be empty", option=name)
        return text
    if name == "start_string":
        return _encodable(name, _str_value(name, value))
    raise ConfigError(f"unknown option: {name}", option=name)  # pragma: no cover


def _str_value(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {value!r}", option=name)
    return value


def from_options(options: Mapping[str, Any], base: SinkConfig | None = None) -> SinkConfig:
    """Build a config from marker kwargs / ini values (DESIGN §2 names) over ``base``."""
    base = base or SinkConfig()
    changes: dict[str, Any] = {}
    delays = dict(base.delays)
    for name in options:
        if name not in FIELD_NAMES:
            close = difflib.get_close_matches(name, sorted(FIELD_NAMES), n=3, cutoff=0.6)
            close += [f for f in sorted(FIELD_NAMES) if f.startswith(name[:3]) and f not in close]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown smtp_sink option: {name}{hint}", option=name)
    # "delays" replaces the whole table; "data_delay" then sets DATA in it, whatever the order
    # the two were given in.
    ordered = sorted(options.items(), key=lambda kv: kv[0] == "data_delay")
    for name, value in ordered:
        try:
            if name == "data_delay":
                if value is None:
                    delays.pop("DATA", None)
                else:
                    delays["DATA"] = (_positive_number(value, "data delay", name), 0)
            elif name == "delays":
                delays = dict(_convert(name, value))
            else:
                changes[name] = _convert(name, value)
        except ConfigError as exc:
            if exc.option != name:
                raise ConfigError(str(exc), option=name) from None
            raise
    changes["delays"] = delays
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError as exc:
        # -d and -D together: name the field that was given here.
        given = "dump_file_template" if "dump_file_template" in changes else "dump_template"
        raise ConfigError(str(exc), option=given) from None


def validate(cfg: SinkConfig) -> None:
    """Cross-field checks shared by every way of building a config."""
    if cfg.dump_template is not None and cfg.dump_file_template is not None:
        raise ConfigError("use only one of -d or -D, but not both", option="-d")


# -------------------------------------------------------------------- command line


@dataclass(frozen=True)
class Invocation:
    """A parsed smtp-sink command line."""

    config: SinkConfig
    address: str
    backlog: int


class UsageError(ConfigError):
    """Postfix prints ``fatal: usage: ...`` for these."""


def _getopt(argv: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """POSIX getopt with a leading '+': stop at the first non-option."""
    takes_arg = {c for i, c in enumerate(OPTSTRING) if c != ":" and OPTSTRING[i + 1 : i + 2] == ":"}
    known = set(OPTSTRING) - {":"}
    opts: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        j = 1
        while j < len(arg):
            ch = arg[j]
            if ch not in known:
                raise UsageError(f"invalid option -- '{ch}'", option=f"-{ch}", usage=True)
            if ch in takes_arg:
                if j + 1 < len(arg):
                    value = arg[j + 1 :]
                else:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(
                            f"option requires an argument -- '{ch}'", option=f"-{ch}", usage=True
                        )
                    value = argv[i]
                opts.append((ch, value))
                break
            opts.append((ch, ""))
            j += 1
        i += 1
    return opts, list(argv[i:])


# Flags without a value: the field they set and its value.
_SWITCHES: dict[str, tuple[str, object]] = {
    "4": ("family", "inet4"), "6": ("family", "inet6"), "8": ("eightbitmime", False),
    "a": ("auth", False), "c": ("counters", True), "C": ("xclient", False),
    "e": ("esmtp", False), "E": ("enhanced_status_codes", False), "F": ("xforward", False),
    "L": ("lmtp", True), "N": ("dsn", False), "p": ("pipelining", False), "P": ("pix", True),
}  # fmt: skip
# Command-list flags (they add up when repeated).
_COMMAND_LISTS = {"f": "reject", "q": "disconnect", "Q": "disconnect_421",
                  "r": "soft_reject", "s": "log_commands"}  # fmt: skip
# Positive counts: field and the noun of Postfix's "bad <noun>: <value>" error.
_COUNTS = {"m": ("max_connections", "concurrency limit"),
           "M": ("max_messages", "message quit count"), "n": ("max_sessions", "quit count"),
           "T": ("tcp_window", "TCP window size")}  # fmt: skip
# Values taken as they are.
_PATHS = {"d": "dump_template", "D": "dump_file_template", "R": "chroot", "u": "user"}


def parse_argv(argv: Sequence[str]) -> Invocation:
    """Parse ``[options] ADDRESS BACKLOG`` (argv without the program name)."""
    opts, args = _getopt(argv)
    kw: dict[str, Any] = {}
    cmd_sets: dict[str, set[str]] = {}
    delays: dict[str, Delay] = {}
    verbose = 0

    def add_commands(field_name: str, flag: str, value: str) -> None:
        cmd_sets.setdefault(field_name, set()).update(parse_commands(value, option=flag))

    for ch, value in opts:
        flag = f"-{ch}"
        if ch in _SWITCHES:
            name, setting = _SWITCHES[ch]
            kw[name] = setting
        elif ch in _COMMAND_LISTS:
            add_commands(_COMMAND_LISTS[ch], flag, value)
            if ch in "fr":
                kw["pipelining"] = False  # -f and -r imply -p, even with an empty list
        elif ch in _COUNTS:
            name, what = _COUNTS[ch]
            kw[name] = _cli_count(value, what, flag)
        elif ch in _PATHS:
            kw[_PATHS[ch]] = value
        elif ch == "A":
            if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
                raise UsageError(f"bad abort delay: {value}", option=flag, usage=True)
            kw["abort_delay"] = float(value)
        elif ch == "b":
            kw["soft_bounce_reply"] = _check_reply(argv_text(value), "4", "soft", flag)
        elif ch == "B":
            kw["hard_bounce_reply"] = _check_reply(argv_text(value), "5", "hard", flag)
        elif ch == "h":
            kw["hostname"] = argv_text(value)
        elif ch == "H":
            kw["data_read_delay"] = _cli_seconds(value, "data read delay", flag)
        elif ch == "S":
            kw["start_string"] = unescape(argv_text(value))
        elif ch == "t":
            kw["timeout"] = _cli_seconds(value, "timeout", flag)
        elif ch == "v":
            verbose += 1
        elif ch == "w":
            try:
                seconds = _cli_seconds(value, "delay", flag)
            except ConfigError:
                raise UsageError(f"bad delay: {value}", option=flag, usage=True) from None
            delays["DATA"] = (seconds, 0)
        elif ch == "W":
            name, delay = parse_delay_spec(value)
            delays[name] = delay
    if len(args) != 2:
        raise UsageError("wrong number of arguments", usage=True)
    address, backlog_text = args
    backlog = _atoi(backlog_text)  # Postfix: atoi(), must be > 0
    if backlog <= 0:
        raise UsageError(f"bad backlog: {backlog_text}", usage=True)
    for field_name, names in cmd_sets.items():
        kw[field_name] = frozenset(names)
    kw["delays"] = delays
    kw["verbose"] = verbose
    if kw.get("dump_template") is not None and kw.get("dump_file_template") is not None:
        raise ConfigError("use only one of -d or -D, but not both", option="-d")
    for name in ("dump_template", "dump_file_template"):
        if kw.get(name) == "":
            raise ConfigError(
                "empty dump template", option="-d" if name == "dump_template" else "-D"
            )
    return Invocation(SinkConfig(**kw), address, backlog)
