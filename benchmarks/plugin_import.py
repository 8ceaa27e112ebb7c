"""What an installed but unused plugin costs every pytest run.

    python benchmarks/plugin_import.py [--runs 30]

Makes an empty project (one test that uses no sink) and times ``pytest --co -q`` in fresh
processes, with the plugin and with ``-p no:smtp_sink``, interleaved so both see the same
machine noise; reports the medians and their difference (the target is under 10 ms). It
also prints the plugin's own import time (``python -X importtime``) and the modules the
plugin brought in that a run without it did not load (none of them may be trio, ssl or
the server).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULES = '''
import json, sys
import pytest

def pytest_sessionfinish(session):
    with open("modules.json", "w") as f:
        json.dump(sorted(sys.modules), f)
'''


def run(project: Path, extra: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *extra],
        cwd=project, env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - start


def modules(project: Path, extra: list[str], env: dict[str, str]) -> set[str]:
    (project / "conftest.py").write_text(MODULES)
    try:
        run(project, extra, env)
        return set(json.loads((project / "modules.json").read_text()))
    finally:
        (project / "conftest.py").unlink()


def import_time(env: dict[str, str]) -> tuple[float, float]:
    """Microseconds: (pytest_smtp_sink.plugin cumulative, of which our own modules)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest, pytest_smtp_sink.plugin"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    total = ours = 0.0
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if not match:
            continue
        own, cumulative, _, name = match.groups()
        if name == "pytest_smtp_sink.plugin":
            total = float(cumulative)
        if name.startswith("pytest_smtp_sink"):
            ours += float(own)
    return total, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": ""}
    env.pop("PYTEST_ADDOPTS", None)
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
        (project / "pytest.ini").write_text("[pytest]\n")
        run(project, [], env)  # warm the OS caches and the bytecode caches
        run(project, ["-p", "no:smtp_sink"], env)
        with_plugin, without = [], []
        for _ in range(args.runs):
            with_plugin.append(run(project, [], env))
            without.append(run(project, ["-p", "no:smtp_sink"], env))
        extra_modules = modules(project, [], env) - modules(project, ["-p", "no:smtp_sink"], env)
    a, b = statistics.median(with_plugin), statistics.median(without)
    total, ours = import_time(env)
    print(f"pytest --co, empty project, {args.runs} runs each (medians):")
    print(f"  with the plugin        {a * 1000:7.1f} ms")
    print(f"  -p no:smtp_sink        {b * 1000:7.1f} ms")
    print(f"  cost of the plugin     {(a - b) * 1000:7.1f} ms   (target < 10 ms)")
    print(f"import pytest_smtp_sink.plugin: {total / 1000:.1f} ms cumulative, "
          f"{ours / 1000:.1f} ms in our own modules")  # fmt: skip
    theirs = sorted(m for m in extra_modules if not m.startswith("pytest_smtp_sink"))
    ours_loaded = sorted(m for m in extra_modules if m.startswith("pytest_smtp_sink"))
    print(f"modules the plugin loads: {len(ours_loaded)} of ours ({', '.join(ours_loaded)})")
    print(f"  and {len(theirs)} others: {', '.join(theirs) or '-'}")
    heavy = [m for m in extra_modules if m.split(".")[0] in ("trio", "ssl", "trustme", "sniffio")]
    heavy += [m for m in extra_modules if m.startswith(("pytest_smtp_sink.server",))]
    if heavy:
        print(f"  HEAVY MODULES LOADED: {', '.join(sorted(heavy))}")
        sys.exit(1)


if __name__ == "__main__":
    main()
