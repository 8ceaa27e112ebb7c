"""pytest-smtp-sink: Postfix smtp-sink(1) on trio, and a pytest plugin around it."""

from .config import ConfigError, SinkConfig, from_options, parse_argv
from .protocol import SinkProtocol
from .server import SinkServer
from .transaction import Transaction

__all__ = [
    "ConfigError",
    "SinkConfig",
    "SinkProtocol",
    "SinkServer",
    "Transaction",
    "from_options",
    "parse_argv",
]
__version__ = "0.1.0"
