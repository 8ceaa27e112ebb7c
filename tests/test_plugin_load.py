"""What an installed plugin costs a pytest run that never uses it: it loads only light
modules of its own (benchmarks/plugin_import.py measures the time), and the generated
ini help stays the option table's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_smtp_sink.core.options import INI_HELP_MODULE, ini_help_module

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
# What loading the plugin may import of ours; everything else waits for a fixture.
LIGHT = {
    "pytest_smtp_sink",
    "pytest_smtp_sink.plugin",
    "pytest_smtp_sink.plugin.ini_help",
    "pytest_smtp_sink.plugin.keys",
    "pytest_smtp_sink.plugin.seeds",
}
DUMP_MODULES = """
import json, sys

def pytest_sessionfinish(session):
    with open("modules.json", "w") as f:
        json.dump(sorted(sys.modules), f)
"""


def test_ini_help_module_is_generated_from_the_option_table() -> None:
    """After changing an option: ``python -m pytest_smtp_sink.core.options``."""
    assert (ROOT / INI_HELP_MODULE).read_text(encoding="utf-8") == ini_help_module()


def _loaded(pytester: pytest.Pytester, *args: str) -> set[str]:
    pytester.makeconftest(DUMP_MODULES)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--co", "-q", "-p", "no:cacheprovider", *args)
    assert result.ret == 0, result.stdout.str()
    return set(json.loads((pytester.path / "modules.json").read_text()))


def test_an_unused_plugin_loads_only_light_modules(pytester: pytest.Pytester) -> None:
    with_plugin = _loaded(pytester)
    without = _loaded(pytester, "-p", "no:smtp_sink")
    extra = with_plugin - without
    assert {m for m in extra if m.startswith("pytest_smtp_sink")} == LIGHT
    assert extra <= LIGHT, sorted(extra - LIGHT)  # nothing of anyone else's either


def test_ini_options_load_the_converters_and_are_checked(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nsmtp_sink_hostname = mx.test\n")
    assert "pytest_smtp_sink.core.config" in _loaded(pytester)
    assert "pytest_smtp_sink.server.server" not in _loaded(pytester)
    pytester.makeini("[pytest]\nsmtp_sink_timeout = soon\n")
    result = pytester.runpytest_subprocess("--co", "-q")
    result.stderr.fnmatch_lines(["*smtp_sink ini option: smtp_sink_timeout:*"])
    assert result.ret != 0
