"""The library reads like the paper: imports flow one way, modules stay short,
private names stay in their module. Static checks on the source (ast), no imports run."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "depthg_lib"
MAX_LINES = 500  # a longer module is split by concern (as train/, data/synthscenes/)
MAX_FUNCTION_LINES = 60  # `def` line to last line: one screen


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


class _Imports(ast.NodeVisitor):
    """Every import of a library module in one file: (target, names, line, in a function)."""

    def __init__(self, name: str, is_package: bool, modules: dict[str, Path]):
        self.name, self.modules = name, modules
        self.package = name if is_package else name.rpartition(".")[0]
        self.depth = 0
        self.found: list[tuple[str, str | None, int, bool]] = []  # (module, name, line, lazy)
        self.aliases: dict[str, str] = {}  # local name → library module it is bound to

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node):
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            for child in node.orelse:  # the TYPE_CHECKING branch never runs
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                self.found.append((alias.name, None, node.lineno, self.depth > 0))
                if alias.asname:
                    self.aliases[alias.asname] = alias.name

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.package.split(".")
            base = base[:len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        if not (module == PACKAGE or module.startswith(PACKAGE + ".")):
            return
        for alias in node.names:
            sub = f"{module}.{alias.name}"
            if sub in self.modules:  # `from . import x` where x is a module
                self.found.append((sub, None, node.lineno, self.depth > 0))
                self.aliases[alias.asname or alias.name] = sub
            else:
                self.found.append((module, alias.name, node.lineno, self.depth > 0))


@functools.cache
def _scan(root: Path = ROOT):
    modules = _modules(root)
    scans = {}
    for name, path in modules.items():
        visitor = _Imports(name, path.name == "__init__.py", modules)
        tree = ast.parse(path.read_text(), filename=str(path))
        visitor.visit(tree)
        scans[name] = (visitor, tree)
    return root, modules, scans


def _graph(modules, scans, with_lazy: bool) -> dict[str, set[str]]:
    """Module → the library modules importing it runs. Importing a.b.c first runs the
    packages a.b and a (those the importer is not itself inside)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (visitor, _) in scans.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        for target, _, _, lazy in visitor.found:
            if lazy and not with_lazy:
                continue
            parts = target.split(".")
            for i in range(2, len(parts) + 1):
                step = ".".join(parts[:i])
                if step in modules and step != name and step not in own - {target}:
                    graph[name].add(step)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(_path_within(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _path_within(graph, component: set[str]) -> list[str]:
    """A closed path a → … → a through the component (for a readable message)."""
    start = min(component)
    parent = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if w not in parent:
                parent[w] = v
                queue.append(w)
    return sorted(component)


def _private(name: str | None) -> bool:
    return bool(name) and name.startswith("_") and not name.startswith("__")


# ------------------------------------------------------------------------------ the checks

def test_no_import_cycles():
    _, modules, scans = _scan()
    cycles = _cycles(_graph(modules, scans, with_lazy=False))
    assert not cycles, "import cycles in the library: " + "; ".join(" → ".join(c) for c in cycles)


def test_no_cycle_hidden_by_an_import_inside_a_function():
    _, modules, scans = _scan()
    cycles = _cycles(_graph(modules, scans, with_lazy=True))
    assert not cycles, ("imports inside functions hide import cycles (move the shared code "
                        "down instead): " + "; ".join(" → ".join(c) for c in cycles))


def test_modules_are_short():
    long = {}
    for path in _modules().values():
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            long[rel] = lines
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): {long}"


def _long_functions(root: Path = ROOT) -> dict[str, int]:
    """`path:Class.function` → lines from `def` to its last line, for every function (methods
    and nested functions too; a nested one counts in its parent as well)."""
    found = {}

    def walk(node, path: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = child.end_lineno - child.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found[f"{path}:{prefix}{child.name}"] = lines
                walk(child, path, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, path, f"{prefix}{child.name}.")
            else:
                walk(child, path, prefix)

    for path in _modules(root).values():
        walk(ast.parse(path.read_text()), path.relative_to(root).as_posix(), "")
    return found


def test_no_function_over_60_lines():
    long = _long_functions()
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines (split them into steps that "
                      f"each do one thing): {long}")


def _private_uses(root, modules, scans) -> list[str]:
    """`from x import _name` and `x._name` where x is another library module."""
    found = []
    for name, (visitor, tree) in scans.items():
        where = modules[name].relative_to(root).as_posix()
        for target, imported, line, _ in visitor.found:
            if _private(imported) and target != name:
                found.append(f"{where}:{line} imports {target}.{imported}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in visitor.aliases
                    and visitor.aliases[node.value.id] != name):
                found.append(f"{where}:{node.lineno} uses "
                             f"{visitor.aliases[node.value.id]}.{node.attr}")
    return found


def test_no_private_name_used_across_modules():
    found = _private_uses(*_scan())
    assert not found, "private names used outside their module: " + "; ".join(found)


# ------------------------------------------------------------------------------ the checker


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_see_cycles_lazy_imports_and_private_names(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import helper\n",
        "b.py": "def helper():\n    from .a import thing\n",
        "c.py": "from . import d\nx = d._secret\nfrom .d import _other, public\n",
        "d.py": "from .e import y\n",
        "e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import z\n",
        "pkg/__init__.py": "from ..f import g\n",
        "pkg/m.py": "x = 1\n",
        "f.py": "from .pkg.m import x\n",  # runs pkg/__init__.py first, which imports f
    })
    root, modules, scans = _scan(root)
    strict = _cycles(_graph(modules, scans, with_lazy=False))
    lazy = _cycles(_graph(modules, scans, with_lazy=True))
    assert strict == [["depthg_lib.f", "depthg_lib.pkg", "depthg_lib.f"]]
    assert sorted(sorted(set(c)) for c in lazy) == [["depthg_lib.a", "depthg_lib.b"],
                                                    ["depthg_lib.f", "depthg_lib.pkg"]]
    uses = _private_uses(root, modules, scans)
    assert uses == ["depthg_lib/c.py:3 imports depthg_lib.d._other",
                    "depthg_lib/c.py:2 uses depthg_lib.d._secret"]


def test_the_length_check_sees_long_functions_methods_and_nested_ones(tmp_path):
    body = "    x = 1\n" * (MAX_FUNCTION_LINES - 1)
    root = _write(tmp_path, {
        "__init__.py": "",
        "m.py": ("def ok():\n" + body + "\n\ndef long():\n" + body + "    return x\n\n\n"
                 "class C:\n    def method(self):\n        def inner():\n"
                 + "    " * 2 + body.replace("\n", "\n        ").rstrip(" ")
                 + "            return x\n"),
    })
    assert _long_functions(root) == {"depthg_lib/m.py:long": MAX_FUNCTION_LINES + 1,
                                     "depthg_lib/m.py:C.method": MAX_FUNCTION_LINES + 2,
                                     "depthg_lib/m.py:C.method.inner": MAX_FUNCTION_LINES + 1}
