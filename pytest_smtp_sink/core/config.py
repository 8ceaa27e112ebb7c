"""SinkConfig: one typed field per smtp-sink option, built from marker/ini values.

The option table (``options.py``) says how each value is read; ``argv.py`` reads the
command line. Error texts follow Postfix smtp-sink 3.7 (reference §1.1).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .options import CONVERTERS, NEEDS_TASK_NAMES
from .rules import Rule
from .values import DEFAULT_HARD_REPLY, DEFAULT_SOFT_REPLY, EXTENSION_COMMANDS, Delay


@dataclass(frozen=True)
class SinkConfig:
    """Every smtp-sink behaviour option as a typed field (frozen; ``replace`` makes changed
    copies). The field names are the marker keywords and, prefixed ``smtp_sink_``, the ini
    names; the option table documents each. A bad value raises ``ConfigError``."""

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
    # extensions Postfix's sink lacks (DESIGN §7), off unless asked for
    starttls: bool = False  # --starttls
    implicit_tls: bool = False  # --implicit-tls
    require_tls: bool = False  # --require-tls
    tls_cert: str | None = None  # --tls-cert
    tls_key: str | None = None  # --tls-key
    smtputf8: bool = False  # --smtputf8
    chunking: bool = False  # --chunking (CHUNKING and BINARYMIME)
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")  # --auth-mechanisms
    users: Mapping[str, str] | None = None  # --auth-user name:password (repeatable)
    auth_required: bool = False  # --auth-required
    # failure rules beyond the flags (mail= and rcpt= are short forms of them)
    rules: tuple[Rule, ...] = ()  # --rule (repeatable)
    seed: int | None = None  # --seed: every random choice, reproducible

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
    def needs_task(self) -> bool:
        """Sessions may have to wait (delays): they are served by a task of their own."""
        return any(getattr(self, name) not in (None, {}) for name in _NEEDS_TASK_FIELDS)

    @property
    def tls(self) -> bool:
        """Sessions may use TLS (a certificate is needed)."""
        return self.starttls or self.implicit_tls

    @property
    def dumping(self) -> bool:
        return self.dump_template is not None or self.dump_file_template is not None

    def replace(self, **changes: Any) -> SinkConfig:
        """A copy with ``changes`` applied (marker-style names and values accepted)."""
        return from_options(changes, base=self)


# Options that are not fields: -w sets delays["DATA"], mail= and rcpt= add rules.
PSEUDO_OPTIONS = frozenset({"data_delay", "mail", "rcpt"})
FIELD_NAMES: frozenset[str] = (
    frozenset(f.name for f in dataclasses.fields(SinkConfig)) | PSEUDO_OPTIONS
)
_NEEDS_TASK_FIELDS = tuple(sorted(NEEDS_TASK_NAMES & (FIELD_NAMES - PSEUDO_OPTIONS)))


def _convert(name: str, value: Any) -> Any:
    """Convert one marker/ini value to the field's type, with clear errors."""
    return CONVERTERS[name](name, value)


def from_options(options: Mapping[str, Any], base: SinkConfig | None = None) -> SinkConfig:
    """Build a config from marker keywords / ini values over ``base`` (default: the
    smtp-sink defaults), converting and checking each value; ``ConfigError`` names a bad
    option (and suggests a close name for a misspelt one)."""
    base = base or SinkConfig()
    changes: dict[str, Any] = {}
    delays = dict(base.delays)
    short: list[Rule] = []
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
                seconds = _convert(name, value)
                if seconds is None:
                    delays.pop("DATA", None)
                else:
                    delays["DATA"] = (seconds, 0)
            elif name == "delays":
                delays = dict(_convert(name, value))
            elif name in ("mail", "rcpt"):
                short.extend(_convert(name, value))
            else:
                changes[name] = _convert(name, value)
        except ConfigError as exc:
            if exc.option != name:
                raise ConfigError(str(exc), option=name) from None
            raise
    changes["delays"] = delays
    if short:  # mail= / rcpt= come after the rules given as such
        changes["rules"] = (*changes.get("rules", base.rules), *short)
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError as exc:
        if exc.option != "-d":
            raise
        # -d and -D together: name the field that was given here.
        given = "dump_file_template" if "dump_file_template" in changes else "dump_template"
        raise ConfigError(str(exc), option=given) from None


def validate(cfg: SinkConfig) -> None:
    """Cross-field checks shared by every way of building a config."""
    if cfg.dump_template is not None and cfg.dump_file_template is not None:
        raise ConfigError("use only one of -d or -D, but not both", option="-d")
    if cfg.require_tls and not cfg.tls:
        raise ConfigError(
            "require_tls needs starttls or implicit_tls (--starttls, --implicit-tls)",
            option="require_tls",
        )
    if cfg.tls_key is not None and cfg.tls_cert is None:
        raise ConfigError("tls_key needs tls_cert (--tls-cert)", option="tls_key")
    for name in COMMAND_FIELDS:
        for command in sorted(extension_commands_off(getattr(cfg, name), cfg)):
            extension = EXTENSION_COMMANDS[command]
            raise ConfigError(f"{name}: {command} needs {extension}=True", option=name)


COMMAND_FIELDS = ("reject", "soft_reject", "disconnect", "disconnect_421", "log_commands", "delays")


def extension_commands_off(names: Iterable[str], cfg: SinkConfig) -> set[str]:
    """The extension commands among ``names`` whose extension ``cfg`` does not turn on."""
    return {n for n in names if n in EXTENSION_COMMANDS and not getattr(cfg, EXTENSION_COMMANDS[n])}
