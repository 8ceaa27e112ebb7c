"""Parsing option values: command lists, numbers, reply texts, delays and C escapes.

Command-line values are read as Postfix reads them (``atoi``, its error texts); marker and
ini values are Python values or strings, checked more strictly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import ConfigError

# Command names accepted by -f/-q/-Q/-r/-s/-W, in Postfix's table order.
POSTFIX_COMMANDS: tuple[str, ...] = (
    "CONNECT", "HELO", "EHLO", "LHLO", "XCLIENT", "XFORWARD", "AUTH",
    "MAIL", "RCPT", "DATA", ".", "RSET", "NOOP", "VRFY", "QUIT",
)  # fmt: skip
# The commands of our extensions, and the option that turns each on: a command list may
# name them only with that option (otherwise Postfix's "unknown command").
EXTENSION_COMMANDS: dict[str, str] = {"STARTTLS": "starttls", "BDAT": "chunking"}
COMMAND_NAMES: tuple[str, ...] = (*POSTFIX_COMMANDS, *EXTENSION_COMMANDS)

DEFAULT_SOFT_REPLY = "450 4.3.0 Error: command failed"
DEFAULT_HARD_REPLY = "500 5.3.0 Error: command failed"

Delay = tuple[float, int]  # (seconds, odds 0..99)

_LIST_SEPARATORS = re.compile(r"[ \t\r\n,]+")


def list_words(text: str) -> list[str]:
    """The names of a command list (or the specs of an ini ``delays``), split as Postfix
    splits them: on space, tab, CR, LF and comma."""
    return [w for w in _LIST_SEPARATORS.split(text) if w]


def delay_fields(spec: str) -> list[str]:
    """The fields of a -W ``cmd:delay[:odds]``: the non-empty ones between colons, as
    Postfix reads them (``data::1`` is ``data:1``)."""
    return [f for f in spec.split(":") if f]


def parse_commands(value: str | Iterable[str], option: str = "-f") -> frozenset[str]:
    """Split a command list on space/tab/CR/LF/comma; names are case-insensitive."""
    if isinstance(value, str):
        names = list_words(value)
    else:
        names = []
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(f"bad command name: {item!r}", option=option)
            names.extend(list_words(item))
    out = set()
    for name in names:
        upper = name.upper()
        if upper not in COMMAND_NAMES:
            raise ConfigError(f"unknown command: {name}", option=option)
        out.add(upper)
    return frozenset(out)


def check_reply(text: str, first: str, kind: str, option: str) -> str:
    """A -b/-B reply: three digits, the first one ``first``; one line."""
    digits = re.match(r"[0-9]*", text)
    assert digits is not None
    if not text.startswith(first) or len(digits.group()) != 3:
        raise ConfigError(f"bad {kind} error reply: {text}", option=option, usage=True)
    if "\r" in text or "\n" in text:
        raise ConfigError(f"bad {kind} error reply: {text!r} (line break)", option=option)
    return text


def positive_number(value: object, what: str, option: str) -> float:
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


def positive_int(value: object, what: str, option: str) -> int:
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
    """Parse a -W argument ``cmd:delay[:odds]`` with Postfix's rules and error texts
    (``delay_fields``; fields after the odds are ignored)."""
    fields = delay_fields(spec)
    if len(fields) < 2:
        raise ConfigError(f"invalid command delay argument: {spec}", option="-W")
    cmd, delay_text = fields[0], fields[1]
    name = cmd.upper()
    if name not in COMMAND_NAMES:
        raise ConfigError(f"unknown command: {cmd}", option="-W")
    seconds = atof(delay_text)
    if not seconds > 0:
        raise ConfigError(f"non-positive '{cmd}' delay", option="-W")
    odds = atoi(fields[2]) if len(fields) > 2 else 0
    if odds < 0 or odds > 99:
        raise ConfigError(f"delay odds for '{cmd}' out of range", option="-W")
    return name, (seconds, odds)


def delay_specs(text: str) -> dict[str, Delay]:
    """Several ``cmd:delay[:odds]`` specs separated like a command list (ini form)."""
    return dict(parse_delay_spec(s) for s in list_words(text))


_C_NUMBER = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]*)(?:\.([0-9]*))?")
_LONG_MAX = 2**63 - 1  # strtol() saturates at the bounds of a C long (64 bits here)


def _c_int(negative: bool, digits: str) -> int:
    """``(int) strtol(...)``: saturate at the C long bounds, then keep the low 32 bits,
    signed (so ``2147483648`` is negative and ``4294967297`` is 1, as in Postfix)."""
    digits = digits.lstrip("0")
    value = _LONG_MAX + 1 if len(digits) > 19 else int(digits or "0")
    value = min(value, _LONG_MAX + 1 if negative else _LONG_MAX)
    value = (-value if negative else value) & 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def atoi(text: str) -> int:
    """glibc's C ``atoi``: leading white space, a sign, digits; anything else ends it;
    out-of-range values wrap as a C int does."""
    m = _C_NUMBER.match(text)
    assert m is not None
    return _c_int(m.group(1) == "-", m.group(2))


def atof(text: str) -> float:
    """``atoi`` that also takes a decimal fraction (we accept sub-second delays); the whole
    part is read (and wraps) as ``atoi`` reads it."""
    m = _C_NUMBER.match(text)
    assert m is not None
    sign, digits, fraction = m.groups()
    if not digits and not fraction:
        return 0.0
    whole = _c_int(sign == "-", digits)
    part = float("0." + fraction) if fraction else 0.0
    return whole - part if sign == "-" else whole + part


def cli_seconds(value: str, what: str, option: str) -> float:
    """A CLI number of seconds, parsed like Postfix's atoi (``5x`` is 5, ``x`` is 0)."""
    number = atof(value)
    if not number > 0:
        raise ConfigError(f"bad {what}: {value}", option=option)
    return number


