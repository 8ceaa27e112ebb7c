"""Latency of one lock-step transaction on a persistent connection, ours against Postfix.

    python benchmarks/latency.py [--runs 5] [--count 5000] [--cpu 0]

A small C client (``lockstep.c``, compiled with ``cc`` on first use) sends MAIL, RCPT, DATA
and a 1 KB message, each after the previous reply, and times every transaction; client and
server are pinned to one core (``--cpu``), so the figure is the server's work per round trip
plus the kernel's, with no help from a second core. Servers alternate, ``--runs`` each; the
table shows the medians over runs of p50 and p99 (µs per transaction) and the server's CPU
µs per transaction (from /proc), and ours/Postfix. Linux only (affinity, /proc).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from run import cpu_seconds, free_port, postfix_bin, wait_listening

HERE = Path(__file__).resolve().parent


def build_client(folder: str) -> str:
    exe = os.path.join(folder, "lockstep")
    subprocess.run(["cc", "-O2", "-o", exe, str(HERE / "lockstep.c")], check=True)
    return exe


def pinned(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def run_once(kind: str, client: str, pf: Path, count: int, cpu: int) -> tuple[float, float, float]:
    port = free_port()
    root = ["-u", "nobody"] if os.geteuid() == 0 else []
    addr = [f"127.0.0.1:{port}", "100"]
    if kind == "ours":
        command = [sys.executable, "-m", "pytest_smtp_sink", *root, *addr]
    else:
        command = [str(pf / "smtp-sink"), *root, *addr]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, preexec_fn=lambda: pinned(cpu))
    try:
        wait_listening(port, proc)
        cpu0 = cpu_seconds(proc.pid)
        out = subprocess.run(
            [client, "127.0.0.1", str(port), str(count)],
            check=True, capture_output=True, text=True, preexec_fn=lambda: pinned(cpu),
        )  # fmt: skip
        used = cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait()
    times = [float(line) / 1000 for line in out.stdout.split()]  # µs
    return percentile(times, 0.5), percentile(times, 0.99), used / len(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=5000, help="transactions per run")
    parser.add_argument("--cpu", type=int, default=0, help="the core both run on")
    args = parser.parse_args()
    pf = postfix_bin()
    results: dict[str, list[tuple[float, float, float]]] = {"ours": [], "postfix": []}
    with tempfile.TemporaryDirectory() as folder:
        client = build_client(folder)
        for _ in range(args.runs):
            for kind in results:
                results[kind].append(run_once(kind, client, pf, args.count, args.cpu))
    med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in results.items()}
    print(f"{'server':10} {'p50 µs':>8} {'p99 µs':>8} {'cpu µs/tx':>10}")
    for kind, (p50, p99, cpu) in med.items():
        print(f"{kind:10} {p50:8.1f} {p99:8.1f} {cpu:10.1f}")
    ours, pfx = med["ours"], med["postfix"]
    ratios = [o / p for o, p in zip(ours, pfx, strict=True)]
    print(f"{'ours/pf':10} {ratios[0]:7.2f}x {ratios[1]:7.2f}x {ratios[2]:9.2f}x")
    print(f"one lock-step transaction (4 round trips, 1 KB) on one connection; client and "
          f"server on core {args.cpu}; medians of {args.runs} alternating runs of {args.count}.")


if __name__ == "__main__":
    main()
