"""Listen addresses: ``host:port``, ``[::1]:port``, ``inet:...``, ``unix:/path`` (parsed
without touching the network, so that options can be checked early)."""

from __future__ import annotations

from dataclasses import dataclass


class ListenError(OSError):
    """A listener could not be set up; ``str()`` is a one-line explanation."""


@dataclass(frozen=True)
class Endpoint:
    """A parsed listen address."""

    kind: str  # "inet" or "unix"
    host: str  # inet: host or "" for any; unix: the path
    port: str  # inet: port or service name

    @classmethod
    def parse(cls, address: str) -> Endpoint:
        if address.startswith("unix:"):
            path = address[5:]
            if not path:
                raise ListenError(f"bad address: {address}")
            return cls("unix", path, "")
        rest = address[5:] if address.startswith("inet:") else address
        host, sep, port = rest.rpartition(":")
        if not sep:
            host, port = "", rest
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not port:
            raise ListenError(f"bad address: {address}: missing port")
        return cls("inet", host, port)
