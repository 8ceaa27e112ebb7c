"""Sphinx configuration of the pytest-smtp-sink documentation (``tox -e docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]

import pytest_smtp_sink  # noqa: E402

project = "pytest-smtp-sink"
author = "The pytest-smtp-sink developers"
copyright = "2026, " + author
release = version = pytest_smtp_sink.__version__

extensions = ["sphinx.ext.autodoc", "smtp_sink_docs"]
exclude_patterns = ["_build"]
root_doc = "index"
nitpicky = False
html_theme = "alabaster"
html_title = f"pytest-smtp-sink {release}"
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "show-inheritance": False}
# Every page's examples come from README.rst or docstrings; both are run by the tests.
