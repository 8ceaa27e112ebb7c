"""Listening sockets: inet (IPv4 and IPv6 on one port) and unix, on every platform.

The sockets are plain non-blocking ones (the accept loop waits with trio's
``wait_readable``). A port already in use is an error on every platform: POSIX gets
``SO_REUSEADDR`` (so that TIME_WAIT does not block a restart), Windows
``SO_EXCLUSIVEADDRUSE`` (its SO_REUSEADDR would let two servers share a port).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket as stdsocket
import stat
import sys
from collections.abc import Callable

from ..core.config import SinkConfig
from ..core.endpoint import Endpoint, ListenError

_INT_MAX = 2**31 - 1  # listen() backlog and socket buffer sizes are C ints
_EPHEMERAL_RETRIES = 10  # ":0" on both families: another port when the v6 twin is taken

Address = tuple[str, int] | str  # (host, port), or a unix socket path


class _TryAnotherPort(Exception):
    """The ephemeral port of the first family is taken on the second one."""


def unix_family() -> int | None:
    """AF_UNIX where the platform has it (looked up, not assumed)."""
    family = getattr(stdsocket, "AF_UNIX", None)
    return int(family) if family is not None else None


def _exclusive_bind(sock: stdsocket.socket) -> None:
    exclusive = getattr(stdsocket, "SO_EXCLUSIVEADDRUSE", None)
    if exclusive is not None:  # Windows
        sock.setsockopt(stdsocket.SOL_SOCKET, exclusive, 1)
    else:
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)


class Listeners:
    """The listening sockets of one server run; ``close()`` also removes our unix socket."""

    def __init__(self, endpoint: Endpoint, backlog: int) -> None:
        self.endpoint = endpoint
        self.backlog = min(backlog, _INT_MAX)
        self.sockets: list[stdsocket.socket] = []
        self.addresses: list[Address] = []
        self._unix_inode: tuple[int, int] | None = None  # our socket file, to remove

    def open(self, config: SinkConfig, log: Callable[[str, str], None]) -> None:
        """Bind and listen (blocking: a name is looked up at once, as Postfix does)."""
        ep = self.endpoint
        if ep.kind == "unix":
            self._open_unix(ep.host)
        else:
            self._open_inet(ep.host, ep.port, config, log)
        for sock in self.sockets:
            sock.setblocking(False)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self._remove_unix_socket()

    # ------------------------------------------------------------------------ unix

    def _open_unix(self, path: str) -> None:
        family = unix_family()
        if family is None:
            raise ListenError(f"unix:{path}: unix-domain sockets are not supported here")
        # sun_path holds 108 octets with its NUL on Linux, 104 on the BSDs and macOS:
        # refused before anything at that path is touched, as Postfix does.
        limit = 108 if sys.platform.startswith("linux") else 104
        if len(os.fsencode(path)) >= limit:
            raise ListenError(f"unix-domain name too long: {path}")
        sock = stdsocket.socket(family, stdsocket.SOCK_STREAM)
        step = f"remove {path}"
        try:
            try:
                # Postfix removes whatever is there; we spare directories.
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    os.unlink(path)
            except FileNotFoundError:
                pass
            step = f"bind: {path}"
            sock.bind(path)
            step = f"chmod socket {path}"
            os.chmod(path, 0o666)
            step = "listen"
            sock.listen(self.backlog)
            step = f"stat {path}"
            st = os.stat(path)
        except OSError as exc:
            sock.close()
            # Postfix's texts: "bind: PATH: ...", "chmod socket PATH: ...", "listen: ..."
            raise ListenError(f"{step}: {exc.strerror or exc}") from exc
        self._unix_inode = (st.st_dev, st.st_ino)
        self.sockets.append(sock)
        self.addresses.append(path)

    def _remove_unix_socket(self) -> None:
        """Remove our socket file, unless somebody has replaced it meanwhile."""
        if self._unix_inode is None:
            return
        path = self.endpoint.host
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == self._unix_inode:
                os.unlink(path)
        self._unix_inode = None

    # ------------------------------------------------------------------------ inet

    def _open_inet(
        self, host: str, port: str, config: SinkConfig, log: Callable[[str, str], None]
    ) -> None:
        family = {"inet": stdsocket.AF_UNSPEC, "inet4": stdsocket.AF_INET,
                  "inet6": stdsocket.AF_INET6}[config.family]  # fmt: skip
        try:
            infos = stdsocket.getaddrinfo(
                host or None, port, family, stdsocket.SOCK_STREAM, 0, stdsocket.AI_PASSIVE
            )
        except (stdsocket.gaierror, UnicodeError, OverflowError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise self.endpoint.error(reason) from exc
        # The first address of each enabled family (Postfix binds only the very first; we
        # bind IPv4 and IPv6 both, as the man page promises).
        chosen: dict[int, tuple[str, int]] = {}
        for info in infos:
            fam, sockaddr = int(info[0]), info[4]
            if fam in (stdsocket.AF_INET, stdsocket.AF_INET6) and fam not in chosen:
                chosen[fam] = (str(sockaddr[0]), int(sockaddr[1]))
        if not chosen:
            raise self.endpoint.error("no usable address")
        for attempt in range(_EPHEMERAL_RETRIES):
            socks: list[stdsocket.socket] = []
            bound_port: int | None = None
            try:
                for fam, (addr, want_port) in chosen.items():
                    use_port = want_port
                    if bound_port is not None and want_port == 0:
                        use_port = bound_port  # the same ephemeral port for both families
                    try:
                        sock = self._bind_inet(fam, addr, use_port, config, log)
                    except OSError as exc:
                        if len(chosen) > 1 and exc.errno in (
                            errno.EADDRNOTAVAIL,
                            errno.EAFNOSUPPORT,
                        ):
                            continue  # e.g. no IPv6 on this host: serve the other family alone
                        if (
                            exc.errno == errno.EADDRINUSE
                            and use_port != want_port
                            and attempt + 1 < _EPHEMERAL_RETRIES
                        ):
                            raise _TryAnotherPort from None
                        raise ListenError(
                            f"bind {addr} port {use_port}: {exc.strerror or exc}"
                        ) from exc
                    socks.append(sock)
                    bound_port = int(sock.getsockname()[1])
            except _TryAnotherPort:
                for s in socks:
                    s.close()
                continue
            except BaseException:
                for s in socks:
                    s.close()
                raise
            if not socks:
                raise ListenError(f"cannot bind {host}:{port}")
            for sock in socks:
                name = sock.getsockname()
                self.addresses.append((str(name[0]), int(name[1])))
            self.sockets.extend(socks)
            return
        raise ListenError(f"cannot bind {host}:{port}")  # pragma: no cover

    def _bind_inet(
        self, fam: int, addr: str, port: int, config: SinkConfig, log: Callable[[str, str], None]
    ) -> stdsocket.socket:
        """A listening TCP socket; OSError (EADDRINUSE and the like) when it cannot be had."""
        sock = stdsocket.socket(fam, stdsocket.SOCK_STREAM)
        try:
            _exclusive_bind(sock)
            if fam == stdsocket.AF_INET6:
                sock.setsockopt(stdsocket.IPPROTO_IPV6, stdsocket.IPV6_V6ONLY, 1)
            with contextlib.suppress(OSError):  # Linux: accepted connections inherit it
                sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
            window = config.tcp_window
            if window:
                for opt in (stdsocket.SO_SNDBUF, stdsocket.SO_RCVBUF):
                    sock.setsockopt(stdsocket.SOL_SOCKET, opt, min(window, _INT_MAX))
            if config.verbose:
                log("info", f"trying... [{addr}]:{port}")
            sock.bind((addr, port))
            sock.listen(self.backlog)
        except BaseException:
            sock.close()
            raise
        return sock
