"""The option table: one entry per smtp-sink flag (and per option that has no flag).

Everything else is derived from it: the getopt string and usage text of the command line,
the marker/ini converters, the sets of command-line-only and listener options, which options
need a session task, README's option table and the ini help. Adding an option is one entry
here, a ``SinkConfig`` field, and its behaviour.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, UsageError
from .rules import address_rules, parse_rule, rules_value
from .values import (
    Convert,
    argv_text,
    atof,
    bool_value,
    check_reply,
    cli_count,
    cli_seconds,
    delay_table,
    encodable,
    optional,
    parse_commands,
    parse_delay_spec,
    positive_int,
    positive_number,
    str_value,
    unescape,
)

# Where an option applies.
BEHAVIOUR = "behaviour"  # marker, ini, factory, open_sink and the command line
LISTENER = "listener"  # also; in pytest it needs a listener of its own
CLI_ONLY = "cli"  # only the command line: it stops or re-owns the process
PLUGIN_ONLY = "plugin"  # only a pytest marker or factory (no SinkConfig field)
PYTEST = "pytest"  # only pytest, marker and ini (no SinkConfig field): the plugin's own

# How a command-line value is applied.
SET = "set"  # the last one wins
UNION = "union"  # command lists add up when the flag is repeated
COUNT = "count"  # each -v adds one
DELAY = "delay"  # (command, delay) into the delays table
ENTRY = "entry"  # (key, value) into a mapping (--auth-user name:password)
APPEND = "append"  # onto a tuple (--rule, repeatable)

AUTH_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")  # the ones we can check

CliParse = Callable[[str, str], Any]  # (argument text, "-X") -> value


@dataclass(frozen=True)
class Option:
    """One row of the option table (and of README's)."""

    name: str  # SinkConfig field = marker kwarg = ini ``smtp_sink_<name>``
    flag: str | None  # the smtp-sink letter, None when there is none
    spelling: str  # how README writes the marker form, e.g. ``family="inet4"``
    meaning: str  # README's text, also the ini help
    convert: Convert | None = None  # marker/ini value -> field value
    scope: str = BEHAVIOUR
    metavar: str | None = None  # the flag takes an argument (README: ``-A s``)
    usage: str | None = None  # its name in Postfix's usage text; None: not listed
    parse: CliParse | None = None  # command-line argument -> value
    switch: object = None  # the value a flag without argument sets
    merge: str = SET
    implies: tuple[tuple[str, object], ...] = ()  # fields a flag also sets
    needs_task: bool = False  # a session with it set must be able to wait
    long: str | None = None  # the long command-line option (extensions: ``--starttls``)

    @property
    def takes_arg(self) -> bool:
        return self.metavar is not None


# ----------------------------------------------------------- marker/ini converters


def _commands(name: str, value: object) -> frozenset[str]:
    if not isinstance(value, (str, list, tuple, set, frozenset)):
        raise ConfigError(f"{name} must be a command list, not {value!r}", option=name)
    return parse_commands(value, option=name)


def _seconds(what: str) -> Convert:
    return lambda name, value: positive_number(value, what, name)


def _count(what: str) -> Convert:
    return lambda name, value: positive_int(value, what, name)


def _abort_delay(name: str, value: object) -> float:
    # -A 0 aborts at once: zero is allowed here.
    try:
        number = float(value) if not isinstance(value, bool) else -1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = -1.0
    if not number >= 0 or number == float("inf"):
        raise ConfigError(f"bad abort delay: {value}", option=name)
    return number


def _max_message_size(name: str, value: object) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "0")):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return None
    return positive_int(value, "max_message_size", name)


def _verbose(name: str, value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            return int(bool_value(name, value))
        except ConfigError:
            if value.strip().isdigit():
                return int(value)
            raise
    raise ConfigError(f"verbose must be true/false or a count, not {value!r}", option=name)


_FAMILIES = {"inet": "inet", "all": "inet", "inet4": "inet4", "ipv4": "inet4", "4": "inet4",
             "inet6": "inet6", "ipv6": "inet6", "6": "inet6"}  # fmt: skip


def _family(name: str, value: object) -> str:
    low = str(value).lower()
    if low not in _FAMILIES:
        raise ConfigError(f"family must be inet, inet4 or inet6, not {value!r}", option=name)
    return _FAMILIES[low]


def _reply(first: str, kind: str) -> Convert:
    def convert(name: str, value: object) -> str:
        return encodable(name, check_reply(str_value(name, value), first, kind, name))

    return convert


def _choice(*choices: str) -> Convert:
    def convert(name: str, value: object) -> str:
        text = str_value(name, value).strip().lower()
        if text not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}",
                              option=name)  # fmt: skip
        return text

    return convert


