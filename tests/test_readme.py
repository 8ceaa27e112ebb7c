"""Every python example of README.rst and of the docs (docs/*.rst) is run as a user would run
it, and type-checked; the docs' pages are README's sections (``.. include::``) and pages of
their own."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.rst"
DOCS = README.parent / "docs"


def python_blocks() -> list[str]:
    blocks = []
    for source in [README, *sorted(DOCS.glob("*.rst"))]:
        text = source.read_text(encoding="utf-8")
        for match in re.finditer(r"^\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text, re.M):
            blocks.append(textwrap.dedent(match.group(1)))
    return blocks


def test_docs_include_existing_readme_sections() -> None:
    """Each ``:start-after:``/``:end-before:`` marker a docs page names is in README.rst."""
    readme = README.read_text(encoding="utf-8")
    markers = []
    for page in sorted(DOCS.glob("*.rst")):
        markers += re.findall(r":(?:start-after|end-before): (.+)", page.read_text("utf-8"))
    assert markers
    for marker in markers:
        assert readme.count(marker) == 1, marker


def test_readme_has_examples() -> None:
    blocks = python_blocks()
    assert sum("def test_" in b for b in blocks) >= 6


def test_readme_examples_pass(pytester: pytest.Pytester) -> None:
    files = {}
    for i, block in enumerate(b for b in python_blocks() if "def test_" in b):
        files[f"test_readme_{i}"] = block
    pytester.makepyfile(**files)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=sum(b.count("def test_") for b in files.values()))


def test_readme_trio_example_runs() -> None:
    """The open_sink example, completed with a real client."""
    import smtplib

    import trio

    from pytest_smtp_sink import open_sink

    async def check() -> None:
        async with open_sink(hostname="mx.test") as sink:

            def send() -> None:
                with smtplib.SMTP(sink.host, sink.port or 0) as smtp:
                    smtp.sendmail("a@example.com", ["b@example.com"], "Subject: x\r\n\r\nx\r\n")

            await trio.to_thread.run_sync(send)
            [tx] = await sink.wait_async(count=1)
            assert "by mx.test (smtp-sink)" in tx.received

    trio.run(check)


def test_readme_option_table_is_the_option_table() -> None:
    """README's option table is generated from the one option table (core/options.py).

    After adding or changing an option, paste ``readme_table()``'s output into README.rst.
    """
    from pytest_smtp_sink.core.options import readme_table

    assert readme_table() in README.read_text(encoding="utf-8")


def test_readme_examples_type_check(tmp_path: Path) -> None:
    """README's examples pass ``mypy --strict``: the API is typed the way they use it."""
    import os
    import subprocess
    import sys

    try:
        import mypy  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("mypy is not installed (the test extra has it)")
        pytest.skip("mypy is not installed")
    files = []
    for i, block in enumerate(python_blocks()):
        path = tmp_path / f"readme_{i}.py"
        path.write_text(block)
        files.append(str(path))
    # MYPYPATH: the package's sources (an editable install is invisible to mypy)
    env = {**os.environ, "MYPYPATH": str(README.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-version",
         "3.10", *files],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
