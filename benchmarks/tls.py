"""TLS throughput of our smtp-sink against an aiosmtpd sink with STARTTLS, same run.

    python benchmarks/tls.py [--runs 3] [--sessions 400] [--messages 2000]

The load is a Python client in threads (OpenSSL does the handshakes with the GIL released):
"new session" connects, STARTTLS (a full handshake), one message, QUIT; "one TLS session"
sends every message over one STARTTLS connection. The two servers are measured in
alternating order; the table shows medians of sessions or messages per second and the
server's CPU seconds per 1,000 (from /proc), and the ratio ours/aiosmtpd.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import cpu_seconds, free_port, wait_listening  # noqa: E402

THREADS = 8
MESSAGE = b"Subject: tls\r\n\r\nhello\r\n.\r\n"


def lines(f: socket.SocketIO | object, count: int) -> None:
    """Read ``count`` final reply lines (multi-line replies skipped)."""
    read = f.readline  # type: ignore[attr-defined]
    done = 0
    while done < count:
        line = read()
        if not line:
            raise ConnectionError("server closed")
        if line[3:4] == b" ":
            done += 1


def starttls(port: int, context: ssl.SSLContext) -> tuple[ssl.SSLSocket, object]:
    raw = socket.create_connection(("127.0.0.1", port))
    f = raw.makefile("rb")
    lines(f, 1)
    raw.sendall(b"EHLO bench\r\n")
    lines(f, 1)
    raw.sendall(b"STARTTLS\r\n")
    lines(f, 1)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    tf = tls.makefile("rb")
    tls.sendall(b"EHLO bench\r\n")
    lines(tf, 1)
    return tls, tf


def one_message(tls: ssl.SSLSocket, tf: object) -> None:
    tls.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    lines(tf, 3)
    tls.sendall(MESSAGE)
    lines(tf, 1)


def new_sessions(port: int, context: ssl.SSLContext, count: int) -> None:
    for _ in range(count):
        tls, tf = starttls(port, context)
        one_message(tls, tf)
        tls.sendall(b"QUIT\r\n")
        lines(tf, 1)
        tls.close()


def one_session(port: int, context: ssl.SSLContext, count: int) -> None:
    tls, tf = starttls(port, context)
    for _ in range(count):
        one_message(tls, tf)
    tls.sendall(b"QUIT\r\n")
    lines(tf, 1)
    tls.close()


def load(work: Callable[[int, ssl.SSLContext, int], None], port: int, ca: str, total: int) -> None:
    context = ssl.create_default_context(cafile=ca)
    per = max(1, total // THREADS)
    threads = [threading.Thread(target=work, args=(port, context, per)) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def server(kind: str, port: int, cert: str) -> list[str]:
    if kind == "ours":
        root = ["-u", "nobody"] if os.geteuid() == 0 else []
        return [sys.executable, "-m", "pytest_smtp_sink", *root, "--starttls",
                f"--tls-cert={cert}", f"127.0.0.1:{port}", "1000"]  # fmt: skip
    return [sys.executable, str(HERE / "aiosmtpd_sink.py"), str(port), f"--tls-cert={cert}"]


def measure(
    kind: str, work: Callable[..., None], total: int, cert: str, ca: str
) -> tuple[float, float]:
    port = free_port()
    proc = subprocess.Popen(server(kind, port, cert), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_listening(port, proc)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        load(work, port, ca, total)
        wall = time.perf_counter() - t0
        done = (total // THREADS) * THREADS
        return done / wall, (cpu_seconds(proc.pid) - cpu0) * 1000 / done
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=400)
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    from pytest_smtp_sink.server.certs import TestCertificates

    folder = tempfile.mkdtemp(prefix="sink-tls-bench-")
    os.chmod(folder, 0o755)
    certs = TestCertificates(folder)
    os.chmod(certs.cert_file, 0o644)  # the sink reads it before it drops privileges
    scenarios = [("new TLS session per message", new_sessions, args.sessions),
                 ("one TLS session, many messages", one_session, args.messages)]  # fmt: skip
    print(f"{'scenario':32} {'ours/s':>8} {'aiosmtpd/s':>11} {'ours cpu':>9} {'aio cpu':>8} "
          f"{'ours/aio':>9}")  # fmt: skip
    for name, work, total in scenarios:
        rates: dict[str, list[float]] = {"ours": [], "aiosmtpd": []}
        cpus: dict[str, list[float]] = {"ours": [], "aiosmtpd": []}
        for run in range(args.runs):
            for kind in (["ours", "aiosmtpd"] if run % 2 == 0 else ["aiosmtpd", "ours"]):
                rate, cpu = measure(kind, work, total, str(certs.cert_file), str(certs.ca_file))
                rates[kind].append(rate)
                cpus[kind].append(cpu)
        r = {k: statistics.median(v) for k, v in rates.items()}
        c = {k: statistics.median(v) for k, v in cpus.items()}
        print(f"{name:32} {r['ours']:8.0f} {r['aiosmtpd']:11.0f} {c['ours']:9.2f} "
              f"{c['aiosmtpd']:8.2f} {r['ours'] / r['aiosmtpd']:8.2f}x", flush=True)  # fmt: skip
    print("per second: sessions (new session) or messages (one session); cpu: server CPU "
          "seconds per 1,000; medians of alternating runs.")  # fmt: skip


if __name__ == "__main__":
    main()