def _hostname(name: str, value: object) -> str:
    host = str_value(name, value)
    if not host or any(c in host for c in "\r\n"):
        raise ConfigError(f"bad hostname: {host!r}", option=name)
    return encodable(name, host)


def _template(name: str, value: object) -> str:
    text = str_value(name, value)
    if not text:
        raise ConfigError(f"{name} must not be empty", option=name)
    return text


def _text(name: str, value: object) -> str:
    return encodable(name, str_value(name, value))


def _path(name: str, value: object) -> str:
    text = str_value(name, value)
    if not text:
        raise ConfigError(f"{name} must not be empty", option=name)
    return text


def _mechanisms(name: str, value: object) -> tuple[str, ...]:
    """AUTH mechanisms: ``"PLAIN LOGIN"``, ``"plain,cram-md5"`` or a list; order kept."""
    if isinstance(value, str):
        items = [m for m in re.split(r"[ \t,]+", value) if m]
    elif isinstance(value, (list, tuple)) and all(isinstance(m, str) for m in value):
        items = list(value)
    else:
        raise ConfigError(f"{name} must be a list of mechanisms, not {value!r}", option=name)
    out: list[str] = []
    for item in items:
        mech = item.upper()
        if mech not in AUTH_MECHANISMS:
            known = ", ".join(AUTH_MECHANISMS)
            raise ConfigError(f"unknown AUTH mechanism: {item} (known: {known})", option=name)
        if mech not in out:
            out.append(mech)
    return tuple(out)


def _user_entry(text: str, option: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name:
        raise ConfigError(f"bad user: {text} (expected name:password)", option=option)
    return name, password


def _users(name: str, value: object) -> dict[str, str] | None:
    """``{"name": "password"}``, or ``"alice:secret bob:pw"`` (ini)."""
    if value is None:
        return None
    if isinstance(value, str):
        return dict(_user_entry(item, name) for item in value.split() if item)
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        return dict(value)
    raise ConfigError(f"{name} must map user names to passwords, not {value!r}", option=name)


# ------------------------------------------------------------ command-line parsers


def _cli_abort_delay(text: str, flag: str) -> float:
    # Postfix: digits only, read with atoi (so 2147483648 wraps negative and is refused).
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text) or atof(text) < 0:
        raise UsageError(f"bad abort delay: {text}", option=flag, usage=True)
    return atof(text)


def _cli_reply(first: str, kind: str) -> CliParse:
    # checked as typed (its error names the octets as typed), kept as octets
    return lambda text, flag: argv_text(check_reply(text, first, kind, flag))


def _cli_seconds(what: str) -> CliParse:
    return lambda text, flag: cli_seconds(text, what, flag)


def _cli_count(what: str) -> CliParse:
    return lambda text, flag: cli_count(text, what, flag)


def _cli_data_delay(text: str, flag: str) -> tuple[str, tuple[float, int]]:
    try:
        return "DATA", (cli_seconds(text, "delay", flag), 0)
    except ConfigError:
        raise UsageError(f"bad delay: {text}", option=flag, usage=True) from None


def _cli_raw(text: str, flag: str) -> str:
    return text


def _cli_commands(text: str, flag: str) -> frozenset[str]:
    return parse_commands(text, option=flag)


def _cli_size(text: str, flag: str) -> int:
    return positive_int(text, "message size limit", flag)


def _extension(name: str, long: str, meaning: str, **kw: Any) -> Option:
    """A switch of our own (no Postfix letter): ``--long``."""
    kw.setdefault("convert", bool_value)
    return Option(name, None, f"{name}=True", meaning, switch=True, long=long, **kw)


_NO_PIPELINING = (("pipelining", False),)


def _switch(name: str, flag: str, value: object, meaning: str, **kw: Any) -> Option:
    kw.setdefault("convert", bool_value)
    kw.setdefault("usage", flag)
    spelling = f'{name}="{value}"' if isinstance(value, str) else f"{name}={value}"
    if kw.get("scope") == CLI_ONLY:
        spelling = "(command line only)"
    return Option(name, flag, spelling, meaning, switch=value, **kw)


