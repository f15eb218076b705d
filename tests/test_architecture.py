"""The house: subpackages by stage, imports pointing one way, database drivers only in the store.

Reads every module's imports (those inside functions too) with the ast module: nothing is run.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "facewatch"
# who may import whom: a module imports its own subpackage, or one of a lower rank
RANKS = {"__init__": 0, "config": 0, "store": 1, "checkpoint": 2, "metadata": 2, "intake": 3, "analysis": 3,
         "people": 4, "results": 5, "web": 6, "service": 7, "cli": 8, "__main__": 9}
DRIVERS = {"sqlite3", "psycopg", "psycopg_pool", "psycopg_binary"}


def modules() -> dict[str, Path]:
    """facewatch's modules by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, name: str) -> set[str]:
    """Every module `path` imports, anywhere in it, as dotted names (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from facewatch.x import module`
    return found


def part(module: str) -> str:
    """The subpackage (or top-level module) of a facewatch module: its rank's key."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    names = modules()
    return {name: {m for m in imports(path, name) if m in names and m != name} for name, path in names.items()}


def test_every_module_lives_in_a_ranked_place_and_every_subpackage_says_what_it_owns():
    names = modules()
    assert {part(m) for m in names} <= set(RANKS), sorted({part(m) for m in names} - set(RANKS))
    for package in ("store", "metadata", "intake", "analysis", "people", "service", "results", "web", "cli"):
        doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 25, f"facewatch/{package}/__init__.py needs a paragraph on what it owns"
        assert "import" in doc, f"facewatch/{package}/__init__.py should say what it may import"
    flat = [p.name for p in PACKAGE.glob("*.py")]
    assert sorted(flat) == ["__init__.py", "__main__.py", "checkpoint.py", "config.py"], flat


def test_imports_point_one_way(graph):
    wrong = [f"{a} imports {b}" for a, targets in graph.items() for b in targets
             if part(a) != part(b) and RANKS[part(b)] >= RANKS[part(a)]]
    assert not wrong, "imports against the stages' order:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle(graph):
    """Not even through imports inside functions: each would be a knot in the house's plan."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str):
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, " -> ".join(cycle)


def test_only_the_store_touches_a_database_driver():
    names = modules()
    outside = {name: sorted(m for m in imports(path, name) if m.split(".")[0] in DRIVERS)
               for name, path in names.items() if part(name) != "store"}
    assert not {k: v for k, v in outside.items() if v}, outside


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The checks above can fail: an import against the order, and a driver, are both found."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from facewatch.cli.main import main\n    import sqlite3\n")
    found = imports(module, "facewatch.store.bad")
    assert "facewatch.cli.main" in found and "sqlite3" in found
    assert RANKS[part("facewatch.cli.main")] > RANKS[part("facewatch.store.bad")]
