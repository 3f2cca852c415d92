"""The package's shape holds: each part of `nmt` imports only the layers below it (the table
here), no module imports itself back through others (function-level and TYPE_CHECKING
imports count: a cycle hidden in a function is still a cycle), and no module is over 500
lines. Read from the source with `ast`; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nmt"
MAX_LINES = 500

# Bottom to top. A part (a top-level module or subpackage of nmt) may import the parts of its
# own layer and of the layers below it, never those above.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"", "vocab", "fileio", "outputs", "config", "machine", "allocator", "scoring"}),
    ("model", {"model", "tokenizer", "decoding", "search", "inputs", "ensemble", "weights"}),
    ("checkpoints", {"checkpoint"}),
    ("data", {"data"}),
    ("prepare", {"prepare"}),
    ("engines", {"export", "backends", "translate"}),
    ("training", {"training"}),
    ("tasks", {"evaluate", "vmap", "distill", "bench", "zoo"}),
    ("serve", {"serve"}),
    ("pipeline", {"pipeline"}),
    ("cli", {"cli", "__main__"}),
]
LEVEL = {part: level for level, (_, parts) in enumerate(LAYERS) for part in parts}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its `__init__`)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(path: Path, name: str) -> set[str]:
    """The nmt modules `path` imports anywhere in it (relative imports resolved)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "nmt"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "nmt":
                continue
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from nmt import model`
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the modules it imports (names that are not modules dropped)."""
    mods = modules()
    return {m: {i for i in imports(p, m) if i in mods and i != m} for m, p in mods.items()}


def part(module: str) -> str:
    names = module.split(".")
    return names[1] if len(names) > 1 else ""


def test_every_part_has_a_layer():
    unknown = sorted({part(m) for m in modules()} - set(LEVEL))
    assert not unknown, f"parts missing from LAYERS: {unknown}"


def test_parts_import_only_their_layer_and_those_below():
    upward = [
        f"{m} ({LAYERS[LEVEL[part(m)]][0]}) imports {i} ({LAYERS[LEVEL[part(i)]][0]})"
        for m, targets in graph().items()
        for i in sorted(targets)
        if LEVEL[part(i)] > LEVEL[part(m)]
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    g = graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join([*path[path.index(n) :], n]))
            elif n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_over_500_lines(module):
    lines = len(modules()[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines (split it: one concept per module)"
