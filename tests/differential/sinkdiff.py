"""Harness for the differential tests: run the same client dialogue against Postfix's
``smtp-sink`` and against ours, and record everything that can be compared.

Nothing in here knows about pytest; ``conftest.py`` wires it into fixtures and the
``test_differential*.py`` modules hold the tables.

Terms:

* A *side* is one of the two servers: ``"postfix"`` (the reference) or ``"ours"``.
* A *dialogue* is one or more client *sessions* run one after another against the same
  pair of servers. A session is a list of *steps*: send some bytes, then read until a
  given number of complete SMTP replies has arrived (0 = do not read). At the end the
  client either half-closes and reads to EOF (``close="shutdown"``) or just reads to EOF
  and so requires the server to close by itself (``close="wait"``).
* Replies are counted, not lines: a multi-line reply (``250-...`` continuation lines
  ending with a ``250 ...`` line) is one reply, an LMTP end of data answered for three
  recipients is three replies.

Synchronisation is never done with sleeps: servers are ready when their socket shows up
in LISTEN state in ``/proc/net/{tcp,tcp6,unix}``; every read has a deadline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import email.utils
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, TypeVar

from support import free_port, ipv6_loopback_available

REPO_ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

#: seconds to wait for the replies of one step
STEP_TIMEOUT = 5.0
#: seconds to wait for EOF at the end of a session
EOF_TIMEOUT = 10.0
#: seconds to wait for a server to listen
LISTEN_TIMEOUT = 10.0
#: seconds to wait for a server to exit by itself (``-n``) or after SIGTERM
EXIT_TIMEOUT = 10.0
#: seconds to wait for ours to catch up with Postfix's stdout/stderr before stopping it
CATCH_UP_TIMEOUT = 3.0

Family = Literal["inet", "inet6", "unix"]
CloseMode = Literal["shutdown", "wait"]
SideName = Literal["postfix", "ours"]
SIDES: tuple[SideName, SideName] = ("postfix", "ours")

DUMP_PLACEHOLDER = "{dump}"


# --------------------------------------------------------------------------------------
# locating the programs


def find_postfix_sink() -> Path | None:
    """Postfix's smtp-sink: ``$SMTP_SINK_POSTFIX_BIN``, ``<repo>/.postfix/bin``,
    ``/work/postfix/bin``, in that order."""
    dirs: list[Path] = []
    env = os.environ.get("SMTP_SINK_POSTFIX_BIN")
    if env:
        dirs.append(Path(env))
    dirs += [REPO_ROOT / ".postfix" / "bin", Path("/work/postfix/bin")]
    for d in dirs:
        exe = d / "smtp-sink"
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    return None


def ours_is_postfix() -> bool:
    """``SMTP_SINK_DIFF_OURS=postfix`` runs Postfix on both sides (harness self-test)."""
    return os.environ.get("SMTP_SINK_DIFF_OURS", "").strip().lower() == "postfix"


@dataclasses.dataclass(frozen=True)
class Programs:
    postfix: Path

    def command(self, side: SideName) -> list[str]:
        if side == "postfix" or ours_is_postfix():
            return [str(self.postfix)]
        return [sys.executable, "-m", "pytest_smtp_sink"]


def user_options() -> list[str]:
    """``-u nobody`` when running as root (both programs refuse root without it)."""
    return ["-u", "nobody"] if IS_ROOT else []


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TZ"] = "UTC"
    env["LC_ALL"] = "C"
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + pp if pp else "")
    return env


# --------------------------------------------------------------------------------------
# addresses and readiness

@dataclasses.dataclass
class Endpoint:
    family: Family
    port: int = 0
    path: str = ""

    @classmethod
    def new(cls, family: Family, sock_dir: Path | None) -> Endpoint:
        if family == "inet":
            return cls(family, port=free_port())
        if family == "inet6":
            return cls(family, port=free_port(socket.AF_INET6, "::1"))
        assert sock_dir is not None
        return cls(family, path=str(sock_dir / "sink.sock"))

    def argument(self) -> str:
        if self.family == "inet":
            return f"127.0.0.1:{self.port}"
        if self.family == "inet6":
            return f"[::1]:{self.port}"
        return f"unix:{self.path}"

    def connect(self) -> socket.socket:
        if self.family == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(STEP_TIMEOUT)
            try:
                s.connect(self.path)
            except BaseException:
                s.close()
                raise
            return s
        host = "127.0.0.1" if self.family == "inet" else "::1"
        return socket.create_connection((host, self.port), timeout=STEP_TIMEOUT)

    def is_listening(self) -> bool:
        if self.family == "unix":
            return _unix_listening(self.path)
        return _tcp_listening(self.port, v6=self.family == "inet6")


def _read_proc(name: str) -> list[str]:
    try:
        with open(f"/proc/net/{name}", encoding="ascii", errors="replace") as f:
            return f.read().splitlines()[1:]
    except OSError:
        return []


def _tcp_listening(port: int, *, v6: bool) -> bool:
    for line in _read_proc("tcp6" if v6 else "tcp"):
        fields = line.split()
        if len(fields) < 4:
            continue
        _, _, port_hex = fields[1].rpartition(":")
        if fields[3] == "0A" and int(port_hex, 16) == port:
            return True
    return False


_SO_ACCEPTCON = 0x10000


def _unix_listening(path: str) -> bool:
    for line in _read_proc("unix"):
        fields = line.split()
        if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & _SO_ACCEPTCON:
            return True
    return False


# --------------------------------------------------------------------------------------
# server processes


class _Drain(threading.Thread):
    """Collects everything a pipe delivers."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.data = bytearray()
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            with self.lock:
                self.data += chunk

    def snapshot(self) -> bytes:
        with self.lock:
            return bytes(self.data)


