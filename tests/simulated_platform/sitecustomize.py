"""Simulate macOS / Windows on Linux, for the ``simulated`` tox env.

On ``PYTHONPATH``, Python imports this at start-up, in every process of the run (the CLI
tests' subprocesses and pytester's included). It takes away what Linux has and those
platforms lack, so that code which assumes Linux fails here as it would there:

- ``select.epoll`` and ``select.poll`` (Windows has neither; the selectors module falls back
  to ``select()``, which has no descriptor of its own to wait for);
- the modules ``pwd``, ``grp``, ``syslog``, ``fcntl`` (import fails, find_spec is None);
- ``socket.AF_UNIX`` (and trio.socket's copy) and ``socket.MSG_DONTWAIT``;
- ``os.geteuid`` and the other user/group switches, and ``os.chroot``;
- ``time.tzset``;
- ``os.dup`` of a socket descriptor (on Windows a SOCKET is not a C file descriptor).

trio keeps working: it is imported first and keeps private references to what it needs
(its epoll I/O manager, its wake-up socketpair). ``SMTP_SINK_SIMULATED_PLATFORM`` is set so
that tests can tell (``sys.platform`` stays "linux": trio would pick a Windows backend).
"""

from __future__ import annotations

import os
import stat
import sys
import types

os.environ["SMTP_SINK_SIMULATED_PLATFORM"] = "1"

import select
import socket

_real_select = types.ModuleType("select")
_real_select.__dict__.update(select.__dict__)
_real_socketpair = socket.socketpair
_AF_UNIX = socket.AF_UNIX

try:
    import trio
except ImportError:  # an env without trio: nothing to keep working
    trio = None  # type: ignore[assignment]
if trio is not None:
    import trio._core._io_epoll as _io_epoll
    import trio._socket as _trio_socket

    _io_epoll.select = _real_select  # type: ignore[attr-defined]
    _trio_socket.select = _real_select  # type: ignore[attr-defined]
    if hasattr(trio.socket, "AF_UNIX"):
        del trio.socket.AF_UNIX

# select: no epoll, no poll; selectors falls back to select()
for name in ("epoll", "poll", "EPOLLIN", "EPOLLOUT", "POLLIN", "POLLOUT"):
    if hasattr(select, name):
        delattr(select, name)
import selectors  # noqa: E402

for name in ("EpollSelector", "PollSelector", "DevpollSelector", "KqueueSelector"):
    if hasattr(selectors, name):
        delattr(selectors, name)
selectors.DefaultSelector = selectors.SelectSelector  # type: ignore[misc,assignment]


# POSIX-only modules: importing them fails and find_spec() finds nothing, as on Windows
for name in ("pwd", "grp", "syslog", "fcntl"):
    sys.modules[name] = None  # type: ignore[assignment]

# socket: no AF_UNIX, no MSG_DONTWAIT; socketpair() still works (Windows has one, over
# loopback TCP)
del socket.AF_UNIX
del socket.MSG_DONTWAIT


def _socketpair(
    family: int | None = None, type: int = socket.SOCK_STREAM, proto: int = 0
) -> tuple[socket.socket, socket.socket]:
    return _real_socketpair(_AF_UNIX if family is None else family, type, proto)


socket.socketpair = _socketpair

# os: no user switching, no chroot; os.dup refuses sockets
for name in ("geteuid", "getegid", "seteuid", "setegid", "setuid", "setgid", "setgroups",
             "getgrouplist", "initgroups", "chroot"):  # fmt: skip
    if hasattr(os, name):
        delattr(os, name)
_real_dup = os.dup


def _dup(fd: int) -> int:
    if stat.S_ISSOCK(os.fstat(fd).st_mode):
        raise OSError(9, "Bad file descriptor (a socket is not a C file descriptor here)")
    return _real_dup(fd)


os.dup = _dup

# time: no tzset
import time  # noqa: E402

if hasattr(time, "tzset"):
    del time.tzset
