"""Throughput of our smtp-sink against Postfix smtp-sink and an aiosmtpd sink, same run.

    python benchmarks/run.py [--runs 3] [--scale 1.0] [--only NAME ...]

Postfix's ``smtp-source`` is the load. For every scenario the servers are measured in
alternating order, several runs each; the table shows medians: messages/second (wall time of
smtp-source), the server's CPU seconds per 1,000 messages, and the ratios ours/Postfix and
ours/aiosmtpd. Absolute numbers depend on the machine; the ratios are what we track.
``canned`` is smtp-source against ``canned_sink.c`` (compiled with ``cc`` when there is one),
a C sink that only sends canned replies and stores nothing: about the client-bound limit of
the scenario on the machine (a slower server can still come out ahead of it by a little:
its replies reach the client in batches, which costs the client fewer wake-ups).
Postfix binaries: env SMTP_SINK_POSTFIX_BIN, ./.postfix/bin, or ../shared/tools/get-postfix.sh.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def postfix_bin() -> Path:
    for cand in (os.environ.get("SMTP_SINK_POSTFIX_BIN"), ROOT / ".postfix" / "bin",
                 "/work/postfix/bin"):  # fmt: skip
        if cand and (Path(cand) / "smtp-source").exists():
            return Path(cand)
    script = ROOT.parent / "shared" / "tools" / "get-postfix.sh"
    if script.exists():
        out = subprocess.run(["bash", str(script), str(ROOT / ".postfix")], check=True,
                             capture_output=True, text=True)  # fmt: skip
        return Path(out.stdout.strip().splitlines()[-1])
    sys.exit("benchmarks: Postfix smtp-source not found (set SMTP_SINK_POSTFIX_BIN)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Poll /proc/net/tcp for LISTEN on the port (a probe connection would skew counters)."""
    needle = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) > 3 and parts[1].endswith(needle.strip()) and parts[3] == "0A":
                        return
        time.sleep(0.01)
    raise RuntimeError(f"server did not listen on {port}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Scenario:
    name: str
    source_args: list[str]
    messages: int
    lmtp: bool = False
    dump: bool = False  # -d template
    dump_file: bool = False  # -D file
    dump_base: str | None = None  # where the dumps go (None: the temp folder)
    servers: tuple[str, ...] = ("ours", "postfix", "aiosmtpd", "canned")


@dataclass
class Result:
    rates: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)


CANNED: str | None = None  # the compiled canned_sink, when there is a C compiler


def build_canned() -> str | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    exe = os.path.join(tempfile.mkdtemp(prefix="sink-bench-cc-"), "canned_sink")
    subprocess.run([cc, "-O2", "-o", exe, str(ROOT / "benchmarks" / "canned_sink.c")],
                   check=True)  # fmt: skip
    return exe


def server_command(kind: str, port: int, sc: Scenario, pf: Path, dump_dir: str) -> list[str]:
    root = ["-u", "nobody"] if os.geteuid() == 0 else []
    opts = (["-L"] if sc.lmtp else []) + (["-d", f"{dump_dir}/%Y%m%d/"] if sc.dump else [])
    opts += ["-D", f"{dump_dir}/dump.mbox"] if sc.dump_file else []
    addr = [f"127.0.0.1:{port}", "1000"]
    if kind == "canned":
        assert CANNED is not None
        return [CANNED, str(port), *(["lmtp"] if sc.lmtp else [])]
    if kind == "ours":
        return [sys.executable, "-m", "pytest_smtp_sink", *root, *opts, *addr]
    if kind == "postfix":
        return [str(pf / "smtp-sink"), *root, *opts, *addr]
    return [sys.executable, str(ROOT / "benchmarks" / "aiosmtpd_sink.py"), str(port)] + (
        ["--lmtp"] if sc.lmtp else []
    )


