"""The layering read from the code's own imports (docs/ARCHITECTURE.md): the layer order, no
import cycle between divebatch modules, nothing outside divebatch/cli imports the CLI (but
__main__), the library never imports streamlit, and no library file over 400 lines."""

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "divebatch"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"

# The layer order of docs/ARCHITECTURE.md ("Dependency direction"), top first: a module may
# import its own layer and those below it, never one above. Names are modules or packages,
# inside divebatch for the second order.
LAYERS = {
    "outside": (("app", "app_pages"), ("dashboard",), ("divebatch",)),
    "divebatch": (("__main__", "cli"), ("report",), ("experiments",), ("runs",), ("training",),
                  ("meter", "schedulers", "data", "models"),
                  ("config", "presets", "device_options", "paths", "links", "words")),
}
MAX_LIBRARY_LINES = 400


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


def layer_of(module: str) -> tuple[int, int] | None:
    """(outer layer, layer inside divebatch) of a dotted module name, 0 = top; a deeper
    name belongs to its package's layer. None: in no layer (not ours, or unplaced)."""
    parts = module.split(".")
    outer = next((depth for depth, names in enumerate(LAYERS["outside"])
                  if parts[0] in names), None)
    if outer is None:
        return None
    if parts[0] != "divebatch":
        return outer, 0
    if len(parts) == 1:  # the lazy public API, which reaches every layer on demand
        return None
    inner = next((depth for depth, names in enumerate(LAYERS["divebatch"])
                  if parts[1] in names), None)
    return None if inner is None else (outer, inner)


def layered_sources() -> dict[str, Path]:
    """Every module of the library, the dashboard, the pages and the router."""
    paths = [*PACKAGE.rglob("*.py"), *(ROOT / "dashboard").rglob("*.py"),
             *(ROOT / "app_pages").rglob("*.py"), ROOT / "app.py"]
    return {module_name(path): path for path in sorted(paths)}


def order_text(layers) -> str:
    return " -> ".join(names[0] if len(names) == 1 else f"({', '.join(names)})"
                       for names in layers)


def test_the_layer_table_is_the_documented_one():
    documented = " ".join(ARCHITECTURE.read_text(encoding="utf-8").split())
    for layers in LAYERS.values():
        assert f"`{order_text(layers)}`" in documented, order_text(layers)


def test_every_module_has_a_layer():
    unplaced = [name for name in layered_sources()
                if name != "divebatch" and layer_of(name) is None]
    assert unplaced == []


def test_layer_of_reads_packages_and_names_inside_them():
    assert layer_of("divebatch.training.trainer.Trainer") == (2, 4)
    assert layer_of("divebatch.config") == (2, 6) and layer_of("dashboard.live") == (1, 0)
    assert layer_of("app") == layer_of("app_pages.sweep") == (0, 0)
    assert layer_of("torch.nn") is None and layer_of("divebatch") is None


def test_no_module_imports_a_higher_layer():
    upward = [f"{name} imports {imported}"
              for name, path in layered_sources().items() if name != "divebatch"
              for imported in sorted(imported_names(path))
              if (layer := layer_of(imported)) is not None and layer < layer_of(name)]
    assert upward == []


def test_no_library_file_is_over_400_lines():
    long = {str(path.relative_to(ROOT)): lines for path in sorted(PACKAGE.rglob("*.py"))
            if (lines := len(path.read_text(encoding="utf-8").splitlines()))
            > MAX_LIBRARY_LINES}
    assert long == {}


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