def _commands_option(name: str, flag: str, meaning: str, **kw: Any) -> Option:
    kw.setdefault("usage", "commands")
    return Option(name, flag, f"{name}=cmds", meaning, _commands, metavar="cmds",
                  parse=_cli_commands, merge=UNION, **kw)  # fmt: skip


# fmt: off
OPTIONS: tuple[Option, ...] = (
    _switch("family", "4", "inet4", "listen on IPv4 only", convert=_family, scope=LISTENER),
    _switch("family", "6", "inet6", "listen on IPv6 only (default ``inet``: both)",
            convert=_family, scope=LISTENER),
    _switch("eightbitmime", "8", False, "do not announce 8BITMIME"),
    _switch("auth", "a", False, "do not announce AUTH (AUTH stays accepted)"),
    Option("abort_delay", "A", "abort_delay=s",
           "after 354, wait *s* seconds, send ``550 This violates SMTP`` and close (0: at once)",
           optional(_abort_delay), metavar="s", usage="abort_delay", parse=_cli_abort_delay,
           needs_task=True),
    Option("soft_bounce_reply", "b", "soft_bounce_reply=txt",
           "soft reject reply (default ``450 4.3.0 Error: command failed``); must start with"
           " ``4`` and 3 digits", _reply("4", "soft"), metavar="txt", usage="soft_bounce_reply",
           parse=_cli_reply("4", "soft")),
    Option("hard_bounce_reply", "B", "hard_bounce_reply=txt",
           "hard reject reply (default ``500 5.3.0 Error: command failed``); must start with"
           " ``5`` and 3 digits", _reply("5", "hard"), metavar="txt", usage="hard_bounce_reply",
           parse=_cli_reply("5", "hard")),
    _switch("counters", "c", True, "print ``sess=N quit=N mesg=N`` + CR on stdout",
            scope=CLI_ONLY),
    _switch("xclient", "C", False, "hide XCLIENT and disable the command"),
    Option("dump_template", "d", "dump_template=tpl",
           "one dump file per message: strftime(*tpl*) + 8 hex id", optional(_template),
           metavar="tpl", usage="dump-template", parse=_cli_raw),
    Option("dump_file_template", "D", "dump_file_template=tpl",
           "append each message to the file strftime(*tpl*)", optional(_template),
           metavar="tpl", usage="dump-template", parse=_cli_raw),
    _switch("esmtp", "e", False, "no ESMTP: plain greeting, EHLO disabled"),
    _switch("enhanced_status_codes", "E", False,
            "do not announce ENHANCEDSTATUSCODES (replies keep them)"),
    _commands_option("reject", "f", "reject *cmds* with the hard reply (implies ``-p``)",
                     implies=_NO_PIPELINING),
    _switch("xforward", "F", False, "hide XFORWARD and disable the command"),
    Option("hostname", "h", "hostname=name", "name in greeting, HELO/EHLO reply, Received header",
           _hostname, metavar="name", usage="hostname", parse=lambda text, flag: argv_text(text)),
    Option("data_read_delay", "H", "data_read_delay=s",
           "delay the first read after 354 by *s* seconds",
           optional(_seconds("data read delay")), metavar="s",
           parse=_cli_seconds("data read delay"), needs_task=True),
    _switch("lmtp", "L", True, "LMTP: LHLO only, one reply per recipient after data"),
    Option("max_connections", "m", "max_connections=n",
           "at most *n* sessions at once (default 256); the rest wait in the kernel's queue",
           _count("concurrency limit"), scope=LISTENER, metavar="n", usage="max_concurrency",
           parse=_cli_count("concurrency limit")),
    Option("max_messages", "M", "(command line only)", "exit after *n* messages",
           optional(_count("message quit count")), scope=CLI_ONLY, metavar="n",
           usage="message_quit_count", parse=_cli_count("message quit count")),
    Option("max_sessions", "n", "(command line only)",
           "exit after *n* sessions that ended with QUIT", optional(_count("quit count")),
           scope=CLI_ONLY, metavar="n", usage="quit_count",
           parse=_cli_count("quit count")),
    _switch("dsn", "N", False, "do not announce DSN", usage=None),
    _switch("pipelining", "p", False, "do not announce PIPELINING (pipelining still works)"),
    _switch("pix", "P", True, "PIX greeting ``220 ********`` (implies ``-e``)"),
    _commands_option("disconnect", "q", "close without a reply after *cmds*"),
    _commands_option("disconnect_421", "Q",
                     "reply ``421 4.0.0 Server closing connection`` and close",
                     usage=None),
    _commands_option("soft_reject", "r", "reject *cmds* with the soft reply (implies ``-p``)",
                     implies=_NO_PIPELINING),
    Option("chroot", "R", "(command line only)", "chroot to *dir* (with ``-u``)",
           optional(str_value), scope=CLI_ONLY, metavar="dir", usage="root-dir",
           parse=_cli_raw),
    _commands_option("log_commands", "s",
                     "log *cmds*: to syslog (mail.info) on the command line, to logger"
                     " ``pytest_smtp_sink.commands`` in pytest"),
    Option("start_string", "S", "start_string=str",
           "text written before every dumped message (command line: C escapes such as"
           " ``\\n``, ``\\t``, ``\\101``, ``\\\\`` processed)", _text, metavar="str",
           usage="start-string", parse=lambda text, flag: unescape(argv_text(text))),
    Option("timeout", "t", "timeout=s",
           "time limit for receiving a command, and idle limit (default 100)",
           _seconds("timeout"), metavar="s", parse=_cli_seconds("timeout")),
    Option("tcp_window", "T", "tcp_window=n", "SO_SNDBUF/SO_RCVBUF of the listening socket",
           optional(_count("TCP window size")), scope=LISTENER, metavar="n",
           parse=_cli_count("TCP window size")),
    Option("user", "u", "(command line only)",
           "switch to *user* after binding (required as root)", optional(str_value),
           scope=CLI_ONLY, metavar="user", usage="user_privs", parse=_cli_raw),
    Option("verbose", "v", "verbose=True", "log the conversation (stderr / logger)", _verbose,
           switch=1, usage="v", merge=COUNT),
    Option("data_delay", "w", "data_delay=s", "delay the reply to DATA by *s* seconds",
           optional(_seconds("data delay")), metavar="s", usage="delay",
           parse=_cli_data_delay, merge=DELAY, needs_task=True),
    Option("delays", "W", '``delays={"c": s}`` or ``{"c": (s, odds)}``',
           "delay the reply to command *c*; with *odds* (1-99) a random multiple of *s* (the"
           " man page's dice rule)", delay_table, metavar="c:s[:odds]",
           parse=lambda text, flag: parse_delay_spec(text), merge=DELAY,
           needs_task=True),
    # extensions (DESIGN §7): off on the command line unless asked for
    Option("max_message_size", None, "max_message_size=n",
           "a message over *n* octets of DATA is answered ``552 5.3.4 Error: message file too"
           " big`` and not kept, and SIZE *n* is announced (``MAIL ... SIZE=`` over it gets"
           " ``552 5.3.4``); ``None``/``0``: no limit. Default: none on the command line,"
           " 64 MiB in pytest (captures live in memory)", _max_message_size,
           metavar="n", parse=_cli_size, long="max-message-size"),
    _extension("starttls", "starttls",
               "announce and accept STARTTLS (RFC 3207); the certificate: ``tls_cert``, or"
               " one signed by a test CA (pytest: ``smtp_sink.ca_file``)"),
    _extension("implicit_tls", "implicit-tls",
               "TLS from the first octet (SMTPS, RFC 8314)", scope=LISTENER),
    _extension("require_tls", "require-tls",
               "MAIL and AUTH before TLS get ``530 5.7.0 Must issue a STARTTLS command"
               " first``; AUTH is announced inside TLS only"),
    Option("tls_cert", None, "tls_cert=file",
           "certificate chain (PEM) for TLS, with its key unless ``tls_key`` is given",
           optional(_path), metavar="file", parse=_cli_raw, long="tls-cert"),
    Option("tls_key", None, "tls_key=file", "private key (PEM) of ``tls_cert``",
           optional(_path), metavar="file", parse=_cli_raw, long="tls-key"),
    _extension("smtputf8", "smtputf8",
               "announce SMTPUTF8 (RFC 6531); its UTF-8 addresses are dumped as UTF-8"),
    _extension("chunking", "chunking",
               "announce CHUNKING and BINARYMIME (RFC 3030): ``BDAT n [LAST]``"),
    Option("auth_mechanisms", None, 'auth_mechanisms="PLAIN LOGIN CRAM-MD5"',
           "the AUTH mechanisms announced and accepted (default ``PLAIN LOGIN``, as"
           " Postfix; pytest adds ``CRAM-MD5``)", _mechanisms, metavar="list",
           parse=lambda text, flag: _mechanisms(flag, text), long="auth-mechanisms"),
    Option("users", None, 'users={"name": "password"}',
           "AUTH must name one of these users with its password (``535 5.7.8``"
           " otherwise); without it any credentials are accepted", _users,
           metavar="name:password", parse=_user_entry, merge=ENTRY, long="auth-user"),
    _extension("auth_required", "auth-required",
               "MAIL before a successful AUTH gets ``530 5.7.0 Authentication required``"),
    Option("rules", None, 'rules=["RCPT bad@*: 550 5.1.1 No such user"]',
           "failure rules: per command and argument, counted (``times``, ``after``,"
           " ``every``, per sink or connection) or seeded (``odds``); see Failure rules",
           rules_value, metavar="rule", parse=lambda text, flag: parse_rule(text),
           merge=APPEND, long="rule"),
    Option("mail", None, 'mail={"bad@x.example": "553 5.1.8 Bad sender"}',
           "short for MAIL rules: address pattern to reply (or action)",
           lambda name, value: address_rules("MAIL", name, value)),
    Option("rcpt", None, 'rcpt={"bad@x.example": "550 5.1.1 User unknown"}',
           "short for RCPT rules: address pattern to reply (or action)",
           lambda name, value: address_rules("RCPT", name, value)),
    Option("seed", None, "seed=n",
           "the seed of every random choice (rule ``odds``, ``-W`` dice, queue ids): the same"
           " seed gives the same faults (pytest: ``--smtp-sink-seed``, printed in the header)",
           optional(_count("seed")), metavar="n", parse=_cli_count("seed"), long="seed"),
    Option("listen", None, 'listen="unix:/path"',
           "(pytest only) a dedicated listener at this address for the test",
           scope=PLUGIN_ONLY),
    Option("strict", None, "strict=True",
           "(pytest only) fail the test on mail from a connection opened before it and on the"
           " client's protocol errors (``5.5.x`` replies)", bool_value, scope=PYTEST),
    Option("report", None, 'report="envelope"',
           "(pytest only) a failed test's Captured SMTP conversation: ``full`` (the default),"
           " ``envelope`` (no message data) or ``off``", _choice("full", "envelope", "off"),
           scope=PYTEST),
    Option("report_data_lines", None, "report_data_lines=n",
           "(pytest only) at most *n* lines of each message's data in that report (default"
           " 20)", _count("report_data_lines"), scope=PYTEST),
)
# fmt: on

