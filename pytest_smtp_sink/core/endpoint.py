"""Listen addresses: ``host:port``, ``[::1]:port``, ``[ipv6:::1]:port``, ``inet:...``,
``unix:/path``, parsed without touching the network (so that options can be checked early)
with Postfix's ``host_port()`` rules and error texts (``ADDRESS: missing service
information``)."""

from __future__ import annotations

import string
from dataclasses import dataclass, field


class ListenError(OSError):
    """A listener could not be set up; ``str()`` is a one-line explanation (the command
    line's, as Postfix words it), ``explained()`` the same with a hint where that is cryptic."""

    hint = ""

    def explained(self) -> str:
        return f"{self} ({self.hint})" if self.hint else str(self)


@dataclass(frozen=True)
class Endpoint:
    """A parsed listen address."""

    kind: str  # "inet" or "unix"
    host: str  # inet: host or "" for any; unix: the path
    port: str  # inet: port or service name
    #: the address as given (after ``inet:``): what Postfix's messages start with
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, address: str) -> Endpoint:
        if address.startswith("unix:"):
            path = address[5:]
            if not path:
                # What Postfix prints: Linux binds "" to an automatic abstract name, and
                # the chmod() of "" that follows fails.
                error = ListenError("chmod socket : No such file or directory")
                error.hint = "unix: needs a socket path"
                raise error
            return cls("unix", path, "", address)
        text = address[5:] if address.startswith("inet:") else address
        host, port = _host_port(text)
        return cls("inet", host, port, text)

    def error(self, reason: object) -> ListenError:
        """``ADDRESS: reason``, as Postfix reports a lookup failure."""
        return ListenError(f"{self.text or self.host + ':' + self.port}: {reason}")


def _host_port(text: str) -> tuple[str, str]:
    """Postfix's ``host_port()`` with an empty default host and no default service:
    ``[host]:port``, ``[ipv6:addr]:port``, ``host:port`` (split at the last colon), ``port``."""
    bracketed = text.startswith("[")
    if bracketed:
        rest = text[1:]
        ipv6 = rest[:5].lower() == "ipv6:"
        if ipv6:
            rest = rest[5:]
        host, sep, after = rest.partition("]")
        if not sep:
            raise ListenError(f'{text}: missing "]"')
        if after and not after.startswith(":"):
            raise ListenError(f'{text}: garbage after "]"')
        if ipv6 and not _valid_ipv6(host):
            raise ListenError(f"{text}: malformed IPv6 address")
        port = after[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = "", text
    if not port:
        raise ListenError(f"{text}: missing service information")
    # An empty host outside brackets is "any address"; "[]" is checked like any name.
    if (host or bracketed) and not (_valid_hostname(host) or _valid_hostaddr(host)):
        raise ListenError(f"{text}: valid hostname or network address required")
    if port[0] in "0123456789" and not all(c in "0123456789" for c in port):
        raise ListenError(f"{text}: garbage after numerical service")
    return host, port


_LABEL_CHARS = frozenset(string.ascii_letters + string.digits + "_-")


def _valid_hostname(name: str) -> bool:
    """Postfix's ``valid_hostname()``: labels of letters, digits, '_' and inner hyphens,
    at most 63 long, 255 in all, not all-numeric (that is an address, checked apart)."""
    if not name or len(name) > 255:
        return False
    numeric = True
    for label in name.split("."):
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
            return False
        for ch in label:
            if ch not in _LABEL_CHARS:
                return False
            if not ch.isdigit():
                numeric = False
    return not numeric


def _valid_hostaddr(addr: str) -> bool:
    return _valid_ipv6(addr) if ":" in addr else _valid_ipv4(addr)


def _valid_ipv4(addr: str) -> bool:
    """Postfix's ``valid_ipv4_hostaddr()``: four decimal octets (leading zeros allowed),
    the first non-zero unless the whole address is zeros."""
    parts = addr.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not (part.isascii() and part.isdigit()) or int(part) > 255:
            return False
    return not (int(parts[0]) == 0 and addr.strip("0."))


_HEX = frozenset("0123456789abcdefABCDEF")


def _valid_ipv6(addr: str) -> bool:
    """Postfix's ``valid_ipv6_hostaddr()``: up to eight hex fields of up to four digits,
    one ``::`` at most, an IPv4 tail after the second to sixth colon. Looser than
    inet_pton (``1:2:3`` passes, and then fails to resolve), as in Postfix."""
    fields = null_field = length = 0
    i, n = 0, len(addr)
    while True:
        ch = addr[i] if i < n else ""
        if ch == "":
            if fields < 2:
                return False
            return not (length == 0 and null_field != fields - 1)
        if ch == ".":
            if fields < 2 or fields > 6:
                return False
            return _valid_ipv4(addr[i - length :])
        if ch == ":":
            if fields == 0 and length == 0 and addr[i + 1 : i + 2].isalnum():
                return False  # a lone leading colon
            fields += 1
            if fields > 7:
                return False
            i += 1
            length = 0
            if addr[i : i + 1] == ":":
                if null_field > 0:
                    return False  # a second "::"
                null_field = fields
            continue
        length = 0
        while i + length < n and addr[i + length] in _HEX:
            length += 1
        if length == 0 or length > 4:
            return False
        i += length
