"""The smtp-sink command line, run as a subprocess (``python -m`` and the console script).

On Linux a started server is waited for by polling /proc/net/tcp{,6} for a LISTEN socket that
belongs to the process (matched by socket inode), so port 0 can be used and nothing connects
early. Elsewhere (and in the simulated macOS/Windows env) the test picks a free port and
waits until a connection to it succeeds: that probe is a session of its own, so the tests
of exact counters are Linux-only.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import support
from support import needs_linux

LIMIT = 15.0  # seconds for anything one step may take

PYTHON_M = [sys.executable, "-m", "pytest_smtp_sink"]


def _console_script() -> str | None:
    beside = Path(sys.executable).with_name("smtp-sink")
    if beside.exists():
        return str(beside)
    return shutil.which("smtp-sink")


CONSOLE_SCRIPT = _console_script()
IS_ROOT = support.IS_ROOT
CAN_SWITCH_USER = importlib.util.find_spec("pwd") is not None and hasattr(os, "setuid")
HAVE_SYSLOG = importlib.util.find_spec("syslog") is not None
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (-u, -R, ports below 1024)")
# As root, smtp-sink insists on -u (as Postfix's does).
AS_USER = ["-u", "nobody"] if IS_ROOT else []


def _postfix_bin() -> Path | None:
    for d in (os.environ.get("SMTP_SINK_POSTFIX_BIN"), "/work/postfix/bin"):
        if d and (Path(d) / "smtp-source").exists():
            return Path(d)
    return None


class Proc:
    """A server subprocess; its output goes to files (a full pipe would block the server)."""

    def __init__(self, argv: list[str], cwd: str, ports: list[int]) -> None:
        self.ports = ports  # chosen by the test (not on Linux, where port 0 is used)
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err, cwd=cwd
        )
        self.stdout = b""
        self.stderr = b""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def finish(self, timeout: float = LIMIT) -> int:
        rc = self.popen.wait(timeout=timeout)
        self.close()
        return rc

    def close(self) -> None:
        if self._out.closed:
            return
        for f in (self._out, self._err):
            f.seek(0)
        self.stdout, self.stderr = self._out.read(), self._err.read()
        self._out.close()
        self._err.close()

    def signal_and_finish(self, signum: int) -> int:
        self.popen.send_signal(signum)
        return self.finish()


@pytest.fixture
def run_sink() -> Iterator[Callable[..., Proc]]:
    """``run_sink(args, launcher)`` starts a server; all are killed at teardown."""
    procs: list[Proc] = []

    def start(args: list[str], launcher: list[str] | None = None, cwd: str = "/") -> Proc:
        ports: list[int] = []
        if not support.ON_LINUX:
            args, ports = _fixed_ports(args)
        proc = Proc([*(launcher or PYTHON_M), *args], cwd, ports)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.kill()
        proc.popen.wait()
        proc.close()


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _listen_entries() -> list[tuple[str, int, str]]:
    """(host hex, port, inode) of every LISTEN TCP socket."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            host, port = fields[1].split(":")
            out.append((host, int(port, 16), fields[9]))
    return out


def _fixed_ports(args: list[str]) -> tuple[list[str], list[int]]:
    """``127.0.0.1:0`` and the like in ``args`` replaced by free ports (where /proc is not
    there to tell which port the server got)."""
    out, ports = [], []
    for arg in args:
        if re.fullmatch(r"(?:inet:)?(?:127\.0\.0\.1|\[::1\]|)?:0", arg):
            ports.append(support.free_port())
            arg = f"{arg[:-1]}{ports[-1]}"
        out.append(arg)
    return out, ports


def _wait_by_connecting(proc: Proc) -> list[int]:
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            proc.finish()
            raise AssertionError(f"server exited {proc.popen.returncode}: {proc.stderr!r}")
        try:
            for port in proc.ports:
                socket.create_connection(("127.0.0.1", port), timeout=LIMIT).close()
        except ConnectionRefusedError:
            time.sleep(0.01)  # polling for the listener, not waiting for a guessed time
            continue
        return list(proc.ports)
    raise AssertionError("server did not start listening")


