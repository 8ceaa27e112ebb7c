"""The architecture holds: who may import whom (DESIGN §1), and no import cycles.

Every import statement counts, also those inside functions and behind ``TYPE_CHECKING``: a
cycle hidden from the interpreter is still a cycle for the reader.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = "pytest_smtp_sink"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# layer -> (layers it may import, third-party top-level modules it may import)
RULES: dict[str, tuple[set[str], set[str]]] = {
    "core": (set(), set()),
    "dump": ({"core"}, set()),
    "server": ({"core", "dump"}, {"trio", "trustme"}),
    "cli": ({"core", "server"}, {"trio"}),
    "plugin": ({"core", "dump", "server"}, {"trio", "pytest", "sniffio", "trustme"}),
}
# Imported for type checkers only (under TYPE_CHECKING), never at run time.
TYPING_ONLY = {"typing_extensions"}
# The package's front doors: the lazy public namespace and ``python -m``.
FRONT = {PACKAGE, f"{PACKAGE}.__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of everything ``name`` imports (modules where they are modules)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = name.split(".")
                if not is_package:
                    base_parts.pop()
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != PACKAGE or module in FRONT:
        return None
    return parts[1] if parts[1] != "cli" else "cli"


def test_the_package_has_the_four_layers() -> None:
    layers = {_layer(m) for m in MODULES} - {None}
    assert layers == set(RULES)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in FRONT))
def test_imports_follow_the_layers(module: str) -> None:
    layer = _layer(module)
    assert layer is not None
    allowed_layers, allowed_third = RULES[layer]
    bad = []
    for target in sorted(GRAPH[module]):
        top = target.split(".")[0]
        if top == PACKAGE:
            other = _layer(target)
            if other is None or (other != layer and other not in allowed_layers):
                bad.append(target)
        elif top not in sys.stdlib_module_names | allowed_third | TYPING_ONLY | {"__future__"}:
            bad.append(target)
    assert bad == [], f"{module} ({layer}) may not import {bad}"


def test_no_import_cycles() -> None:
    inner = {m: {t for t in ts if t in MODULES and t not in FRONT} for m, ts in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(inner[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(inner):
        if module not in state:
            visit(module)


def test_core_needs_nothing_but_the_standard_library() -> None:
    """Run in a fresh interpreter: importing all of core loads no third-party module."""
    import subprocess

    code = (
        "import sys\n"
        f"import {PACKAGE}.core.argv, {PACKAGE}.core.protocol\n"
        "third = sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)"
        f" - {{'{PACKAGE}', '__main__', '_distutils_hack', 'sitecustomize'}})\n"
        "third = [m for m in third if not m.startswith('__editable__')]\n"
        "print(third)\n"
    )
    # -I: no PYTHONPATH, so no sitecustomize of the simulated platform (it preloads trio)
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
