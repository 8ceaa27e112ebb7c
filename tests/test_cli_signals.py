"""SIGTERM and SIGINT at each step of the command line's start-up, raised exactly there.

Clients are served from the selector thread before trio (and its signal receiver) is up, so a
signal can come while the main thread binds, imports trio or sets trio.run up. Each test runs
``cli.main`` in a subprocess with one step wrapped so that it raises the signal itself (the
handler runs at once, in the main thread): the program must exit with status 0, having closed
its listener, whatever the step. A lost signal fails by the timeout, not by hanging the run.

Scripts start background jobs with SIGINT ignored: a relay through SIGINT was lost that way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import support

LIMIT = 20.0

# argv: step, signal name, "ignore-int" or "default-int", times to raise
SCRIPT = r"""
import signal, socket, sys
from pytest_smtp_sink import cli
from pytest_smtp_sink.server import selector
from pytest_smtp_sink.server.server import SinkServer

step, name, sigint, times = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if sigint == "ignore-int":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
signum = getattr(signal, name)
servers = []

def raise_it():
    for _ in range(times):
        signal.raise_signal(signum)

real_start_early = SinkServer.start_early
def start_early(self, *args, **kwargs):
    servers.append(self)
    if step == "before-bind":
        raise_it()
    real_start_early(self, *args, **kwargs)
    if step == "served-early":  # a client greeted from the selector thread, then the signal
        (host, port), = [a[:2] for a in self.addresses]
        with socket.create_connection((host, port), timeout=10) as client:
            if selector.available():  # (elsewhere nothing serves before trio)
                assert client.recv(100) == b"220 smtp-sink ESMTP\r\n"
            raise_it()
SinkServer.start_early = start_early

real_serve = cli.serve
async def serve(server, early):
    if step == "in-trio":  # trio runs, its receiver not yet open
        raise_it()
    return await real_serve(server, early)
cli.serve = serve

rc = cli.main(sys.argv[5:])
for host, port in [a[:2] for server in servers for a in server.addresses]:
    try:
        socket.create_connection((host, port), timeout=10).close()
        print("still listening")
    except ConnectionRefusedError:
        pass
sys.exit(rc)
"""

AS_USER = ["-u", "nobody"] if support.IS_ROOT else []


@pytest.mark.parametrize("sigint", ["default-int", "ignore-int"])
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("step", ["before-bind", "served-early", "in-trio"])
def test_signal_during_start_up_exits_cleanly(step: str, name: str, sigint: str) -> None:
    assert run_main(step, name, sigint, 1) == (0, b"", b"")


@pytest.mark.parametrize("step", ["before-bind", "in-trio"])
def test_a_second_signal_before_trio_listens_gives_up_waiting(step: str) -> None:
    assert run_main(step, "SIGTERM", "ignore-int", 2) == (0, b"", b"")


def run_main(step: str, name: str, sigint: str, times: int) -> tuple[int, bytes, bytes]:
    """Exit status, stdout and stderr of ``cli.main`` with ``times`` signals at ``step``."""
    if not hasattr(signal, "raise_signal"):
        pytest.skip("no signal.raise_signal")
    argv = [*AS_USER, "127.0.0.1:0", "10"]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, step, name, sigint, str(times), *argv],
        capture_output=True,
        timeout=LIMIT,
        stdin=subprocess.DEVNULL,
        cwd=os.sep,
    )
    return proc.returncode, proc.stdout, proc.stderr
