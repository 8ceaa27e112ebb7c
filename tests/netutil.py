"""Small network helpers shared by the test modules."""

from __future__ import annotations

import socket


def ipv6_loopback_available() -> bool:
    """Whether this host can bind [::1] (containers often have no IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
