"""The Postfix-compatible command line: ``smtp-sink [options] ADDRESS BACKLOG``.

POSIX-only modules (``pwd``, ``syslog``) are imported where they are used: on a platform
without them (Windows) ``-u``, ``-R`` and ``-s`` fail with one ``fatal:`` line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from .core.argv import Invocation, parse_argv
from .core.endpoint import ListenError
from .core.errors import ConfigError, UsageError, printable
from .core.options import USAGE
from .server.server import SinkServer, stderr_logger

if TYPE_CHECKING:
    import ssl

    import trio

# trio is imported once the listeners are bound and the selector thread serves them: its
# import is most of the start-up time, and the first client need not wait for it.


class Fatal(Exception):
    """Print ``prog: fatal: <text>`` and exit 1."""


def unsupported_options(inv: Invocation) -> str | None:
    """Why this platform cannot do what the command line asks, if it cannot."""
    cfg = inv.config
    if cfg.user is not None and (
        importlib.util.find_spec("pwd") is None or not hasattr(os, "setuid")
    ):
        return f"-u {cfg.user}: switching to another user is not supported on this platform"
    if cfg.chroot is not None and not hasattr(os, "chroot"):
        return f"-R {cfg.chroot}: chroot is not supported on this platform"
    if cfg.log_commands and importlib.util.find_spec("syslog") is None:
        return "-s: there is no syslog on this platform"
    return None


def readable_by(path: str, uid: int, gids: Sequence[int]) -> bool:
    """Whether user ``uid`` (groups ``gids``) may read ``path``, a file or a directory (and
    list it), going through every directory above it, by the mode bits."""
    path = os.path.realpath(path)  # (the folders a symbolic link goes through count)
    parent = os.path.dirname(path)
    while True:  # the directories above: search (x) permission
        if not _allowed(parent, uid, gids, 0o1):
            return False
        if parent == os.path.dirname(parent):
            break
        parent = os.path.dirname(parent)
    return _allowed(path, uid, gids, 0o5 if os.path.isdir(path) else 0o4)


def _allowed(path: str, uid: int, gids: Sequence[int], want: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    if uid == 0:
        return True
    if st.st_uid == uid:
        bits = st.st_mode >> 6
    elif st.st_gid in gids:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & want == want


def imports_reachable(user: str) -> str | None:
    """Whether Python can still load trio and the rest of what serving imports once it runs
    as ``user``: every directory it imports from (``sys.path``), trio's files and ours are
    readable by that user. Then trio's file (to check that the same one loads), else None:
    what serving needs is imported before the switch (a Python under a private home, say),
    and the first greeting waits for it."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
        gids = os.getgrouplist(entry.pw_name, entry.pw_gid)
        spec = importlib.util.find_spec("trio")
    except (KeyError, OSError, ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    ours = os.path.dirname(os.path.abspath(__file__))
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    paths += [os.path.dirname(spec.origin), spec.origin, ours]
    paths += [os.path.join(ours, "server", name) for name in ("portable.py", "tls.py")]
    if all(readable_by(p, entry.pw_uid, gids) for p in paths):
        return os.path.realpath(spec.origin)
    return None


def load_trio(expected: str | None) -> None:
    """After -u, import what serving needs (``SinkServer.preload``) as the other user: one
    fatal line if that fails (the check was wrong: ACLs, say) or finds another trio than
    the one ``imports_reachable`` saw as root."""
    if expected is None:
        return  # (imported already, or nobody switched)
    try:
        SinkServer.preload()
    except (ImportError, OSError) as exc:
        raise Fatal(f"cannot load trio: {exc}") from exc
    found = getattr(sys.modules.get("trio"), "__file__", None)
    if found is None or os.path.realpath(found) != expected:
        raise Fatal(f"cannot load trio: {found} is not {expected}")


def drop_privileges(
    user: str,
    chroot: str | None,
    give: Sequence[str] = (),
    log: Callable[[str, str], None] | None = None,
) -> None:
    """chroot (-R) and switch to ``user`` (-u), after the listeners are bound (POSIX).
    ``give``: files to hand over to ``user`` first (so that it can clean them up);
    ``log``: where ``-v -v`` says what is done, as Postfix does."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise Fatal(f"unknown user: {user}") from None
    root = os.geteuid() == 0
    if root:
        for path in give:
            os.chown(path, entry.pw_uid, entry.pw_gid)
    if not root and entry.pw_uid != os.geteuid():
        raise Fatal(f"cannot switch to user {user}: not running as root")
    # The group list comes from /etc/group, which a chroot may not have.
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid) if root else []
    if chroot is not None:  # -R '' is tried (and fails) as in Postfix
        try:
            os.chroot(chroot)
            os.chdir("/")
        except OSError as exc:
            raise Fatal(f"chroot({chroot}): {exc.strerror}") from exc
    if root:
        try:
            os.setgroups(groups)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
        except OSError as exc:
            raise Fatal(f"cannot switch to user {user}: {exc.strerror}") from exc
    if log is not None:  # as Postfix: once it is done
        log("info", f"chroot {'(none)' if chroot is None else chroot} user {user}")


def _program_name(argv0: str) -> str:
    name = os.path.basename(argv0)
    return "smtp-sink" if name in ("", "__main__.py", "-c", "-m") else name


def _write_counters(line: str) -> None:
    try:
        sys.stdout.write(line)
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # stdout closed or gone: the counters are a courtesy, not a reason to die


def _syslogger(prog: str) -> Callable[[str], None]:
    import syslog

    syslog.openlog(prog, syslog.LOG_PID, syslog.LOG_MAIL)
    return lambda text: syslog.syslog(syslog.LOG_INFO, text)


def test_certificate(folder: str, log: Callable[[str, str], None]) -> ssl.SSLContext:
    """TLS without --tls-cert: a test CA (trustme) signs a certificate for localhost;
    clients trust the CA file that is logged."""
    from .server.certs import TestCertificates

    certificates = TestCertificates(folder)
    os.chmod(folder, 0o755)  # the CA is for anyone; the key stays ours
    os.chmod(certificates.ca_file, 0o644)
    os.chmod(certificates.cert_file, 0o600)
    log("info", f"TLS with a test certificate: clients trust the CA in {certificates.ca_file}")
    return certificates.server_context()


def prepare(
    inv: Invocation, prog: str, stack: contextlib.ExitStack
) -> tuple[SinkServer, str | None]:
    """The server, bound and serving from its selector thread (no trio yet): the -v lines,
    the test certificate, the listeners, then -u / -R. And trio's file when trio is to be
    imported after -u (``load_trio``)."""
    cfg = inv.config
    log = stderr_logger(prog)
    if cfg.verbose:  # Postfix's first -v line: the address families it will use
        log("info", "name_mask: " + {"inet4": "ipv4", "inet6": "ipv6"}.get(cfg.family, "all"))
    context = None
    made: list[str] = []
    if cfg.tls and cfg.tls_cert is None:
        import tempfile

        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="smtp-sink-tls-"))
        context = test_certificate(folder, log)
        made = [folder, *(os.path.join(folder, name) for name in os.listdir(folder))]
    server = SinkServer(
        cfg,
        inv.address,
        inv.backlog,
        log=log,
        command_log=_syslogger(prog) if cfg.log_commands else None,
        counters_out=_write_counters,
        ssl_context=context,
    )

    def before_serving() -> None:
        if cfg.user is not None:
            drop_privileges(cfg.user, cfg.chroot, give=made, log=log if cfg.verbose > 1 else None)

    late: str | None = None  # trio's file, when it is imported after the switch (-u)
    if cfg.user is not None:
        late = None if cfg.chroot is not None else imports_reachable(cfg.user)
        if late is None:
            # Then trio is imported before the first client is served, not meanwhile: as
            # the other user (or in the chroot) Python would not reach its files. (Before
            # binding: privileges go right after it, as in Postfix.)
            server.preload()
    stack.callback(server.close_early)  # (nothing left to do once run() took over)
    server.start_early(before_serving)
    return server, late


class EarlySignals:
    """SIGINT and SIGTERM before trio's signal receiver opens (clients are served from the
    selector thread before trio is imported): recorded, and the early server told to stop,
    never an exception raised wherever the main thread happens to be (in a thread's start,
    holding a lock). SIGINT too: a background job of a script inherits it ignored, and both
    stop the sink at any time. A second one gives up waiting: KeyboardInterrupt."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.server: SinkServer | None = None

    def install(self, stack: contextlib.ExitStack) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                previous = signal.signal(signum, self._caught)
            except ValueError:  # not the main thread (main() called from a thread)
                return
            stack.callback(signal.signal, signum, previous)

    def _caught(self, signum: int, _frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self.server is not None:
            self.server.stop(signal.Signals(signum).name)  # (only flags and a wake-up)


async def serve(server: SinkServer, early: EarlySignals) -> str | None:
    """Run the server until a signal, -M or -n; returns what stopped it. ``early``: the
    signals caught before trio's receiver opened."""
    import trio

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        if early.signum is not None:
            # it came before the receiver opened: close_early stops the server
            server.stopped_by = signal.Signals(early.signum).name
            return server.stopped_by
        async with trio.open_nursery() as nursery:

            async def run_server(task_status: trio.TaskStatus[object]) -> None:
                await server.run(task_status=task_status)
                nursery.cancel_scope.cancel()  # -M / -n stopped it

            async def watch_signals() -> None:
                async for signum in signals:
                    server.stopped_by = signal.Signals(signum).name
                    nursery.cancel_scope.cancel()
                    return

            await nursery.start(run_server)
            nursery.start_soon(watch_signals)
    return server.stopped_by


def _leaf_errors(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups."""
    inner = getattr(exc, "exceptions", None)
    if inner is None:
        return [exc]
    return [leaf for e in inner for leaf in _leaf_errors(e)]


def _getopt_complaint(err: TextIO, line: str) -> None:
    """getopt's own message, as the C library prints it: the octets as typed."""
    buffer = getattr(err, "buffer", None)
    if buffer is None:
        err.write(line)
    else:
        err.flush()
        buffer.write(line.encode("utf-8", "surrogateescape"))
        buffer.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prog = _program_name(sys.argv[0] if argv is None else "smtp-sink")
    err = sys.stderr

    def fatal(text: str, level: str = "fatal") -> int:
        err.write(f"{prog}: {level}: {printable(text)}\n")
        return 1

    try:
        inv = parse_argv(args)
    except UsageError as exc:
        # Postfix prints getopt's complaint, if any, then only the usage text: no reason
        # for a bad -A, -w or backlog (reference §1.1).
        if str(exc).startswith(("invalid option", "option ", "unrecognized option")):
            _getopt_complaint(err, f"{prog}: {exc}\n")
        return fatal(USAGE.format(prog=prog))
    except ConfigError as exc:
        if exc.usage:
            fatal(str(exc), "error")
            return fatal(USAGE.format(prog=prog))
        return fatal(str(exc))
    geteuid = getattr(os, "geteuid", None)  # POSIX: root must say which user to become
    if geteuid is not None and geteuid() == 0 and inv.config.user is None:
        return fatal("-u option is required if running as root")
    unsupported = unsupported_options(inv)
    if unsupported is not None:
        return fatal(unsupported)
    try:
        with contextlib.ExitStack() as stack:
            early = EarlySignals()
            early.install(stack)
            server, late = prepare(inv, prog, stack)
            early.server = server
            if early.signum is None:
                load_trio(late)
                import trio

                trio.run(serve, server, early)
    except KeyboardInterrupt:
        return 0
    except BaseException as exc:
        leaves = _leaf_errors(exc)
        known = [e for e in leaves if isinstance(e, (Fatal, ListenError))]
        if not known or len(known) != len(leaves):
            raise
        for e in known:
            fatal(str(e))
        return 1
    return 0
