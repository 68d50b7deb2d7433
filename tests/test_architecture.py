"""The layering read from the code's own imports (docs/ARCHITECTURE.md): no import cycle between
divebatch modules, nothing outside divebatch/cli imports the CLI (but __main__), and the library
never imports streamlit."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "divebatch"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path) -> set[str]:
    """Every dotted name an import statement of `path` reaches (relative imports resolved)."""
    package = (module_name(path) if path.name == "__init__.py"
               else module_name(path).rpartition(".")[0])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def module_imports(path: Path) -> set[str]:
    """The divebatch modules `path` imports; `divebatch` itself (lazy public API) is left out."""
    return {name for name in imported_names(path)
            if name in MODULES and name not in ("divebatch", module_name(path))}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules, or [] (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycle_between_divebatch_modules():
    graph = {name: module_imports(path) for name, path in MODULES.items()}
    assert find_cycle(graph) == []


def test_only_the_cli_and_main_import_the_cli():
    sources = [*MODULES.values(), *(ROOT / "dashboard").rglob("*.py"),
               *(ROOT / "app_pages").rglob("*.py"), ROOT / "app.py"]
    offenders = [str(path.relative_to(ROOT)) for path in sources
                 if not module_name(path).startswith(("divebatch.cli", "divebatch.__main__"))
                 and any(name == "divebatch.cli" or name.startswith("divebatch.cli.")
                         for name in imported_names(path))]
    assert offenders == []


def test_the_library_never_imports_streamlit():
    offenders = [name for name, path in MODULES.items()
                 if any(n.split(".")[0] == "streamlit" for n in imported_names(path))]
    assert offenders == []


def test_the_store_imports_nothing_of_the_package_but_its_own_modules():
    own = {"divebatch.runs.schema", "divebatch.runs.sqlite_file", "divebatch.runs.store_rows"}
    assert module_imports(MODULES["divebatch.runs.store"]) == own
    assert all(module_imports(MODULES[name]) == set() for name in own)
