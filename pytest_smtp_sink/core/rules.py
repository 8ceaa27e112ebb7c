"""Failure rules: which command (and argument) gets which fault, how often, how likely.

A rule matches a command and, optionally, its argument: the address of MAIL and RCPT (exact,
``*@example.com`` glob, ``@example.com`` domain, ``re:...`` regex; case-insensitive), the name
of HELO/EHLO/LHLO, the argument text of any other command; for ``.`` (the end of data) the
recipients, one reply each in LMTP. ``param`` matches an ESMTP parameter of MAIL or RCPT
(``BODY=8BITMIME``, ``SIZE``, glob on the value). Its action replies (a reply text, or the
``hard``/``soft`` default text), drops the connection (``drop``: smtp-sink's -q), replies
421 and closes (``421``: -Q), or delays the normal reply (``delay``). Counting decides which
matches it acts on: ``after`` skips the first N, ``times`` acts on N at most, ``every`` on
every Nth, ``odds`` with that probability (drawn from the seeded generator), counted per
connection or per sink (``per``). The first rule that acts wins.

Text form (``--rule``, ini ``smtp_sink_rules``, ``rules=["..."]``)::

    COMMAND [PATTERN] [times=N] [after=N] [every=N] [odds=P] [per=sink|connection]
            [param=NAME[=VALUE]]: ACTION

(the action follows the first ``": "``) with ACTION a reply (``550 5.1.1 No such user``),
``hard``, ``soft``, ``drop``, ``421`` or ``delay=SECONDS``. ``Rule.__str__`` gives that form
back (transcripts name the rule).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .values import COMMAND_NAMES

ACTIONS = ("reply", "hard", "soft", "drop", "421", "delay")
SCOPES = ("sink", "connection")
_REPLY = re.compile(r"[2-5][0-9][0-9]( .*)?")


@dataclass(frozen=True)
class Rule:
    """One failure rule (see the module docstring); ``str(rule)`` is its text form.

    ``Rule("RCPT", "bad@*", reply="550 5.1.1 No such user", times=2)`` is
    ``"RCPT bad@* times=2: 550 5.1.1 No such user"``.
    """

    #: The command it applies to: ``MAIL``, ``RCPT``, ``DATA``, ``.`` (end of data), ``CONNECT``
    #: (the greeting), ``EHLO``, ... (case-insensitive)
    command: str
    #: The argument pattern: an address, ``*@example.com``, ``@example.com``, ``re:...``;
    #: None matches every argument
    match: str | None = None
    #: The reply text of action ``"reply"``, e.g. ``"550 5.1.1 No such user"``
    reply: str | None = None
    #: ``"reply"``, ``"hard"``, ``"soft"``, ``"drop"``, ``"421"`` or ``"delay"``
    action: str = "reply"
    #: Seconds, for action ``"delay"``
    delay: float | None = None
    #: Act on this many matches at most (None: on every one)
    times: int | None = None
    #: Let this many matches pass first
    after: int = 0
    #: Act on every n-th match only
    every: int | None = None
    #: Act with this probability, ``0 < odds <= 1`` (drawn from the seeded generator)
    odds: float | None = None
    #: Count matches per ``"sink"`` (across connections; the plugin resets it per test) or per
    #: ``"connection"``
    per: str = "sink"
    #: An ESMTP parameter of MAIL or RCPT that must be present: ``NAME`` or ``NAME=GLOB``
    param: str | None = None
    _pattern: Any = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        command = self.command.upper()
        object.__setattr__(self, "command", command)
        if command not in COMMAND_NAMES:
            raise ConfigError(f"unknown command: {self.command}", option="rules")
        if self.action not in ACTIONS:
            raise ConfigError(f"unknown action: {self.action}", option="rules")
        if self.action == "reply":
            if self.reply is None or not _REPLY.fullmatch(self.reply):
                raise ConfigError(
                    f"a reply needs a 2xx-5xx code, not {self.reply!r}", option="rules"
                )
            if "\r" in self.reply or "\n" in self.reply:
                raise ConfigError("a reply is one line", option="rules")
        if self.action == "delay" and not (self.delay is not None and self.delay > 0):
            raise ConfigError("delay needs a positive number of seconds", option="rules")
        for name in ("times", "every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} must be a positive count", option="rules")
        if self.after < 0:
            raise ConfigError("after must not be negative", option="rules")
        if self.odds is not None and not 0 < self.odds <= 1:
            raise ConfigError("odds must be a probability: 0 < odds <= 1", option="rules")
        if self.per not in SCOPES:
            raise ConfigError("per must be sink or connection", option="rules")
        object.__setattr__(self, "_pattern", _compile(self.match) if self.match else None)

    # ------------------------------------------------------------------ matching

    def matches(self, subject: str, params: Mapping[str, str | None] | None = None) -> bool:
        """Whether ``subject`` (address, HELO name, argument) is one of this rule's."""
        pattern = self._pattern
        if pattern is not None and not pattern(subject):
            return False
        if self.param is not None:
            name, eq, value = self.param.partition("=")
            have = (params or {}).get(name.upper(), "\0absent")
            if have == "\0absent":
                return False
            if eq and not fnmatch.fnmatchcase((have or "").upper(), value.upper()):
                return False
        return True

    def acts_on(self, nth: int) -> bool:
        """Counting: whether the ``nth`` match (1-based) is one it acts on (odds aside)."""
        if nth <= self.after:
            return False
        nth -= self.after
        if self.every is not None and nth % self.every:
            return False
        count = nth // self.every if self.every is not None else nth
        return self.times is None or count <= self.times

    # ---------------------------------------------------------------------- text

    def __str__(self) -> str:
        words = [self.command]
        if self.match:
            words.append(self.match)
        for name in ("times", "every", "odds", "param"):
            value = getattr(self, name)
            if value is not None:
                words.append(f"{name}={value}")
        if self.after:
            words.append(f"after={self.after}")
        if self.per != "sink":
            words.append(f"per={self.per}")
        if self.action == "reply":
            action = self.reply or ""
        elif self.action == "delay":
            action = f"delay={self.delay:g}"
        else:
            action = self.action
        return " ".join(words) + ": " + action


