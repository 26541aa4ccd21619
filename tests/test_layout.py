"""The product (gateway/, plugins/) never imports the emulators, which are not in its wheel."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("gateway", "plugins")
FORBIDDEN = "emulators"


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an `import` or `from ... import` names, absolute, with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _emulator_imports(root: Path) -> list[str]:
    """`path:line module` for each import of the emulators package under `root`."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in _imported_modules(tree):
            if module == FORBIDDEN or module.startswith(FORBIDDEN + "."):
                hits.append(f"{path.relative_to(root.parent)}:{line} {module}")
    return hits


def test_product_code_never_imports_the_emulators() -> None:
    hits = [hit for package in PRODUCT for hit in _emulator_imports(REPO / package)]
    assert hits == []


def test_the_scan_finds_an_emulator_import(tmp_path: Path) -> None:
    # The guard above passes on an empty list, so it must be shown to see the forms that count.
    (tmp_path / "lazy.py").write_text(
        "def f():\n    from emulators.okta import serve\n", encoding="utf-8"
    )
    (tmp_path / "plain.py").write_text("import emulators.entra as e\n", encoding="utf-8")
    (tmp_path / "ok.py").write_text("from plugins import emulators_helper\n", encoding="utf-8")
    found = [hit.split()[-1] for hit in _emulator_imports(tmp_path)]
    assert found == ["emulators.okta", "emulators.entra"]


def _import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (lazily or for typing too)."""
    dotted = ".".join(package.relative_to(REPO).parts)
    modules = {path.stem for path in package.glob("*.py")} - {"__init__", "__main__"}
    graph: dict[str, set[str]] = {}
    for name in modules:
        tree = ast.parse((package / f"{name}.py").read_text(encoding="utf-8"))
        targets = {
            module.removeprefix(dotted + ".").partition(".")[0]
            for _, module in _imported_modules(tree)
            if module.startswith(dotted + ".")
        }
        for node in ast.walk(tree):  # `from emulators.okta import errors` names a module too
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == dotted:
                targets |= {alias.name for alias in node.names}
        graph[name] = targets & modules
    return graph


def _a_circle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle (its modules in order), or [] when there is none."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return []
        for target in sorted(graph[name]):
            if circle := visit(target, [*path, name]):
                return circle
        done.add(name)
        return []

    for name in sorted(graph):
        if circle := visit(name, []):
            return circle
    return []


def test_emulator_modules_import_one_another_without_a_circle() -> None:
    circles = {
        package: _a_circle(_import_graph(REPO / "emulators" / package))
        for package in ("entra", "okta")
    }
    assert circles == {"entra": [], "okta": []}


def test_the_circle_check_finds_a_circle() -> None:
    assert _a_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _a_circle({"a": {"b"}, "b": set()}) == []
