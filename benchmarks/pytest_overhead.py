"""pytest side: session sink start-up time and per-test fixture overhead.

    python benchmarks/pytest_overhead.py [--tests 1000] [--peers] [--peer-tests 200]

Generates a throw-away project with N tests that use ``smtp_sink`` (and send nothing) and N
identical tests that do not, runs each set in its own pytest process, and reports:
- start-up: time from the first request of the session fixtures to a listening sink;
- overhead per test: (time with fixture - start-up - time without) / N, each test timed
  around pytest_runtest_protocol; for ``smtp_sink``, a test with a marker, and (``--peers``)
  the peers' fixtures that are installed.

(Until 2026-12-03 the first run selected its tests with ``-k with``, which also matches
``test_without_``: the figure it printed was a test's whole time with the fixture, 0.47 ms,
not the fixture's share of it.)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

CONFTEST = '''
import time
import pytest

_t = {}

@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    start = time.perf_counter()
    yield
    if fixturedef.argname in ("smtp_sink_thread", "smtp_sink_server"):
        _t[fixturedef.argname] = time.perf_counter() - start

_run = [0.0]

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.perf_counter()
    yield
    _run[0] += time.perf_counter() - start

def pytest_sessionfinish(session):
    print(f"\\nTESTTIME {_run[0]:.6f}")
    if _t:
        total = sum(_t.values())
        print(f"\\nSTARTUP {total * 1000:.1f} ms "
              + " ".join(f"{k}={v * 1000:.1f}ms" for k, v in _t.items()))
'''


# As installed: with bytecode caches (PYTHONDONTWRITEBYTECODE, set on some machines, would
# compile every module of the plugin at each first use); a warm-up run writes them.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(project: Path, keyword: str, count: int) -> tuple[float, float]:
    """The tests' time and the session sink's start-up (0.0: none), in seconds."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-k", keyword, "-s"],
        cwd=project, capture_output=True, text=True, check=False, env=ENV,
    )  # fmt: skip
    if out.returncode != 0:
        sys.exit(out.stdout[-2000:] + out.stderr[-2000:])
    if f"{count} passed" not in out.stdout:
        sys.exit(f"expected {count} tests to run for -k {keyword}:\n{out.stdout[-500:]}")
    found = re.search(r"TESTTIME ([0-9.]+)", out.stdout)
    assert found, out.stdout[-2000:]
    startup = re.search(r"STARTUP ([0-9.]+) ms(.*)", out.stdout)
    if startup:
        print(f"start-up of the session sink: {startup.group(1)} ms ({startup.group(2).strip()})")
        return float(found.group(1)), float(startup.group(1)) / 1000
    return float(found.group(1)), 0.0


# Test sets: name -> (fixture argument, decorator). The peers' fixtures, where installed
# (--peers): smtpdfix's ``smtpd``, pytest-localserver's ``smtpserver``,
# pytest-smtp-test-server's ``smtp_mock``.
SETS = {
    "none": ("", ""),
    "smtp_sink": ("smtp_sink", ""),
    "marker": ("smtp_sink", '@pytest.mark.smtp_sink(reject="RCPT")\n'),
}
PEERS = {"smtpdfix": "smtpd", "pytest_localserver": "smtpserver",
         "pytest_smtp_test_server": "smtp_mock"}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=1000)
    ap.add_argument("--peers", action="store_true", help="also the peers that are installed")
    ap.add_argument("--peer-tests", type=int, default=200)
    args = ap.parse_args()
    sets = dict(SETS)
    counts = {name: args.tests for name in sets}
    if args.peers:
        for module, fixture in PEERS.items():
            if importlib.util.find_spec(module) is None:
                print(f"{module}: not installed")
                continue
            sets[module] = (fixture, "")
            counts[module] = args.peer_tests
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "conftest.py").write_text(CONFTEST)
        body = ["import pytest\n"]
        for name, (fixture, decorator) in sets.items():
            body += [f"{decorator}def test_set_{name}_{i}({fixture}):\n    pass\n"
                     for i in range(counts[name])]  # fmt: skip
        (project / "test_many.py").write_text("\n".join(body))
        times: dict[str, float] = {}
        run(project, "test_set_smtp_sink_", counts["smtp_sink"])  # (a warm-up)
        for name in sets:
            n = counts[name]
            total, startup = run(project, f"test_set_{name}_", n)
            times[name] = (total - startup) / n
    base = times.pop("none")
    print(f"a test without fixtures: {base * 1000:.3f} ms; what a fixture adds per test "
          f"(start-up of a session sink not included):")
    for name, per_test in times.items():
        label = {"smtp_sink": "smtp_sink", "marker": "smtp_sink + marker"}.get(name, name)
        print(f"  {label:28s} {(per_test - base) * 1000:8.3f} ms")


if __name__ == "__main__":
    main()
