"""The Postfix command line: ``[options] ADDRESS BACKLOG``, read as smtp-sink reads it.

Options are read as getopt reaches them (with a leading '+': stop at the first non-option),
so the first bad one is the one reported, as in Postfix. How each flag is read comes from the
option table. Our extensions have long options only (``--starttls``, ``--tls-cert=FILE`` or
``--tls-cert FILE``): Postfix's letters keep their meaning.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .config import SinkConfig
from .errors import ConfigError, UsageError
from .options import APPEND, BY_FLAG, BY_LONG, COUNT, DELAY, ENTRY, UNION, Option
from .values import COMMAND_NAMES, EXTENSION_COMMANDS, Delay, atoi, delay_fields, list_words


@dataclass(frozen=True)
class Invocation:
    """A parsed smtp-sink command line."""

    config: SinkConfig
    address: str
    backlog: int


def _getopt(argv: Sequence[str], rest: list[str]) -> Iterator[tuple[Option, str, str]]:
    """getopt_long with a leading '+': yields (option, "-X" or "--name", argument); what
    follows the options is left in ``rest``."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            long = BY_LONG.get(name)
            if long is None:
                raise UsageError(f"unrecognized option '--{name}'", option=arg, usage=True)
            if long.takes_arg and not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(
                        f"option '--{name}' requires an argument", option=arg, usage=True
                    )
                value = argv[i]
            elif eq and not long.takes_arg:
                raise UsageError(
                    f"option '--{name}' doesn't allow an argument", option=arg, usage=True
                )
            yield long, f"--{name}", value
            i += 1
            continue
        j = 1
        while j < len(arg):
            ch = arg[j]
            option = BY_FLAG.get(ch)
            if option is None:
                raise UsageError(f"invalid option -- '{ch}'", option=f"-{ch}", usage=True)
            if option.takes_arg:
                if j + 1 < len(arg):
                    value = arg[j + 1 :]
                else:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(
                            f"option requires an argument -- '{ch}'", option=f"-{ch}", usage=True
                        )
                    value = argv[i]
                yield option, f"-{ch}", value
                break
            yield option, f"-{ch}", ""
            j += 1
        i += 1
    rest.extend(argv[i:])


def _extensions_given(argv: Sequence[str]) -> set[str]:
    """The extension switches anywhere on the command line (up to a first bad option), so
    that a command list naming STARTTLS or BDAT is checked where getopt reaches it."""
    rest: list[str] = []
    given: set[str] = set()
    try:
        for option, _, _ in _getopt(argv, rest):
            if option.name in EXTENSION_COMMANDS.values() and option.switch:
                given.add(option.name)
    except UsageError:
        pass
    return given


def _check_extension_words(option: Option, spelled: str, text: str, given: set[str]) -> None:
    """STARTTLS or BDAT in a command list without its extension is Postfix's "unknown
    command", reported in list order with the other unknown names."""
    if option.merge == UNION:
        words = list_words(text)
    else:
        fields = delay_fields(text)
        words = fields[:1] if len(fields) >= 2 else []  # else "invalid command delay"
    for word in words:
        upper = word.upper()
        needs = EXTENSION_COMMANDS.get(upper)
        if needs is not None and needs not in given:
            raise ConfigError(f"unknown command: {word}", option=spelled)
        if upper not in COMMAND_NAMES:
            return  # the option's own parser reports it


def parse_argv(argv: Sequence[str]) -> Invocation:
    """Parse ``[options] ADDRESS BACKLOG`` (argv without the program name)."""
    kw: dict[str, Any] = {}
    commands: dict[str, set[str]] = {}
    delays: dict[str, Delay] = {}
    entries: dict[str, dict[str, Any]] = {}
    verbose = 0
    args: list[str] = []
    extensions = _extensions_given(argv)
    for option, spelled, text in _getopt(argv, args):
        if option.merge in (UNION, DELAY):
            _check_extension_words(option, spelled, text, extensions)
        value: Any = option.switch if option.parse is None else option.parse(text, spelled)
        if option.merge == UNION:
            commands.setdefault(option.name, set()).update(value)
        elif option.merge == COUNT:
            verbose += 1
        elif option.merge == DELAY:
            name, delay = value
            delays[name] = delay
        elif option.merge == ENTRY:
            key, item = value
            entries.setdefault(option.name, {})[key] = item
        elif option.merge == APPEND:
            kw[option.name] = (*kw.get(option.name, ()), value)
        else:
            kw[option.name] = value
        kw.update(option.implies)  # -f and -r imply -p, even with an empty list
    if len(args) != 2:
        raise UsageError("wrong number of arguments", usage=True)
    address, backlog_text = args
    backlog = atoi(backlog_text)  # Postfix: atoi(), must be > 0
    if backlog <= 0:
        raise UsageError(f"bad backlog: {backlog_text}", usage=True)
    for name, names in commands.items():
        kw[name] = frozenset(names)
    kw.update(entries)
    kw["delays"] = delays
    kw["verbose"] = verbose
    both = kw.get("dump_template") is not None and kw.get("dump_file_template") is not None
    for name, flag in (("dump_template", "-d"), ("dump_file_template", "-D")):
        if kw.get(name) == "" and not both:  # both: Postfix's "use only one" comes first
            raise ConfigError("empty dump template", option=flag)
    return Invocation(SinkConfig(**kw), address, backlog)