# ----------------------------------------------------------------- derived views

BY_FLAG: Mapping[str, Option] = {o.flag: o for o in OPTIONS if o.flag is not None}
BY_LONG: Mapping[str, Option] = {o.long: o for o in OPTIONS if o.long is not None}

OPTSTRING = "".join(f"{flag}:" if o.takes_arg else flag for flag, o in BY_FLAG.items())


def _usage_order(option: Option) -> tuple[str, bool]:
    assert option.flag is not None
    return option.flag.lower(), option.flag.isupper()


def _usage() -> str:
    listed = sorted((o for o in BY_FLAG.values() if o.usage is not None), key=_usage_order)
    switches = "".join(o.usage or "" for o in listed if not o.takes_arg)
    args = " ".join(f"[-{o.flag} {o.usage}]" for o in listed if o.takes_arg)
    return f"usage: {{prog}} [-{switches}] {args} [host]:port backlog"


USAGE = _usage()  # Postfix's text; ``{prog}`` is the program name

# Marker/ini converters by option name (first row of a name: -4 and -6 share ``family``).
CONVERTERS: Mapping[str, Convert] = {
    o.name: o.convert for o in reversed(OPTIONS) if o.convert is not None
}
CLI_ONLY_NAMES = frozenset(o.name for o in OPTIONS if o.scope == CLI_ONLY)
LISTENER_NAMES = frozenset(o.name for o in OPTIONS if o.scope in (LISTENER, PLUGIN_ONLY))
NEEDS_TASK_NAMES = frozenset(o.name for o in OPTIONS if o.needs_task)
# Option names a test can set (marker, ini, factory), in a stable order.
PYTEST_NAMES: tuple[str, ...] = tuple(
    sorted({o.name for o in OPTIONS if o.scope not in (CLI_ONLY, PLUGIN_ONLY)})
)
# The plugin's own options (no SinkConfig field).
PLUGIN_NAMES = frozenset(o.name for o in OPTIONS if o.scope in (PLUGIN_ONLY, PYTEST))