def cli_count(value: str, what: str, option: str) -> int:
    """A CLI count, parsed with atoi as Postfix does; must be > 0."""
    number = atoi(value)
    if number <= 0:
        raise ConfigError(f"bad {what}: {value}", option=option)
    return number


def delay_value(name: str, value: object) -> Delay:
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
    seconds = positive_number(seconds_v, f"'{name}' delay", option)
    if isinstance(odds_v, bool) or not isinstance(odds_v, int) or not 0 <= odds_v <= 99:
        raise ConfigError(f"delay odds for '{name}' out of range", option=option)
    return seconds, odds_v


def delay_table(name: str, value: object) -> dict[str, Delay]:
    """Marker/ini ``delays``: ``{"RCPT": 1.5, ".": (1, 50)}`` or ``"rcpt:1.5 .:1:50"``."""
    if isinstance(value, str):
        return delay_specs(value)
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"delays must be a mapping like {{'RCPT': 1.5}}, not {value!r}", option=name
        )
    out: dict[str, Delay] = {}
    for cmd, delay in value.items():
        if not isinstance(cmd, str) or cmd.upper() not in COMMAND_NAMES:
            raise ConfigError(f"unknown command: {cmd}", option=name)
        out[cmd.upper()] = delay_value(cmd, delay)
    return out


def encode_text(text: str) -> bytes:
    """The bytes of a configured text (hostname, reply, -S) on the wire and in the dump.

    Texts hold one octet per character (latin-1), like the dump reader; ``parse_argv``
    turns command-line strings into that form (``argv_text``).
    """
    return text.encode("latin-1")


def argv_text(value: str) -> str:
    """A command-line string as the octets the C program saw, one character per octet."""
    return os.fsencode(value).decode("latin-1")


def encodable(name: str, text: str) -> str:
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


def bool_value(name: str, value: object) -> bool:
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


def str_value(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {value!r}", option=name)
    return value


Convert = Callable[[str, Any], Any]  # (option name, marker/ini value) -> field value


def optional(convert: Convert) -> Convert:
    """A converter that also takes ``None`` (the option's "off")."""

    def convert_or_none(name: str, value: object) -> Any:
        return None if value is None else convert(name, value)

    return convert_or_none