def _compile(pattern: str) -> Any:
    """A case-insensitive predicate for a rule's pattern."""
    if pattern.startswith("re:"):
        try:
            regex = re.compile(pattern[3:], re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(
                f"bad regular expression {pattern[3:]!r}: {exc}", option="rules"
            ) from None
        return lambda s: regex.search(s) is not None
    low = pattern.lower()
    if low.startswith("@"):
        return lambda s: s.lower().endswith(low)
    if any(c in low for c in "*?["):
        return lambda s: fnmatch.fnmatchcase(s.lower(), low)
    return lambda s: s.lower() == low


# ---------------------------------------------------------------------- text form

_OPTIONS = {"times": int, "after": int, "every": int, "odds": float, "per": str, "param": str}


def parse_rule(text: str) -> Rule:
    """``"RCPT bad@*: 550 5.1.1 No such user"`` (see the module docstring); the action
    follows the first ``": "`` (so ``re:`` patterns keep their colon)."""
    head, sep, action = text.rstrip().partition(": ")
    if not sep and head.endswith(":"):
        head, sep = head[:-1], ":"
    if not sep:
        raise ConfigError(f"bad rule {text!r}: no ': ' before the action", option="rules")
    words = head.split()
    if not words:
        raise ConfigError(f"bad rule {text!r}: no command", option="rules")
    kw: dict[str, Any] = {}
    match: str | None = None
    for word in words[1:]:
        name, eq, value = word.partition("=")
        if eq and name in _OPTIONS:
            try:
                kw[name] = _OPTIONS[name](value)
            except ValueError:
                raise ConfigError(
                    f"bad rule {text!r}: bad {name}: {value}", option="rules"
                ) from None
        elif match is None:
            match = word
        else:
            raise ConfigError(f"bad rule {text!r}: what is {word!r}?", option="rules")
    action = action.strip()
    if action in ("hard", "soft", "drop", "421"):
        kw["action"] = action
    elif action.startswith("delay="):
        kw["action"] = "delay"
        try:
            kw["delay"] = float(action[6:])
        except ValueError:
            raise ConfigError(f"bad rule {text!r}: bad delay", option="rules") from None
    else:
        kw["reply"] = action
    try:
        return Rule(words[0], match, **kw)
    except ConfigError as exc:
        raise ConfigError(f"bad rule {text!r}: {exc}", option="rules") from None


def rules_value(name: str, value: object) -> tuple[Rule, ...]:
    """Marker/ini ``rules``: Rule objects or their text, one per line in ini."""
    if isinstance(value, (str, Rule)):
        value = [value]
    if not isinstance(value, Iterable):
        raise ConfigError(f"{name} must be a list of rules, not {value!r}", option=name)
    out: list[Rule] = []
    for item in value:
        if isinstance(item, Rule):
            out.append(item)
        elif isinstance(item, str):
            out.extend(parse_rule(line) for line in item.splitlines() if line.strip())
        else:
            raise ConfigError(f"{name}: not a rule: {item!r}", option=name)
    return tuple(out)


def address_rules(command: str, name: str, value: object) -> tuple[Rule, ...]:
    """The short forms ``mail=``/``rcpt=``: ``{"bad@example.com": "550 5.1.1 Unknown"}``
    (a reply or an action word per address pattern)."""
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{name} must map addresses to replies, like {{'bad@example.com': '550 5.1.1"
            f" User unknown'}}, not {value!r}",
            option=name,
        )
    out = []
    for pattern, action in value.items():
        if not isinstance(pattern, str) or not isinstance(action, str):
            raise ConfigError(f"{name}: {pattern!r}: {action!r} is not text", option=name)
        try:
            out.append(parse_rule(f"{command} {pattern}: {action}"))
        except ConfigError as exc:
            raise ConfigError(str(exc), option=name) from None
    return tuple(out)


class RuleCounters:
    """How often each rule has matched, for rules counted per sink (shared by the sink's
    connections; the pytest plugin starts each test with fresh ones)."""

    def __init__(self) -> None:
        self.counts: dict[Rule, int] = {}

    def next(self, rule: Rule) -> int:
        n = self.counts.get(rule, 0) + 1
        self.counts[rule] = n
        return n

    def reset(self) -> None:
        self.counts.clear()