def run_once(kind: str, sc: Scenario, pf: Path) -> tuple[float, float]:
    port = free_port()
    dump_dir = tempfile.mkdtemp(prefix="sink-bench-", dir=sc.dump_base)
    os.chmod(dump_dir, 0o777)
    proc = subprocess.Popen(server_command(kind, port, sc, pf, dump_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_listening(port, proc)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        src = subprocess.run([str(pf / "smtp-source"), *sc.source_args, "-m", str(sc.messages),
                              f"127.0.0.1:{port}"], capture_output=True, timeout=600)  # fmt: skip
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        if src.returncode != 0:
            raise RuntimeError(f"smtp-source failed against {kind}: {src.stderr.decode()[-500:]}")
        if sc.dump and kind in ("ours", "postfix"):
            files = sum(len(f) for _, _, f in os.walk(dump_dir))
            if files != sc.messages:
                raise RuntimeError(f"{kind}: {files} dump files for {sc.messages} messages")
        return sc.messages / wall, cpu * 1000 / sc.messages
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(dump_dir, ignore_errors=True)


def scenarios(scale: float) -> list[Scenario]:
    def n(x: int) -> int:
        return max(100, int(x * scale))

    return [
        Scenario("new connection per message", ["-s", "20", "-l", "1000"], n(20000)),
        Scenario("reused connections (-d)", ["-s", "20", "-l", "1000", "-d"], n(20000)),
        Scenario("LMTP (-L)", ["-s", "20", "-l", "1000", "-L"], n(20000), lmtp=True),
        Scenario("10 recipients (-r 10)", ["-s", "20", "-l", "1000", "-r", "10"], n(10000)),
        Scenario("100 KB messages", ["-s", "20", "-l", "100000", "-d"], n(2000)),
        Scenario("dump mode (-d template)", ["-s", "20", "-l", "1000"], n(5000), dump=True,
                 servers=("ours", "postfix", "canned")),
        *([Scenario("dump mode (-d) on tmpfs", ["-s", "20", "-l", "1000"], n(5000), dump=True,
                    dump_base="/dev/shm", servers=("ours", "postfix", "canned"))]
          if os.path.isdir("/dev/shm") else []),
        Scenario("dump file (-D)", ["-s", "20", "-l", "1000"], n(5000), dump_file=True,
                 servers=("ours", "postfix", "canned")),
        Scenario("1 session (-s 1 -d)", ["-s", "1", "-l", "1000", "-d"], n(5000)),
        Scenario("200 sessions (-s 200 -d)", ["-s", "200", "-l", "1000", "-d"], n(20000)),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    ap.add_argument("--only", nargs="*", default=None, help="scenario name prefixes")
    args = ap.parse_args()
    pf = postfix_bin()
    global CANNED
    CANNED = build_canned()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.platform()}")  # fmt: skip
    rows = []
    for sc in scenarios(args.scale):
        if args.only and not any(sc.name.startswith(p) for p in args.only):
            continue
        res = Result()
        servers = [k for k in sc.servers if k != "canned" or CANNED is not None]
        for run in range(args.runs):
            order = servers if run % 2 == 0 else servers[::-1]
            for kind in order:
                rate, cpu = run_once(kind, sc, pf)
                res.rates.setdefault(kind, []).append(rate)
                res.cpu.setdefault(kind, []).append(cpu)
        med = {k: statistics.median(v) for k, v in res.rates.items()}
        cpu = {k: statistics.median(v) for k, v in res.cpu.items()}
        rows.append((sc.name, med, cpu))
        print_row(sc.name, med, cpu, flush=True)
    print()
    print_table(rows)


def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def print_row(name: str, med: dict[str, float], cpu: dict[str, float], flush: bool) -> None:
    parts = [f"{k} {med[k]:.0f}/s ({cpu[k]:.2f} cpu-s/1k)" for k in med]
    print(f"{name}: " + ", ".join(parts), flush=flush)


def print_table(rows: list[tuple[str, dict[str, float], dict[str, float]]]) -> None:
    head = (f"{'scenario':30} {'ours msg/s':>10} {'postfix':>9} {'aiosmtpd':>9} {'canned':>7} "
            f"{'ours cpu':>9} {'pf cpu':>7} {'aio cpu':>7} {'ours/pf':>8} {'ours/aio':>8} "
            f"{'ours/cnd':>8} {'pf/cnd':>7}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for name, med, cpu in rows:
        def g(d: dict[str, float], k: str, f: str) -> str:
            return format(d[k], f) if k in d else "-"

        def ratio(a: str, b: str, med: dict[str, float] = med) -> str:
            return fmt_ratio(med.get(a), med.get(b))

        print(f"{name:30} {g(med, 'ours', '10.0f')} {g(med, 'postfix', '9.0f')} "
              f"{g(med, 'aiosmtpd', '9.0f')} {g(med, 'canned', '7.0f')} {g(cpu, 'ours', '9.2f')} "
              f"{g(cpu, 'postfix', '7.2f')} {g(cpu, 'aiosmtpd', '7.2f')} "
              f"{ratio('ours', 'postfix'):>8} {ratio('ours', 'aiosmtpd'):>8} "
              f"{ratio('ours', 'canned'):>8} {ratio('postfix', 'canned'):>7}")  # fmt: skip
    print("msg/s: messages per second (wall clock of smtp-source); cpu: server CPU seconds "
          "per 1,000 messages; canned: a C sink of canned replies (about the client-bound limit); "
          "medians of alternating runs.")  # fmt: skip


if __name__ == "__main__":
    main()
