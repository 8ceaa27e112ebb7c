"""pytest-smtp-sink: Postfix smtp-sink(1) on trio, and a pytest plugin around it."""

from .config import ConfigError, SinkConfig, from_options, parse_argv
from .dumpreader import DumpFormatError, parse_dump
from .protocol import SinkProtocol
from .server import ListenError, SinkServer
from .sink import SmtpSink, open_sink
from .transaction import Transaction

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
