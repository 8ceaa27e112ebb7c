"""pytest side: session sink start-up time and per-test fixture overhead.

    python benchmarks/pytest_overhead.py [--tests 1000]

Generates a throw-away project with N tests that use ``smtp_sink`` (and send nothing) and N
identical tests that do not, runs each set in its own pytest process, and reports:
- start-up: time from the first request of the session fixtures to a listening sink;
- overhead per test: (time with fixture - time without) / N, each test timed around
  pytest_runtest_protocol.
"""

from __future__ import annotations

import argparse
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


def run(project: Path, keyword: str) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", keyword,
         "-s"],
        cwd=project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        sys.exit(out.stdout[-2000:] + out.stderr[-2000:])
    found = re.search(r"TESTTIME ([0-9.]+)", out.stdout)
    assert found, out.stdout[-2000:]
    total = float(found.group(1))
    startup = re.search(r"STARTUP ([0-9.]+) ms(.*)", out.stdout)
    if startup:
        print(f"start-up of the session sink: {startup.group(1)} ms ({startup.group(2).strip()})")
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "conftest.py").write_text(CONFTEST)
        body = [f"def test_with_{i}(smtp_sink):\n    assert smtp_sink.port\n"
                for i in range(args.tests)]  # fmt: skip
        body += [f"def test_without_{i}():\n    assert True\n" for i in range(args.tests)]
        (project / "test_many.py").write_text("\n".join(body))
        with_fixture = run(project, "with")
        without = run(project, "without")
    per_test = (with_fixture - without) / args.tests
    print(f"{args.tests} tests: {with_fixture:.3f} s running the tests with smtp_sink, "
          f"{without:.3f} s without; overhead per test {per_test * 1000:.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