def readme_table() -> str:
    """README's option table (a reST list-table), as README.rst must hold it."""
    rows = ["flag", "marker / ini name", "meaning"]
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 14 30 56", ""]
    lines += [f"   * - {rows[0]}", f"     - {rows[1]}", f"     - {rows[2]}"]
    for o in OPTIONS:
        arg = f" {o.metavar}" if o.metavar else ""
        flag = f"``-{o.flag}{arg}``" if o.flag else f"``--{o.long}{arg}``" if o.long else ""
        spelling = o.spelling if o.spelling.startswith(("(", "``")) else f"``{o.spelling}``"
        lines.append(f"   * - {flag}" if flag else "   * -")
        lines.append(f"     - {spelling}")
        lines.append(f"     - {o.meaning}")
    return "\n".join(lines) + "\n"


# How an option is written in an ini file, where it is not obvious from the table.
_INI_FORMATS = {
    "family": "inet, inet4 or inet6",
    "delays": "cmd:seconds[:odds] ..., e.g. RCPT:1.5 .:1:50",
    "rules": "one rule per line, e.g. RCPT bad@*: 550 5.1.1 No such user",
    "users": "name:password ..., e.g. alice:secret bob:hunter2",
    "auth_mechanisms": "a list, e.g. PLAIN LOGIN CRAM-MD5",
    "mail": "(marker only)",
    "rcpt": "(marker only)",
}


