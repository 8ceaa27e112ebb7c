"""Start-up: from launching ``smtp-sink`` to the first greeting a client reads, ours against
Postfix's, alternating, medians (the issue's target: ours within 60 ms).

    python benchmarks/startup.py [--runs 15] [--postfix DIR]

The client tries to connect every 0.2 ms until the port listens, then reads the greeting;
as root both programs run with ``-u nobody``. Ours greets from its selector thread while trio
still loads, also with ``-u``, unless the other user could not read Python's files (a Python
under root's private home, as with pyenv here): then trio is imported before the switch.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A launch as installed: with its bytecode cached (PYTHONDONTWRITEBYTECODE, set on some
# machines, would compile every module at every launch); the first run writes the caches.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_to_greeting(command: list[str]) -> float:
    port = free_port()
    user = ["-u", "nobody"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*command, *user, f"127.0.0.1:{port}", "10"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        deadline = start + 10
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{command[0]} exited: {proc.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"{command[0]}: not listening after 10 s") from None
                time.sleep(0.0002)
        with sock:
            if not sock.recv(512).startswith(b"220"):
                raise SystemExit(f"{command[0]}: no greeting")
        return time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--postfix", default=os.environ.get("SMTP_SINK_POSTFIX_BIN", ""))
    args = parser.parse_args()
    candidates = [Path(args.postfix), ROOT / ".postfix" / "bin", Path("/work/postfix/bin")]
    postfix = next((d / "smtp-sink" for d in candidates if (d / "smtp-sink").is_file()), None)
    sides = {"ours": [sys.executable, "-m", "pytest_smtp_sink"]}
    if postfix is not None:
        sides["postfix"] = [str(postfix)]
    times: dict[str, list[float]] = {name: [] for name in sides}
    time_to_greeting(sides["ours"])  # (a warm-up: the bytecode caches)
    for _ in range(args.runs):
        for name, command in sides.items():
            times[name].append(time_to_greeting(command))
    for name, values in times.items():
        ms = sorted(v * 1000 for v in values)
        median = statistics.median(ms)
        print(f"{name:8} median {median:7.1f} ms  min {ms[0]:7.1f}  max {ms[-1]:7.1f}")
    if "postfix" in times:
        ratio = statistics.median(times["ours"]) / statistics.median(times["postfix"])
        print(f"ours/postfix start-up time: {ratio:.1f}x")


if __name__ == "__main__":
    main()
