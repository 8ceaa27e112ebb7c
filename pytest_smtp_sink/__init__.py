"""pytest-smtp-sink: Postfix smtp-sink(1) on trio, and a pytest plugin around it."""

from .core.argv import parse_argv
from .core.config import SinkConfig, from_options
from .core.errors import ConfigError
from .core.protocol import SinkProtocol
from .dump.reader import DumpFormatError, parse_dump
from .dump.transaction import Transaction
from .plugin.handle import SmtpSink, open_sink
from .server.server import ListenError, SinkServer

__all__ = [
    "ConfigError",
    "DumpFormatError",
    "ListenError",
    "SinkConfig",
    "SinkProtocol",
    "SinkServer",
    "SmtpSink",
    "Transaction",
    "from_options",
    "open_sink",
    "parse_argv",
    "parse_dump",
]
__version__ = "0.1.0"
