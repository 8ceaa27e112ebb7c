"""Sphinx glue: what the docs generate from the code instead of repeating it.

``.. smtp-sink-option-table::`` is the option table (``core/options.py``).
``.. smtp-sink-fields:: SinkConfig`` (or ``SinkOptions``) documents each field or key by its
rows of that table.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any, ForwardRef

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from pytest_smtp_sink import SinkConfig, SinkOptions
from pytest_smtp_sink.core.options import CLI_ONLY, OPTIONS, PLUGIN_ONLY, Option, readme_table

_ROWS: dict[str, list[Option]] = defaultdict(list)
for _option in OPTIONS:
    _ROWS[_option.name].append(_option)


def _parse(directive: SphinxDirective, text: str, source: str) -> list[nodes.Node]:
    container = nodes.container()
    directive.state.nested_parse(
        StringList(text.splitlines(), source=source), directive.content_offset, container
    )
    return list(container.children)


class OptionTable(SphinxDirective):
    """The option table, as ``readme_table()`` renders it."""

    def run(self) -> list[nodes.Node]:
        return _parse(self, readme_table(), "pytest_smtp_sink/core/options.py")


def _type_text(annotation: Any) -> str:
    if isinstance(annotation, ForwardRef):
        return annotation.__forward_arg__
    return annotation if isinstance(annotation, str) else repr(annotation)


def _row_text(row: Option) -> str:
    """``-8``, ``eightbitmime=False``: do not announce 8BITMIME"""
    spelled = []
    if row.flag:
        spelled.append(f"``-{row.flag}{' ' + row.metavar if row.metavar else ''}``")
    if row.long:
        spelled.append(f"``--{row.long}``")
    if row.scope != CLI_ONLY:
        spelling = row.spelling
        spelled.append(spelling if spelling.startswith(("(", "``")) else f"``{spelling}``")
    return f"{', '.join(spelled)}: {row.meaning}"


def _entry(name: str, type_text: str, value: str | None) -> list[str]:
    """A ``py:attribute`` of the class being documented (the directive sits in its body)."""
    rows = _ROWS[name]
    lines = [f".. py:attribute:: {name}", f"   :type: {type_text}"]
    if value is not None:
        lines.append(f"   :value: {value}")
    lines.append("")
    for row in rows:
        lines += [f"   {_row_text(row)}", ""]
    if all(row.scope == CLI_ONLY for row in rows):
        lines += ["   (command line only)", ""]
    elif all(row.scope == PLUGIN_ONLY for row in rows):
        lines += ["   (markers, the factory and ``configure`` only: no ini option)", ""]
    else:
        lines += [f"   (ini ``smtp_sink_{name}``)", ""]
    return lines


class Fields(SphinxDirective):
    """Every field of ``SinkConfig`` or key of ``SinkOptions``, from its option rows."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        cls = self.arguments[0]
        lines: list[str] = []
        if cls == "SinkConfig":
            for f in dataclasses.fields(SinkConfig):
                if f.default is not dataclasses.MISSING:
                    value: str | None = repr(f.default)
                elif f.default_factory is not dataclasses.MISSING:
                    value = repr(f.default_factory())
                else:
                    value = None
                lines += _entry(f.name, _type_text(f.type), value)
        elif cls == "SinkOptions":
            for name, annotation in SinkOptions.__annotations__.items():
                lines += _entry(name, _type_text(annotation), None)
        else:
            raise self.error(f"no fields known for {cls}")
        return _parse(self, "\n".join(lines), f"pytest_smtp_sink ({cls})")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("smtp-sink-option-table", OptionTable)
    app.add_directive("smtp-sink-fields", Fields)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