def ini_help(option: Option) -> str:
    """The ``pytest --help`` text of ``smtp_sink_<name>``: meaning, flag, ini format."""
    flag = f" (smtp-sink -{option.flag})" if option.flag else ""
    if option.long:
        flag = f" (smtp-sink --{option.long})"
    # reST markup off: ``literal`` and *emphasis* (not the stars inside a literal)
    text = re.sub(r"``(.*?)``|\*(\w[^*]*)\*", lambda m: m.group(1) or m.group(2), option.meaning)
    if option.name in _INI_FORMATS:
        form = _INI_FORMATS[option.name]
    elif option.merge == UNION:
        form = "a command list, e.g. RCPT,DATA"
    elif option.convert is bool_value and option.spelling.endswith("=False"):
        form = "false does that (default true)"
    elif option.convert is bool_value:
        form = "true or false"
    else:
        form = option.metavar or option.spelling.replace("``", "")
    return f"{text}{flag}. ini: {form}"


INI_HELP_MODULE = "pytest_smtp_sink/plugin/ini_help.py"


def ini_help_module() -> str:
    """The source of ``plugin/ini_help.py``: the ini names and their ``--help`` texts, so
    that loading the plugin (every pytest run) needs neither this table nor its
    converters. ``tests/test_plugin_load.py`` checks that the file is this text; after
    changing an option run ``python -m pytest_smtp_sink.core.options`` to write it."""
    helps = {o.name: ini_help(o) for o in reversed(OPTIONS)}  # -4 before -6
    import json  # a JSON string is a Python string literal (double quotes, as ruff likes)

    lines = [
        '"""The ini options of the plugin and their help (generated from core/options.py by',
        '``python -m pytest_smtp_sink.core.options``: do not edit)."""',
        "",
        "# ruff: noqa: E501",
        "INI_HELP: tuple[tuple[str, str], ...] = (",
    ]
    lines += [
        f"    ({json.dumps(name)}, {json.dumps(helps[name], ensure_ascii=False)}),"
        for name in PYTEST_NAMES
    ]
    lines.append(")")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from pathlib import Path

    target = Path(__file__).resolve().parents[2] / INI_HELP_MODULE
    target.write_text(ini_help_module(), encoding="utf-8")
    print(f"wrote {target}")
