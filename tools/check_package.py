"""Check the package as a packager and a new user would (``tox -e package``; CI runs it).

1. ``python -m build`` makes the sdist and the wheel; ``twine check --strict`` passes both,
   and both carry the LICENSE.
2. A clean venv installs the wheel: ``smtp-sink`` and ``python -m pytest_smtp_sink`` print
   Postfix's usage, and ``benchmarks/plugin_import.py`` reports what the installed but unused
   plugin costs a pytest run (it fails if the plugin loads anything heavy).
3. A clean venv installs the unpacked sdist with its test extras and runs the sdist's own
   test suite from the unpacked tree.

Everything happens in a temporary folder; the checkout is only read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def step(text: str) -> None:
    print(f"\n=== check_package: {text}", flush=True)


def run(*args: str | Path, cwd: Path | None = None, check: bool = True) -> int:
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.run([str(a) for a in args], cwd=cwd, check=check).returncode


def python_of(env_dir: Path) -> Path:
    folder = "Scripts" if os.name == "nt" else "bin"
    return env_dir / folder / ("python.exe" if os.name == "nt" else "python")


def fresh_venv(env_dir: Path) -> Path:
    venv.create(env_dir, with_pip=True, clear=True)
    python = python_of(env_dir)
    run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    return python


def usage_of(*command: str | Path) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    assert done.returncode == 1, (command, done.returncode, done.stderr)
    return done.stderr


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="smtp-sink-package-") as tmp_name:
        tmp = Path(tmp_name)
        dist = tmp / "dist"

        step("build the sdist and the wheel; twine check --strict")
        run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
        [sdist] = dist.glob("*.tar.gz")
        [wheel] = dist.glob("*.whl")
        run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)
        with tarfile.open(sdist) as archive:
            names = archive.getnames()
        top = names[0].split("/")[0]
        needs = ["LICENSE", "CHANGELOG.rst", "conftest.py", "tox.ini", "tests/support.py",
                 "tests/differential/sinkdiff.py", "docs/conf.py"]  # fmt: skip
        for needed in needs:
            assert f"{top}/{needed}" in names, f"the sdist lacks {needed}"
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")], "bytecode"
        with zipfile.ZipFile(wheel) as archive:
            assert any(n.endswith(".dist-info/licenses/LICENSE") for n in archive.namelist())
            assert "pytest_smtp_sink/py.typed" in archive.namelist()

        step("a clean venv installs the wheel")
        python = fresh_venv(tmp / "wheel-venv")
        run(python, "-m", "pip", "install", "--quiet", wheel)
        scripts = python.parent
        usage = usage_of(scripts / ("smtp-sink.exe" if os.name == "nt" else "smtp-sink"))
        assert usage.startswith("smtp-sink: fatal: usage: smtp-sink"), usage
        assert usage_of(python, "-m", "pytest_smtp_sink") == usage
        run(python, ROOT / "benchmarks" / "plugin_import.py", "--runs", "15")

        step("a clean venv installs the unpacked sdist and runs its tests")
        with tarfile.open(sdist) as archive:
            if sys.version_info >= (3, 12):
                archive.extractall(tmp / "sdist", filter="data")
            else:
                archive.extractall(tmp / "sdist")  # our own archive
        tree = tmp / "sdist" / top
        python = fresh_venv(tmp / "sdist-venv")
        run(python, "-m", "pip", "install", "--quiet", f"{tree}[test,clients]")
        code = run(python, "-m", "pytest", "-q", "-rs", "-n", "2", "-p", "no:cacheprovider",
                   cwd=tree, check=False)  # fmt: skip
        if code != 0:
            sys.exit(f"check_package: the sdist's tests failed (exit {code})")
    print("\ncheck_package: sdist and wheel OK")


if __name__ == "__main__":
    main()