class SinkProcess:
    def __init__(self, argv: Sequence[str], *, umask: int = -1) -> None:
        self.argv = list(argv)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=server_env(),
            cwd=str(REPO_ROOT),
            umask=umask,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._out = _Drain(self.proc.stdout.fileno())
        self._err = _Drain(self.proc.stderr.fileno())
        self._out.start()
        self._err.start()

    @property
    def stdout(self) -> bytes:
        return self._out.snapshot()

    @property
    def stderr(self) -> bytes:
        return self._err.snapshot()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int:
        """SIGTERM, then SIGKILL; returns the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(EXIT_TIMEOUT) is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait()
        self._out.join(EXIT_TIMEOUT)
        self._err.join(EXIT_TIMEOUT)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        rc = self.proc.returncode
        assert rc is not None
        return rc


class ServerError(Exception):
    pass


class SinkServer:
    """One side: a smtp-sink process with its endpoint and (optionally) its dump dir."""

    def __init__(
        self,
        side: SideName,
        programs: Programs,
        options: Sequence[str],
        family: Family,
        *,
        needs_dump_dir: bool,
        umask: int | None,
    ) -> None:
        self.side = side
        self._tmp: list[Path] = []
        self.dump_dir: Path | None = None
        if needs_dump_dir:
            self.dump_dir = self._mkdtemp("sinkdiff-dump-")
        sock_dir = self._mkdtemp("sinkdiff-sock-") if family == "unix" else None
        self.endpoint = Endpoint.new(family, sock_dir)
        opts = [o.replace(DUMP_PLACEHOLDER, str(self.dump_dir)) for o in options]
        self.argv = [
            *programs.command(side),
            *user_options(),
            *opts,
            self.endpoint.argument(),
            "10",
        ]
        self.process = SinkProcess(self.argv, umask=-1 if umask is None else umask)
        self.rc: int | None = None

    def _mkdtemp(self, prefix: str) -> Path:
        # Directly under the system temp dir (pytest's tmp_path is not reachable for nobody).
        d = Path(tempfile.mkdtemp(prefix=prefix))
        d.chmod(0o777)
        self._tmp.append(d)
        return d

    def wait_listening(self, deadline: float) -> None:
        while not self.endpoint.is_listening():
            if not self.process.alive():
                self.process.stop()
                raise ServerError(
                    f"{self.side} server exited with status {self.process.proc.returncode} "
                    f"before listening\n  argv: {self.argv}\n"
                    f"  stderr: {self.process.stderr!r}"
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.side} server not listening after {LISTEN_TIMEOUT} s\n"
                    f"  argv: {self.argv}\n  stderr: {self.process.stderr!r}"
                )
            time.sleep(0.005)

    def stop(self) -> int:
        if self.rc is None:
            self.rc = self.process.stop()
        return self.rc

    def cleanup(self) -> None:
        self.stop()
        for d in self._tmp:
            shutil.rmtree(d, ignore_errors=True)


class ServerPair:
    def __init__(
        self,
        programs: Programs,
        options: Sequence[str],
        family: Family,
        *,
        needs_dump_dir: bool = False,
        umask: int | None = None,
    ) -> None:
        self.options = tuple(options)
        self.family = family
        self.servers: dict[SideName, SinkServer] = {}
        try:
            for side in SIDES:
                self.servers[side] = SinkServer(
                    side, programs, options, family, needs_dump_dir=needs_dump_dir, umask=umask
                )
        except BaseException:
            self.cleanup()
            raise
        self._ready = False

    def wait_ready(self) -> None:
        if self._ready:
            return
        deadline = time.monotonic() + LISTEN_TIMEOUT
        for server in self.servers.values():
            server.wait_listening(deadline)
        self._ready = True

    def alive(self) -> bool:
        return all(s.process.alive() for s in self.servers.values())

    def cleanup(self) -> None:
        for server in self.servers.values():
            server.cleanup()


# --------------------------------------------------------------------------------------
# dialogues


@dataclasses.dataclass(frozen=True)
class Step:
    send: bytes
    replies: int = 0


@dataclasses.dataclass(frozen=True)
class Session:
    steps: tuple[Step, ...]
    greeting: int = 1
    close: CloseMode = "shutdown"


@dataclasses.dataclass(frozen=True)
class Dialogue:
    """One row of the table. ``options`` may contain ``{dump}`` (the side's dump dir)."""

    name: str
    options: tuple[str, ...]
    sessions: tuple[Session, ...]
    family: Family = "inet"
    #: force a server pair of its own (implied by dumps, -c, -M, -n and unix sockets)
    fresh: bool = False
    #: compare the servers' stderr (prefix before the first ": " normalised)
    stderr: bool = False
    #: the servers must exit by themselves after the dialogue; compare exit status
    expect_exit: bool = False
    #: umask for the server processes (dump file modes)
    umask: int | None = None

    def __str__(self) -> str:
        return self.name

    @property
    def dumps(self) -> bool:
        return any(DUMP_PLACEHOLDER in o for o in self.options)

    @property
    def is_fresh(self) -> bool:
        return (
            self.fresh
            or self.dumps
            or self.stderr
            or self.expect_exit
            or self.umask is not None
            or self.family == "unix"
            or any(o in ("-c", "-M", "-n") for o in self.options)
        )

    @property
    def server_key(self) -> tuple[object, ...]:
        if self.is_fresh:
            return ("fresh", self.name)
        return ("shared", self.family, self.options)

    def make_pair(self, programs: Programs) -> ServerPair:
        return ServerPair(
            programs, self.options, self.family, needs_dump_dir=self.dumps, umask=self.umask
        )


# --------------------------------------------------------------------------------------
# the pool of running server pairs

#: how many upcoming server pairs to start while the current dialogue runs
LOOKAHEAD = 4


class ServerPool:
    """Server pairs for the dialogues, in the order they will run.

    Servers are expensive to start (ours is a Python process), so dialogues that can share
    a pair (same options, no dumps/counters/exit checks) share one, and the next few pairs
    are started in the background while the current dialogue runs."""

    def __init__(self, programs: Programs, order: list[Dialogue]) -> None:
        self.programs = programs
        self.order = order
        self.remaining: Counter[tuple[object, ...]] = Counter(d.server_key for d in order)
        self.pairs: dict[tuple[object, ...], ServerPair] = {}
        self.pos = 0
        self.ipv6 = ipv6_loopback_available()

    def _start(self, dialogue: Dialogue) -> ServerPair:
        key = dialogue.server_key
        pair = self.pairs.get(key)
        if pair is None:
            pair = self.pairs[key] = dialogue.make_pair(self.programs)
        return pair

    def _prestart(self, start: int) -> None:
        seen: set[tuple[object, ...]] = set()
        for dialogue in self.order[start:]:
            if len(seen) >= LOOKAHEAD:
                break
            key = dialogue.server_key
            if key in seen or (dialogue.family == "inet6" and not self.ipv6):
                continue
            seen.add(key)
            with contextlib.suppress(OSError, ServerError):
                self._start(dialogue)

    def acquire(self, dialogue: Dialogue) -> ServerPair:
        try:
            index: int | None = self.order.index(dialogue, self.pos)
        except ValueError:
            index = None
        key = dialogue.server_key
        pair = self.pairs.get(key)
        if pair is not None and not pair.alive():
            # a shared pair that an earlier dialogue crashed: start it again
            pair.cleanup()
            del self.pairs[key]
        pair = self._start(dialogue)
        if index is not None:
            self.pos = index + 1
            self._prestart(index + 1)
        pair.wait_ready()
        return pair

    def release(self, dialogue: Dialogue) -> None:
        key = dialogue.server_key
        self.remaining[key] -= 1
        if dialogue.is_fresh or self.remaining[key] <= 0:
            pair = self.pairs.pop(key, None)
            if pair is not None:
                pair.cleanup()

    def close(self) -> None:
        while self.pairs:
            _, pair = self.pairs.popitem()
            pair.cleanup()


# --------------------------------------------------------------------------------------
# the client

Status = Literal["", "closed", "timeout"]


@dataclasses.dataclass(frozen=True)
class Entry:
    label: str
    sent: bytes
    received: bytes
    status: Status
    detail: str = ""

    def key(self) -> tuple[bytes, str]:
        return (self.received, self.status)


def count_replies(buf: bytes) -> tuple[int, int]:
    """(number of complete replies in buf, offset just after the last one)."""
    n = 0
    end = 0
    pos = 0
    while True:
        i = buf.find(b"\r\n", pos)
        if i < 0:
            return n, end
        line = buf[pos:i]
        pos = i + 2
        if len(line) < 4 or line[3:4] != b"-":
            n += 1
            end = pos


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.closed = False
        self.close_detail = ""
        self.send_error = ""

    def _recv(self, deadline: float) -> bool:
        """Read once; False on timeout. Sets ``closed`` on EOF or reset."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            self.closed = True
            self.close_detail = "connection reset"
            return True
        if not chunk:
            self.closed = True
            self.close_detail = "EOF"
            return True
        self.buf += chunk
        return True

    def read_replies(self, n: int, timeout: float) -> tuple[bytes, Status]:
        deadline = time.monotonic() + timeout
        while True:
            have, _ = count_replies(self.buf)
            if have >= n:
                # exactly n replies: find the end of the n-th one
                got = 0
                pos = 0
                while got < n:
                    i = self.buf.find(b"\r\n", pos)
                    line = self.buf[pos:i]
                    pos = i + 2
                    if len(line) < 4 or line[3:4] != b"-":
                        got += 1
                data, self.buf = self.buf[:pos], self.buf[pos:]
                return data, ""
            if self.closed:
                data, self.buf = self.buf, b""
                return data, "closed"
            if not self._recv(deadline):
                data, self.buf = self.buf, b""
                return data, "timeout"

    def read_to_eof(self, timeout: float) -> tuple[bytes, Status]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if not self._recv(deadline):
                data, self.buf = self.buf, b""
                return data, "timeout"
        data, self.buf = self.buf, b""
        return data, "closed"

    def send(self, data: bytes) -> None:
        if not data or self.send_error:
            return
        self.sock.settimeout(STEP_TIMEOUT)
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.send_error = f"send failed: {e!r}"

    def shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


def run_session(endpoint: Endpoint, session: Session, index: int) -> list[Entry]:
    entries: list[Entry] = []
    prefix = f"session {index + 1} " if index else ""
    client = Client(endpoint.connect())
    try:
        if session.greeting:
            data, status = client.read_replies(session.greeting, STEP_TIMEOUT)
            entries.append(Entry(prefix + "greeting", b"", data, status, client.close_detail))
        for i, step in enumerate(session.steps):
            label = f"{prefix}step {i + 1}"
            if client.closed:
                entries.append(Entry(label, step.send, b"", "closed", "not sent"))
                continue
            client.send(step.send)
            if step.replies:
                data, status = client.read_replies(step.replies, STEP_TIMEOUT)
            else:
                data, status = b"", ""
            detail = client.send_error or (client.close_detail if status == "closed" else "")
            entries.append(Entry(label, step.send, data, status, detail))
        if not client.closed:
            how = "half-close, read to EOF" if session.close == "shutdown" else "read to EOF"
            if session.close == "shutdown":
                client.shutdown_write()
            data, status = client.read_to_eof(EOF_TIMEOUT)
            entries.append(Entry(f"{prefix}{how}", b"", data, status, client.close_detail))
    finally:
        client.close()
    return entries


def barrier(endpoint: Endpoint) -> None:
    """Connect and wait for the greeting (or EOF). Postfix is single-threaded, so once a new
    connection has been greeted, the clean-up of every earlier session (dump files) is done."""
    try:
        client = Client(endpoint.connect())
    except OSError:
        return
    try:
        client.read_replies(1, STEP_TIMEOUT)
    finally:
        client.close()


# --------------------------------------------------------------------------------------
# dumps

_ID_SUFFIX = re.compile(r"[0-9a-f]{8}$")
_YEAR = re.compile(r"(?<![0-9])[0-9]{4}(?![0-9])")
_RECEIVED_ID = re.compile(rb"\tby [^\n]* id ([0-9a-f]{8});\n")
_ID = re.compile(rb"(\tby [^\n]* id )[0-9a-f]{8};\n")
_DATE = re.compile(
    rb"\t((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [ 123][0-9] "
    rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    rb"[0-9]{2}:[0-9]{2}:[0-9]{2}) ([+-][0-9]{4} \([^)\n]*\))\n"
)


@dataclasses.dataclass(frozen=True)
class DumpEntry:
    kind: str  # "dir", "file", or "other"
    path: str  # normalised relative path
    mode: str  # e.g. "0644"
    owner: tuple[int, int]
    content: bytes = b""  # normalised


def normalise_dump(content: bytes) -> bytes:
    content = _ID.sub(rb"\1<ID>;\n", content)
    return _DATE.sub(rb"\t<DATE> \2\n", content)


def check_dump_file(rel: str, content: bytes, now: float) -> list[str]:
    """Self-consistency of one dump file (applied to both sides)."""
    problems: list[str] = []
    ids = [m.decode() for m in _RECEIVED_ID.findall(content)]
    suffix = _ID_SUFFIX.search(rel.rsplit("/", 1)[-1])
    if suffix and ids and len(ids) == 1 and ids[0] != suffix.group(0):
        problems.append(f"{rel}: Received id {ids[0]} differs from the file name id")
    for m in _DATE.finditer(content):
        text = (m.group(1) + b" " + m.group(2)).decode()
        try:
            when = email.utils.parsedate_to_datetime(text.split(" (")[0])
        except (TypeError, ValueError):
            problems.append(f"{rel}: unparsable date {text!r}")
            continue
        if when.strftime("%a") != text[:3]:
            problems.append(f"{rel}: wrong day of the week in {text!r}")
        if abs(when.timestamp() - now) > 600:
            now_text = datetime.fromtimestamp(now, timezone.utc).isoformat()
            problems.append(f"{rel}: date {text!r} is not near now ({now_text})")
    return problems


def snapshot_dump(root: Path) -> tuple[list[DumpEntry], list[str]]:
    """Everything below root, normalised and sorted, plus self-consistency problems."""
    entries: list[DumpEntry] = []
    problems: list[str] = []
    now = time.time()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames) + sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            st = full.lstat()
            head, _, base = rel.rpartition("/")
            if stat.S_ISREG(st.st_mode):
                base = _ID_SUFFIX.sub("<ID>", base)
            parts = [*head.split("/"), base] if head else [base]
            norm = "/".join(_YEAR.sub("<Y>", part) for part in parts)
            mode = f"{stat.S_IMODE(st.st_mode):04o}"
            owner = (st.st_uid, st.st_gid)
            if stat.S_ISDIR(st.st_mode):
                entries.append(DumpEntry("dir", norm, mode, owner))
            elif stat.S_ISREG(st.st_mode):
                content = full.read_bytes()
                problems += check_dump_file(rel, content, now)
                entries.append(DumpEntry("file", norm, mode, owner, normalise_dump(content)))
            else:
                entries.append(DumpEntry("other", norm, mode, owner))
    # Deliberate difference (README): Postfix creates a dump's folders at MAIL time, ours
    # when the message is written, so folders that hold no file are not compared.
    files = [e.path for e in entries if e.kind != "dir"]
    entries = [
        e for e in entries if e.kind != "dir" or any(f.startswith(e.path + "/") for f in files)
    ]
    entries.sort(key=lambda e: (e.path, e.kind, e.content))
    return entries, problems


# --------------------------------------------------------------------------------------
# running a dialogue on both sides


@dataclasses.dataclass
class SideResult:
    side: SideName
    entries: list[Entry]
    stdout: bytes = b""
    stderr: bytes = b""
    exit_status: int | None = None
    dump: list[DumpEntry] = dataclasses.field(default_factory=list)
    dump_problems: list[str] = dataclasses.field(default_factory=list)
    died: str = ""
    socket_mode: str = ""


def _run_side(server: SinkServer, dialogue: Dialogue) -> list[Entry]:
    entries: list[Entry] = []
    for i, session in enumerate(dialogue.sessions):
        entries += run_session(server.endpoint, session, i)
    if dialogue.dumps and not dialogue.expect_exit:
        barrier(server.endpoint)
    return entries


def _catch_up(server: SinkServer, stdout_records: int, stderr_lines: int) -> None:
    """Wait (bounded) until ours has written as much to stdout/stderr as Postfix had."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    while time.monotonic() < deadline and server.process.alive():
        out = server.process.stdout
        err = server.process.stderr
        if out.count(b"\r") >= stdout_records and err.count(b"\n") >= stderr_lines:
            return
        time.sleep(0.005)


def run_dialogue(pair: ServerPair, dialogue: Dialogue) -> dict[SideName, SideResult]:
    """Run the dialogue against both servers at once. Fresh servers are stopped
    afterwards, and their output, exit status and dump directories are collected."""
    err_offsets = {side: len(s.process.stderr) for side, s in pair.servers.items()}
    socket_modes = {
        side: f"{stat.S_IMODE(os.stat(s.endpoint.path).st_mode):04o}"
        for side, s in pair.servers.items()
        if s.endpoint.family == "unix"
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            side: pool.submit(_run_side, server, dialogue) for side, server in pair.servers.items()
        }
        results = {side: SideResult(side, fut.result()) for side, fut in futures.items()}
    for side, mode in socket_modes.items():
        results[side].socket_mode = mode

    if not dialogue.is_fresh:
        for side, server in pair.servers.items():
            if not server.process.alive():
                results[side].died = (
                    f"{side} server died (status {server.process.proc.returncode}); "
                    f"stderr: {server.process.stderr[err_offsets[side] :]!r}"
                )
            results[side].stderr = server.process.stderr[err_offsets[side] :]
        return results

    pf = pair.servers["postfix"]
    ours = pair.servers["ours"]
    if dialogue.expect_exit:
        for side, server in pair.servers.items():
            results[side].exit_status = server.process.wait_exit(EXIT_TIMEOUT)
    else:
        pf.stop()
        _catch_up(ours, pf.process.stdout.count(b"\r"), pf.process.stderr.count(b"\n"))
    for side, server in pair.servers.items():
        server.stop()
        res = results[side]
        res.stdout = server.process.stdout
        res.stderr = server.process.stderr
        if server.dump_dir is not None:
            res.dump, res.dump_problems = snapshot_dump(server.dump_dir)
    return results


# --------------------------------------------------------------------------------------
# comparing and reporting


def short(data: bytes, limit: int = 300) -> str:
    text = repr(data)
    if len(text) > limit:
        text = text[: limit - 40] + f"...({len(data)} bytes)...{text[-30:]}"
    return text


def normalise_stderr(data: bytes) -> list[str]:
    """Lines of stderr with the program name (before the first ": ") replaced."""
    lines: list[str] = []
    for raw in data.decode("utf-8", "replace").splitlines():
        _, sep, rest = raw.partition(": ")
        line = f"<PROG>: {rest}" if sep else raw
        line = re.sub(r"^(<PROG>: fatal: usage: )\S+", r"\1<PROG>", line)
        lines.append(line)
    return lines


def compare(dialogue: Dialogue, results: dict[SideName, SideResult]) -> list[str]:
    """Problems found; empty when the two sides agree."""
    pf, ours = results["postfix"], results["ours"]
    problems: list[str] = []

    bad_ref = [e for e in pf.entries if e.status == "timeout"]
    if bad_ref:
        problems.append(
            "the dialogue is wrong: Postfix itself timed out at "
            + ", ".join(e.label for e in bad_ref)
        )
    for res in (pf, ours):
        if res.died:
            problems.append(res.died)

    if pf.socket_mode != ours.socket_mode:
        problems.append(
            f"UNIX socket mode differs: postfix {pf.socket_mode}, ours {ours.socket_mode}"
        )
    if [e.key() for e in pf.entries] != [e.key() for e in ours.entries]:
        problems.append("replies differ:\n" + transcript(pf.entries, ours.entries))

    if dialogue.is_fresh:
        if pf.stdout != ours.stdout:
            problems.append(
                f"stdout differs:\n  postfix: {pf.stdout!r}\n  ours:    {ours.stdout!r}"
            )
        if dialogue.expect_exit and pf.exit_status != ours.exit_status:
            problems.append(
                f"exit status differs: postfix {pf.exit_status}, ours {ours.exit_status} "
                "(None: did not exit)"
            )
        if dialogue.stderr:
            a, b = normalise_stderr(pf.stderr), normalise_stderr(ours.stderr)
            if a != b:
                problems.append(f"stderr differs:\n  postfix: {a}\n  ours:    {b}")
        if dialogue.dumps:
            problems += compare_dumps(pf, ours)
    return problems


def transcript(a: Sequence[Entry], b: Sequence[Entry]) -> str:
    out: list[str] = []
    for i in range(max(len(a), len(b))):
        ea = a[i] if i < len(a) else None
        eb = b[i] if i < len(b) else None
        ref = ea or eb
        assert ref is not None
        same = ea is not None and eb is not None and ea.key() == eb.key()
        mark = "  " if same else "!!"
        out.append(f"{mark} {ref.label}" + (f"  C: {short(ref.sent)}" if ref.sent else ""))
        for name, e in (("postfix", ea), ("ours   ", eb)):
            if e is None:
                out.append(f"     {name}: <missing>")
                continue
            status = f"  [{e.status}{': ' + e.detail if e.detail else ''}]" if e.status else ""
            if not same or e.status or e.detail:
                out.append(f"     {name}: {short(e.received)}{status}")
            elif name == "postfix":
                out.append(f"     both:    {short(e.received)}")
    return "\n".join(out)


def compare_dumps(pf: SideResult, ours: SideResult) -> list[str]:
    problems: list[str] = [f"postfix dump: {p}" for p in pf.dump_problems]
    problems += [f"ours dump: {p}" for p in ours.dump_problems]
    if pf.dump == ours.dump:
        return problems

    def listing(entries: Iterable[DumpEntry]) -> list[str]:
        return [f"{e.kind} {e.path} {e.mode} uid/gid={e.owner}" for e in entries]

    lines = ["dump directories differ"]
    la, lb = listing(pf.dump), listing(ours.dump)
    if la != lb:
        lines.append("  postfix: " + "; ".join(la))
        lines.append("  ours:    " + "; ".join(lb))
    files_a = [e for e in pf.dump if e.kind == "file"]
    files_b = [e for e in ours.dump if e.kind == "file"]
    for i in range(max(len(files_a), len(files_b))):
        ca = files_a[i].content if i < len(files_a) else b""
        cb = files_b[i].content if i < len(files_b) else b""
        if ca == cb:
            continue
        name = (files_a[i] if i < len(files_a) else files_b[i]).path
        diff = difflib.unified_diff(
            [repr(x) for x in ca.splitlines(keepends=True)],
            [repr(x) for x in cb.splitlines(keepends=True)],
            "postfix/" + name,
            "ours/" + name,
            lineterm="",
        )
        lines.append("\n".join(diff))
    problems.append("\n".join(lines))
    return problems


# --------------------------------------------------------------------------------------
# startup errors


@dataclasses.dataclass(frozen=True)
class StartupCase:
    """A command line that must fail. ``{addr}`` in args is replaced by a free address;
    without it, ``127.0.0.1:<port> 10`` is appended unless ``append_address`` is false."""

    name: str
    args: tuple[str, ...]
    with_user: bool = True
    append_address: bool = True
    #: compare only the last stderr line (the first comes from the C library's getopt)
    last_line_only: bool = False

    def __str__(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class StartupResult:
    status: int | None  # None: still running after the timeout (it started!)
    stderr: bytes


def run_startup(programs: Programs, side: SideName, case: StartupCase) -> StartupResult:
    addr = f"127.0.0.1:{free_port()}"
    if any("{addr}" in a for a in case.args):
        args = [a.replace("{addr}", addr) for a in case.args]
    elif case.append_address:
        args = [*case.args, addr, "10"]
    else:
        args = list(case.args)
    argv = [*programs.command(side), *(user_options() if case.with_user else []), *args]
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=server_env(),
            cwd=str(REPO_ROOT),
            timeout=EXIT_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        err = e.stderr if isinstance(e.stderr, bytes) else b""
        return StartupResult(None, err)
    return StartupResult(proc.returncode, proc.stderr)


def startup_problems(case: StartupCase, pf: StartupResult, ours: StartupResult) -> list[str]:
    problems: list[str] = []
    a, b = normalise_stderr(pf.stderr), normalise_stderr(ours.stderr)
    if pf.status != 1 or not a:
        problems.append(f"the case is wrong: Postfix gave status {pf.status}, stderr {a}")
    if pf.status != ours.status:
        problems.append(
            f"exit status: postfix {pf.status}, ours {ours.status} (None: kept running)"
        )
    if case.last_line_only:
        a, b = a[-1:], b[-1:]
    if a != b:
        problems.append(
            "stderr differs:\n  postfix: "
            + "\n           ".join(a)
            + "\n  ours:    "
            + "\n           ".join(b)
        )
    return problems


# --------------------------------------------------------------------------------------
# the collected cases

T = TypeVar("T")


def collected(items: Iterable[object], param: str, kind: type[T]) -> list[T]:
    """The values of parameter ``param`` that are ``kind``, over the collected test items,
    in order: what the fixtures start ahead of the tests."""
    out: list[T] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        value = callspec.params.get(param) if callspec is not None else None
        if isinstance(value, kind):
            out.append(value)
    return out


# --------------------------------------------------------------------------------------
# any command line (the random generator's): does it start, or how does it fail?

#: seconds a started server gets to greet a first connection
GREET_TIMEOUT = 4.0


#: the status of a server that neither exited nor listened (a hang: always a failure)
HUNG = -1


def run_command_line(programs: Programs, side: SideName, args: Sequence[str]) -> StartupResult:
    """Start the side with ``args`` (``{port}`` and ``{dump}`` filled in); status None when
    it greets a connection (it started), ``HUNG`` when it neither exits nor listens, else
    its exit status. A server that fails after binding (``-R``, ``-u``) is told apart by
    its greeting: no sleeps."""
    port = free_port()
    dump = Path(tempfile.mkdtemp(prefix="sinkdiff-cmdline-"))
    dump.chmod(0o777)
    argv = [
        *programs.command(side),
        *user_options(),
        *(a.replace("{port}", str(port)).replace(DUMP_PLACEHOLDER, str(dump)) for a in args),
    ]
    process = SinkProcess(argv)
    status: int | None = None
    try:
        deadline = time.monotonic() + EXIT_TIMEOUT
        family: Family | None = None
        while process.alive() and time.monotonic() < deadline and family is None:
            if _tcp_listening(port, v6=False):
                family = "inet"
            elif _tcp_listening(port, v6=True):
                family = "inet6"
            else:
                time.sleep(0.01)
        if not process.alive():
            status = process.stop()
        elif family is None:
            status = HUNG
        elif not _greets(Endpoint(family, port=port)):
            status = process.wait_exit(2.0)  # None: alive, only silent (-q connect)
        process.stop()
        return StartupResult(status, _replace(process.stderr, port, dump))
    finally:
        if process.alive():
            process.stop()
        shutil.rmtree(dump, ignore_errors=True)


def _greets(endpoint: Endpoint) -> bool:
    try:
        client = Client(endpoint.connect())
    except OSError:
        return False
    try:
        data, status = client.read_replies(1, GREET_TIMEOUT)
        return bool(data) or status == "timeout"
    finally:
        client.close()


def _replace(stderr: bytes, port: int, dump: Path) -> bytes:
    return stderr.replace(str(dump).encode(), b"<DUMP>").replace(str(port).encode(), b"<PORT>")


def dialogue_problems(pool: ServerPool, dialogue: Dialogue, *, show_sent: bool = False) -> str:
    """Run the dialogue on a pair from the pool; "" when both sides agree, else a report."""
    pair = pool.acquire(dialogue)
    try:
        results = run_dialogue(pair, dialogue)
    finally:
        pool.release(dialogue)
    problems = compare(dialogue, results)
    if not problems:
        return ""
    head = f"{dialogue.name}: ours differs from Postfix smtp-sink\n"
    head += f"  ours: {' '.join(pair.servers['ours'].argv)}\n"
    if show_sent:
        head += f"  sent: {[s.send for session in dialogue.sessions for s in session.steps]!r}\n"
    return head + "\n".join(problems)
