"""Scale checks: many idle connections, and a huge message streamed through DATA.

    python benchmarks/scale.py [--connections 5000] [--gigabytes 1.0]

Starts ``python -m pytest_smtp_sink`` (no dump, no capture), then
1. opens N idle connections (each reads its greeting) and reports the server's RSS growth
   per connection;
2. sends one message of the given size through DATA on a single connection and samples the
   server's RSS while it streams: memory must stay flat.
The fd limit is raised for this process and the server.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import free_port, wait_listening


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raise_fd_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(n, soft), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def recv_line(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--gigabytes", type=float, default=1.0)
    args = ap.parse_args()
    raise_fd_limit(args.connections * 2 + 100)
    port = free_port()
    root = ["-u", "root"] if os.geteuid() == 0 else []  # root keeps the raised fd limit
    cmd = [sys.executable, "-m", "pytest_smtp_sink", *root, "-m", str(args.connections + 10),
           "-t", "600", f"127.0.0.1:{port}", "4096"]  # fmt: skip
    proc = subprocess.Popen(cmd)
    try:
        wait_listening(port, proc)
        base = rss_kib(proc.pid)
        conns = []
        t0 = time.perf_counter()
        for _ in range(args.connections):
            s = socket.create_connection(("127.0.0.1", port))
            recv_line(s)
            conns.append(s)
        took = time.perf_counter() - t0
        grown = rss_kib(proc.pid) - base
        print(f"{args.connections} idle connections opened in {took:.2f} s; server RSS "
              f"{base} KiB -> +{grown} KiB, {grown * 1024 / args.connections:.0f} bytes per "
              "connection")  # fmt: skip
        for s in conns:
            s.close()

        s = socket.create_connection(("127.0.0.1", port))
        recv_line(s)
        s.sendall(b"HELO big\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        replies = b""
        while replies.count(b"\r\n") < 4:
            replies += s.recv(4096)
        block = (b"x" * 998 + b"\r\n") * 1024  # 1 MiB of 1000-octet lines
        total = int(args.gigabytes * 1024)
        samples = []
        t0 = time.perf_counter()
        for i in range(total):
            s.sendall(block)
            if i % 64 == 0:
                samples.append(rss_kib(proc.pid))
        s.sendall(b".\r\n")
        reply = recv_line(s)
        took = time.perf_counter() - t0
        print(f"{total} MiB through DATA in {took:.1f} s ({total / took:.0f} MiB/s), reply "
              f"{reply!r}; server RSS min {min(samples)} KiB, max {max(samples)} KiB "
              f"(growth {max(samples) - min(samples)} KiB)")  # fmt: skip
        s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


if __name__ == "__main__":
    main()
