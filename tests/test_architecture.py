"""The package's shape: stage subpackages, one-way imports, small modules with a stated job."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "speechpipe"
STAGES = ("audio", "asr", "speakers", "prosody", "tagging", "outputs")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """speechpipe modules that ``path`` imports, at module level or inside functions."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("speechpipe"):
            assert node.level == 0, f"{path}: relative import (the package uses absolute imports)"
            found.update(filter(None, (resolve(f"{node.module}.{a.name}") for a in node.names)))
        elif isinstance(node, ast.Import):
            found.update(filter(None, (resolve(a.name) for a in node.names if a.name.startswith("speechpipe"))))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    mods = _modules()
    graph = {m: _imports(p, mods) - {m} for m, p in mods.items()}
    # a package's __init__ importing its own submodules is not a cycle of design
    for m in graph:
        graph[m] = {t for t in graph[m] if not (m != "speechpipe" and t.startswith(m + "."))}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_stage_subpackages_exist():
    for stage in STAGES:
        assert (PKG / stage / "__init__.py").is_file(), stage


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_is_small_and_says_its_job(name):
    path = _modules()[name]
    if "static" in path.parts:
        return
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{path}: {lines} lines (at most {MAX_LINES})"
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert doc and doc.strip().splitlines()[0].endswith((".", ")")), f"{path}: no one-line docstring saying its job"
