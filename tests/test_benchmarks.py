"""The benchmarks that drive our own code without a load generator still run (a change of
the driver's calls once left benchmarks/hot_path.py's fake socket behind)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_hot_path_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "hot_path.py"), "--messages", "50",
         "--rounds", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "µs per message" in result.stdout
