"""pytest-smtp-sink: Postfix smtp-sink(1) on trio, and a pytest plugin around it.

The public names are imported on first use, so that importing the package (the pytest
plugin does at every run) costs nothing until a sink is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.argv import parse_argv
    from .core.config import SinkConfig, from_options
    from .core.endpoint import ListenError
    from .core.errors import ConfigError
    from .core.protocol import SinkProtocol
    from .core.rules import Rule
    from .dump.reader import DumpFormatError, parse_dump
    from .dump.transaction import Attachment, Transaction
    from .plugin.handle import SmtpSink, SmtpSinkFactory, open_sink
    from .plugin.options import SinkOptions, mark
    from .server.server import SinkServer

# public name -> the module that defines it
_LOCATIONS = {
    "Attachment": ".dump.transaction",
    "ConfigError": ".core.errors",
    "DumpFormatError": ".dump.reader",
    "ListenError": ".core.endpoint",
    "Rule": ".core.rules",
    "SinkConfig": ".core.config",
    "SinkProtocol": ".core.protocol",
    "SinkServer": ".server.server",
    "SinkOptions": ".plugin.options",
    "SmtpSink": ".plugin.handle",
    "SmtpSinkFactory": ".plugin.handle",
    "Transaction": ".dump.transaction",
    "from_options": ".core.config",
    "mark": ".plugin.options",
    "open_sink": ".plugin.handle",
    "parse_argv": ".core.argv",
    "parse_dump": ".dump.reader",
}

__all__ = [
    "Attachment",
    "ConfigError",
    "DumpFormatError",
    "ListenError",
    "Rule",
    "SinkConfig",
    "SinkOptions",
    "SinkProtocol",
    "SinkServer",
    "SmtpSink",
    "SmtpSinkFactory",
    "Transaction",
    "from_options",
    "mark",
    "open_sink",
    "parse_argv",
    "parse_dump",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return [*globals(), *__all__]
