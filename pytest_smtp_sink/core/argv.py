"""The Postfix command line: ``[options] ADDRESS BACKLOG``, read as smtp-sink reads it.

Options are read as getopt reaches them (with a leading '+': stop at the first non-option),
so the first bad one is the one reported, as in Postfix. How each flag is read comes from the
option table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .config import SinkConfig
from .errors import ConfigError, UsageError
from .options import BY_FLAG, COUNT, DELAY, UNION
from .values import Delay, atoi


@dataclass(frozen=True)
class Invocation:
    """A parsed smtp-sink command line."""

    config: SinkConfig
    address: str
    backlog: int


def _getopt(argv: Sequence[str], rest: list[str]) -> Iterator[tuple[str, str]]:
    """POSIX getopt with a leading '+': yields (letter, argument); what follows the options
    is left in ``rest``."""
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
                yield ch, value
                break
            yield ch, ""
            j += 1
        i += 1
    rest.extend(argv[i:])


def parse_argv(argv: Sequence[str]) -> Invocation:
    """Parse ``[options] ADDRESS BACKLOG`` (argv without the program name)."""
    kw: dict[str, Any] = {}
    commands: dict[str, set[str]] = {}
    delays: dict[str, Delay] = {}
    verbose = 0
    args: list[str] = []
    for letter, text in _getopt(argv, args):
        option = BY_FLAG[letter]
        value: Any = option.switch if option.parse is None else option.parse(text, f"-{letter}")
        if option.merge == UNION:
            commands.setdefault(option.name, set()).update(value)
        elif option.merge == COUNT:
            verbose += 1
        elif option.merge == DELAY:
            name, delay = value
            delays[name] = delay
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
    kw["delays"] = delays
    kw["verbose"] = verbose
    if kw.get("dump_template") is not None and kw.get("dump_file_template") is not None:
        raise ConfigError("use only one of -d or -D, but not both", option="-d")
    for name, flag in (("dump_template", "-d"), ("dump_file_template", "-D")):
        if kw.get(name) == "":
            raise ConfigError("empty dump template", option=flag)
    return Invocation(SinkConfig(**kw), address, backlog)