def wait_listening(proc: Proc, count: int = 1) -> list[int]:
    """The ports ``proc`` listens on, once it listens on ``count`` TCP sockets."""
    if not support.ON_LINUX:
        return _wait_by_connecting(proc)
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            proc.finish()
            raise AssertionError(f"server exited {proc.popen.returncode}: {proc.stderr!r}")
        mine = _socket_inodes(proc.pid)
        ports = [port for _host, port, inode in _listen_entries() if inode in mine]
        if len(ports) >= count:
            return ports
        time.sleep(0.01)  # polling /proc, not waiting for a guessed time
    raise AssertionError("server did not start listening")


def port_is_listening(port: int) -> bool:
    return any(p == port for _h, p, _i in _listen_entries())


def send_mail(port: int, host: str = "127.0.0.1") -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(host, port, timeout=LIMIT) as smtp:
        return smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: test\r\n\r\nhello\r\n")


def assert_clean_exit(proc: Proc, rc: int) -> None:
    assert rc == 0, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert proc.stderr == b""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that the ``nobody`` user can write (tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="smtp-sink-cli-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


LAUNCHERS = [pytest.param(PYTHON_M, id="python-m")]
if CONSOLE_SCRIPT is not None:
    LAUNCHERS.append(pytest.param([CONSOLE_SCRIPT], id="console-script"))


# ---------------------------------------------------------------------------- serving


@needs_linux  # exact counters: no probe connection
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_accepts_mail_and_prints_counters(
    run_sink: Callable[..., Proc], launcher: list[str]
) -> None:
    proc = run_sink([*AS_USER, "-c", "127.0.0.1:0", "100"], launcher)
    [port] = wait_listening(proc)
    assert send_mail(port) == {}
    rc = proc.signal_and_finish(signal.SIGTERM)
    assert_clean_exit(proc, rc)
    assert proc.stdout == b"sess=0 quit=0 mesg=1\rsess=1 quit=1 mesg=1\r"


@needs_root
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_root_needs_u(run_sink: Callable[..., Proc], launcher: list[str]) -> None:
    proc = run_sink(["127.0.0.1:0", "10"], launcher)
    assert proc.finish() == 1
    assert proc.stderr == b"smtp-sink: fatal: -u option is required if running as root\n"


@needs_root
@needs_linux  # /proc/PID/status
def test_u_drops_privileges_after_binding_a_low_port(
    run_sink: Callable[..., Proc], shared_dir: Path
) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    taken = {p for _h, p, _i in _listen_entries()}
    low = next(p for p in range(1023, 600, -1) if p not in taken)
    proc = run_sink(["-u", "nobody", "-d", f"{shared_dir}/dumps/msg.", f"127.0.0.1:{low}", "10"])
    assert wait_listening(proc) == [low]
    assert send_mail(low) == {}
    [dump] = (shared_dir / "dumps").iterdir()
    st = dump.stat()
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(st.st_mode) & 0o644 == 0o644
    assert (shared_dir / "dumps").stat().st_uid == nobody.pw_uid
    status = Path(f"/proc/{proc.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
    groups_line = next(line for line in status.splitlines() if line.startswith("Groups:"))
    assert "0" not in groups_line.split()[1:]
    assert_clean_exit(proc, proc.signal_and_finish(signal.SIGTERM))


# As root with -u nobody: Python's files out of nobody's reach (a Python under /root).
needs_private_python = pytest.mark.skipif(
    importlib.util.find_spec("pwd") is None
    or __import__("pytest_smtp_sink.cli").cli.imports_reachable("nobody") is not None,
    reason="Python's files are readable by nobody here",
)


def test_readable_by_follows_the_mode_bits_of_the_path_and_above(shared_dir: Path) -> None:
    from pytest_smtp_sink.cli import readable_by

    other, group = 60001, 60002  # neither owns shared_dir
    if not readable_by(str(shared_dir), other, [group]):
        pytest.skip("the temporary directory is private here")
    tmp_path = shared_dir
    folder = tmp_path / "lib"
    (folder / "pkg").mkdir(parents=True)
    module = folder / "pkg" / "mod.py"
    module.write_text("")
    for path in (tmp_path, folder, folder / "pkg"):
        path.chmod(0o755)
    module.chmod(0o644)
    assert readable_by(str(module), other, [group])
    assert readable_by(str(folder / "pkg"), other, [group])
    module.chmod(0o600)
    assert not readable_by(str(module), other, [group])
    module.chmod(0o644)
    folder.chmod(0o700)  # a private folder above: nothing below is reachable
    assert not readable_by(str(module), other, [group])
    assert readable_by(str(module), 0, [])  # (root)
    folder.chmod(0o711)  # searchable, not listable: the file is reachable, the folder not
    assert readable_by(str(module), other, [group])
    assert not readable_by(str(folder), other, [group])
    assert not readable_by(str(tmp_path / "missing"), other, [group])


def test_load_trio_wants_the_trio_seen_before_the_switch() -> None:
    import trio

    from pytest_smtp_sink.cli import Fatal, load_trio

    load_trio(None)  # (nothing to do: imported before the switch, or no switch)
    load_trio(os.path.realpath(trio.__file__))
    with pytest.raises(Fatal, match=r"cannot load trio: .* is not /elsewhere/trio/__init__\.py"):
        load_trio("/elsewhere/trio/__init__.py")


@needs_root
@needs_private_python
def test_u_loads_trio_first_when_the_user_could_not(run_sink: Callable[..., Proc]) -> None:
    """As root with -u, trio is imported before the switch when the other user could not
    read Python's files (here: a Python under /root); the sink serves as usual."""
    proc = run_sink(["-u", "nobody", "127.0.0.1:0", "10"])
    [port] = wait_listening(proc)
    assert send_mail(port) == {}
    assert_clean_exit(proc, proc.signal_and_finish(signal.SIGTERM))


@needs_root
@needs_private_python
def test_trio_out_of_reach_after_u_is_one_fatal_line(run_sink: Callable[..., Proc]) -> None:
    """Were the check wrong (ACLs, say), the late import fails with a fatal line, not a
    traceback: forced here by telling the sink that nobody can read Python's files (they
    are not readable by nobody here)."""
    code = (
        "import sys; import pytest_smtp_sink.cli as c; "
        "c.imports_reachable = lambda u: '/trio/__init__.py'; "
        "sys.argv[0] = 'smtp-sink'; sys.exit(c.main())"
    )
    proc = run_sink(["-u", "nobody", "127.0.0.1:0", "10"], [sys.executable, "-c", code])
    assert proc.finish() == 1
    assert proc.stderr.startswith(b"smtp-sink: fatal: cannot load trio: "), proc.stderr
    assert b"Traceback" not in proc.stderr


@needs_root
@needs_linux  # /proc/PID/root
def test_R_chroots(run_sink: Callable[..., Proc], shared_dir: Path) -> None:
    (shared_dir / "dumps").mkdir(mode=0o777)
    (shared_dir / "dumps").chmod(0o777)
    proc = run_sink(
        ["-u", "nobody", "-R", str(shared_dir), "-d", "/dumps/msg.", "127.0.0.1:0", "10"]
    )
    [port] = wait_listening(proc)
    assert os.readlink(f"/proc/{proc.pid}/root") == str(shared_dir)
    assert send_mail(port) == {}
    [dump] = (shared_dir / "dumps").iterdir()
    assert dump.read_bytes().startswith(b"X-Client-Addr: 127.0.0.1\n")
    assert_clean_exit(proc, proc.signal_and_finish(signal.SIGTERM))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_exit_cleanly(run_sink: Callable[..., Proc], signum: int) -> None:
    proc = run_sink([*AS_USER, "127.0.0.1:0", "10"])
    [port] = wait_listening(proc)
    with socket.create_connection(("127.0.0.1", port), timeout=LIMIT) as client:
        # an open session (mid-transaction) at the time of the signal
        assert client.recv(100) == b"220 smtp-sink ESMTP\r\n"
        client.sendall(b"HELO x\r\nMAIL FROM:<a>\r\n")
        assert client.recv(100) == b"250 smtp-sink\r\n250 2.1.0 Ok\r\n"
        rc = proc.signal_and_finish(signum)
        assert client.recv(100) == b""
    assert_clean_exit(proc, rc)


@support.needs_unix_sockets
def test_unix_socket_removed_at_exit(run_sink: Callable[..., Proc], shared_dir: Path) -> None:
    path = shared_dir / "sink.sock"
    proc = run_sink([*AS_USER, f"unix:{path}", "10"])
    deadline = time.monotonic() + LIMIT
    while not path.exists():  # polling the file system for the socket
        assert proc.popen.poll() is None, proc.finish() or proc.stderr
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(LIMIT)
        while True:  # the file exists from bind(); connections are taken from listen()
            try:
                client.connect(str(path))
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        assert client.recv(100) == b"220 smtp-sink ESMTP\r\n"
    assert_clean_exit(proc, proc.signal_and_finish(signal.SIGTERM))
    assert not path.exists()


@needs_linux  # exact counters: no probe connection
def test_M_exits_after_replying(run_sink: Callable[..., Proc]) -> None:
    proc = run_sink([*AS_USER, "-c", "-M", "1", "127.0.0.1:0", "10"])
    [port] = wait_listening(proc)
    with socket.create_connection(("127.0.0.1", port), timeout=LIMIT) as client:
        f = client.makefile("rb")
        assert f.readline() == b"220 smtp-sink ESMTP\r\n"
        client.sendall(b"HELO x\r\nMAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n")
        for _ in range(4):
            f.readline()
        client.sendall(b"Subject: x\r\n\r\nhi\r\n.\r\n")
        assert f.readline() == b"250 2.0.0 Ok\r\n"  # Postfix sends no reply here (Q2)
        assert f.readline() == b""
    assert proc.finish() == 0
    assert proc.stderr == b""
    assert proc.stdout == b"sess=0 quit=0 mesg=1\r"


def test_n_exits_after_quit_sessions(run_sink: Callable[..., Proc]) -> None:
    proc = run_sink([*AS_USER, "-n", "2", "127.0.0.1:0", "10"])
    [port] = wait_listening(proc)
    for _ in range(2):
        with smtplib.SMTP("127.0.0.1", port, timeout=LIMIT) as smtp:
            smtp.noop()
    assert proc.finish() == 0
    assert proc.stderr == b""


@pytest.mark.skipif(not HAVE_SYSLOG, reason="no syslog module here")
def test_s_works_without_syslog(run_sink: Callable[..., Proc]) -> None:
    proc = run_sink(
        [*AS_USER, "-s", "connect,helo,ehlo,mail,rcpt,data,.,quit", "127.0.0.1:0", "10"]
    )
    [port] = wait_listening(proc)
    assert send_mail(port) == {}
    assert send_mail(port) == {}
    assert_clean_exit(proc, proc.signal_and_finish(signal.SIGTERM))


def test_verbose_goes_to_stderr(run_sink: Callable[..., Proc]) -> None:
    proc = run_sink([*AS_USER, "-v", "127.0.0.1:0", "10"])
    [port] = wait_listening(proc)
    assert send_mail(port) == {}
    assert proc.signal_and_finish(signal.SIGTERM) == 0
    lines = proc.stderr.decode().splitlines()
    assert lines[0] == "smtp-sink: name_mask: all", lines
    assert re.fullmatch(r"smtp-sink: trying\.\.\. \[127\.0\.0\.1\]:[0-9]+", lines[1]), lines
    assert "smtp-sink: connect (AF_INET 127.0.0.1)" in lines
    assert "smtp-sink: ." in lines
    assert lines[-1] == "smtp-sink: disconnect"
    assert "Traceback" not in proc.stderr.decode()


# ---------------------------------------------------------------------------- errors


def test_port_in_use(run_sink: Callable[..., Proc]) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        proc = run_sink([*AS_USER, f"127.0.0.1:{port}", "10"])
        assert proc.finish() == 1
    assert proc.stderr == (
        f"smtp-sink: fatal: bind 127.0.0.1 port {port}: Address already in use\n".encode()
    )


USAGE_START = "smtp-sink: fatal: usage: smtp-sink [-468acCeEFLpPv]"

BAD_OPTIONS = [
    ([], [USAGE_START]),
    (["127.0.0.1:0"], [USAGE_START]),
    (["127.0.0.1:0", "0"], [USAGE_START]),
    (["-x", "127.0.0.1:0", "10"], ["smtp-sink: invalid option -- 'x'", USAGE_START]),
    (["-t"], ["smtp-sink: option requires an argument -- 't'", USAGE_START]),
    (["-A", "x", ":0", "10"], [USAGE_START]),  # Postfix gives no reason for these
    (["-w", "0", ":0", "10"], [USAGE_START]),
    (["-b", "550 no", ":0", "10"], ["smtp-sink: error: bad soft error reply: 550 no", USAGE_START]),
    (["-t", "0", ":0", "10"], ["smtp-sink: fatal: bad timeout: 0"]),
    (["-m", "0", ":0", "10"], ["smtp-sink: fatal: bad concurrency limit: 0"]),
    (["-M", "-1", ":0", "10"], ["smtp-sink: fatal: bad message quit count: -1"]),
    (["-f", "etrn", ":0", "10"], ["smtp-sink: fatal: unknown command: etrn"]),
    (["-W", "noop", ":0", "10"], ["smtp-sink: fatal: invalid command delay argument: noop"]),
    (["-W", "noop:0", ":0", "10"], ["smtp-sink: fatal: non-positive 'noop' delay"]),
    (
        ["-d", "a", "-D", "b", ":0", "10"],
        ["smtp-sink: fatal: use only one of -d or -D, but not both"],
    ),
    (
        ["-u", "no-such-user-here", "127.0.0.1:0", "10"],
        [
            "smtp-sink: fatal: unknown user: no-such-user-here"
            if CAN_SWITCH_USER
            else "smtp-sink: fatal: -u no-such-user-here: switching to another user is not"
            " supported on this platform"
        ],
    ),
    (["unix:", "10"], ["smtp-sink: fatal: chmod socket : No such file or directory"]),
    (
        ["127.0.0.1:no-such-service", "10"],
        ["smtp-sink: fatal: 127.0.0.1:no-such-service: "],
    ),
    (
        ["no-such-host.invalid:25", "10"],
        ["smtp-sink: fatal: no-such-host.invalid:25: "],
    ),
    (
        ["unix:/no/such/dir/sock", "10"],
        [
            "smtp-sink: fatal: bind: /no/such/dir/sock: No such file or directory"
            if support.HAVE_UNIX_SOCKETS
            else "smtp-sink: fatal: unix:/no/such/dir/sock: unix-domain sockets are not"
            " supported here"
        ],
    ),
    *(
        []
        if hasattr(os, "chroot")
        else [
            (
                ["-R", "/var/empty", "127.0.0.1:0", "10"],
                ["smtp-sink: fatal: -R /var/empty: chroot is not supported on this platform"],
            )
        ]
    ),
    *(
        []
        if HAVE_SYSLOG
        else [
            (
                ["-s", "mail", "127.0.0.1:0", "10"],
                ["smtp-sink: fatal: -s: there is no syslog on this platform"],
            )
        ]
    ),
]


@pytest.mark.parametrize(("args", "expected"), BAD_OPTIONS, ids=lambda v: " ".join(v) or "none")
def test_bad_options(run_sink: Callable[..., Proc], args: list[str], expected: list[str]) -> None:
    if args[:1] != ["-u"]:
        args = [*AS_USER, *args]
    proc = run_sink(args)
    assert proc.finish() == 1
    err = proc.stderr.decode()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == len(expected), err
    for line, want in zip(lines, expected, strict=True):
        if want.endswith(": ") or want == USAGE_START:
            assert line.startswith(want), err
        else:
            assert line == want, err
    assert proc.stdout == b""


@needs_root
def test_R_missing_directory(run_sink: Callable[..., Proc]) -> None:
    proc = run_sink(["-u", "nobody", "-R", "/no/such/root", "127.0.0.1:0", "10"])
    assert proc.finish() == 1
    assert proc.stderr == b"smtp-sink: fatal: chroot(/no/such/root): No such file or directory\n"


# ---------------------------------------------------------------- Postfix smtp-source


@needs_linux  # exact counters: no probe connection
def test_postfix_smtp_source_load(run_sink: Callable[..., Proc]) -> None:
    postfix = _postfix_bin()
    if postfix is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Postfix smtp-source not found")
        pytest.skip("Postfix smtp-source not found")
    proc = run_sink([*AS_USER, "-c", "127.0.0.1:0", "100"])
    [port] = wait_listening(proc)
    source = subprocess.run(
        [str(postfix / "smtp-source"), "-s", "20", "-m", "2000", f"127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=180,
    )
    assert source.returncode == 0, source.stderr
    assert_clean_exit(proc, proc.signal_and_finish(signal.SIGTERM))
    counts = proc.stdout.decode().split("\r")
    assert counts[-1] == ""
    assert "sess=2000 quit=2000 mesg=2000" in counts
    assert max(int(c.rsplit("mesg=", 1)[1]) for c in counts[:-1]) == 2000
