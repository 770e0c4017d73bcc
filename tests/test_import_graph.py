"""The modules of runtime/ import each other without a cycle.

Every ``import`` and ``from ... import`` is read with ``ast``: at module level and inside functions
alike (a lazy import inside a function hides a cycle from the interpreter until that function runs,
it does not remove it). Imports under ``if TYPE_CHECKING:`` never run and are left out.

Packages: ``from runtime.x import y`` imports the module ``runtime.x.y`` when ``y`` is a submodule,
and ``runtime.x``'s ``__init__`` (the node ``runtime.x``) only for a name defined there (or
``import runtime.x``). An edge into a package's ``__init__`` counts only when it has real content
(more than a docstring): an empty one cannot take part in a cycle. Python runs ``runtime.x``'s
``__init__`` before any of its submodules, but importing a submodule uses nothing the ``__init__``
defines (only the package's ``__path__``, set before the ``__init__`` runs), so that is no edge: a
package ``__init__`` importing its submodules is normal.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "runtime"


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    imports: list[tuple[str, tuple[str, ...], int]] = field(default_factory=list)
    """(module, names, line): ``import a.b`` is ``("a.b", (), line)``, ``from a import b, c`` is
    ``("a", ("b", "c"), line)``; relative imports made absolute."""


def read_modules(root: Path = ROOT / PACKAGE) -> dict[str, Module]:
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module = Module(name, path, is_package, tree)
        module.imports = list(_imports(module))
        modules[name] = module
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_run_time(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _walk_run_time(other)
            continue
        yield child
        yield from _walk_run_time(child)


def _imports(module: Module) -> Iterator[tuple[str, tuple[str, ...], int]]:
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in _walk_run_time(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            yield source, tuple(alias.name for alias in node.names), node.lineno


def has_real_content(module: Module) -> bool:
    """More than a docstring (and ``from __future__`` imports)."""
    for statement in module.tree.body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue
        if isinstance(statement, ast.ImportFrom) and statement.module == "__future__":
            continue
        return True
    return False


def import_graph(modules: dict[str, Module]) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}, between runtime.* modules, as explained above."""
    graph: dict[str, dict[str, int]] = {}
    for name, module in modules.items():
        edges: dict[str, int] = {}
        for source, names, line in module.imports:
            submodules = [f"{source}.{item}" for item in names if f"{source}.{item}" in modules]
            # ``import a.b``, or a name (not a submodule) of ``from a import name``: the module itself.
            targets = submodules + ([source] if len(submodules) < len(names) or not names else [])
            for target in targets:
                if target == name or target not in modules:
                    continue  # outside runtime/
                if modules[target].is_package and not has_real_content(modules[target]):
                    continue
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (depth first, without recursion)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                done.add(path.pop())
            elif following in path:
                return path[path.index(following) :] + [following]
            elif following not in done:
                path.append(following)
                stack.append(iter(sorted(graph.get(following, {}))))
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Module]) -> str:
    steps = []
    for importer, imported in zip(cycle, cycle[1:]):
        module = modules[importer]
        root = module.path.parents[len(importer.split(".")) - (0 if module.is_package else 1)]
        where = module.path.relative_to(root)
        steps.append(f"  {importer} imports {imported} ({where}:{graph[importer][imported]})")
    return "import cycle in runtime/ (move what both sides need into a module of its own):\n" + "\n".join(steps)


def test_runtime_has_no_import_cycle():
    modules = read_modules()
    assert "runtime.api.app" in modules and "runtime.engines" in modules  # read where expected
    graph = import_graph(modules)
    cycle = find_cycle(graph)
    assert cycle is None, describe(cycle, graph, modules)


# --- the test's own reading of imports ---------------------------------------------------------


def _graph_of(tmp_path: Path, files: dict[str, str]) -> dict[str, dict[str, int]]:
    for relative, text in files.items():
        path = tmp_path / PACKAGE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(read_modules(tmp_path / PACKAGE))


def test_a_lazy_import_inside_a_function_closes_a_cycle(tmp_path):
    graph = _graph_of(
        tmp_path,
        {
            "__init__.py": '"""Docs."""\n',
            "a.py": "from runtime.b import thing\n",
            "b.py": "def f():\n    from runtime.a import other  # lazy\n",
        },
    )
    assert find_cycle(graph) == ["runtime.a", "runtime.b", "runtime.a"]
    modules = read_modules(tmp_path / PACKAGE)
    assert describe(["runtime.a", "runtime.b", "runtime.a"], graph, modules).endswith(
        "  runtime.a imports runtime.b (runtime/a.py:1)\n  runtime.b imports runtime.a (runtime/b.py:2)"
    )


def test_from_a_package_import_a_submodule_is_an_import_of_the_submodule(tmp_path):
    graph = _graph_of(
        tmp_path,
        {
            "__init__.py": "",
            "pkg/__init__.py": "from runtime.pkg.x import X\n",
            "pkg/x.py": "from runtime.pkg import y\nX = 1\n",
            "pkg/y.py": "from .. import z\nfrom . import x\n",
            "z.py": "import os\nimport runtime.pkg.y\n",
        },
    )
    assert graph["runtime.pkg"] == {"runtime.pkg.x": 1}
    assert graph["runtime.pkg.x"] == {"runtime.pkg.y": 1}
    assert graph["runtime.pkg.y"] == {"runtime.z": 1, "runtime.pkg.x": 2}
    assert graph["runtime.z"] == {"runtime.pkg.y": 2}
    assert find_cycle(graph) == ["runtime.pkg.x", "runtime.pkg.y", "runtime.pkg.x"]


def test_a_package_init_counts_only_for_its_names_and_with_real_content(tmp_path):
    files = {
        "__init__.py": "",
        "empty/__init__.py": '"""Docs."""\nfrom __future__ import annotations\n',
        "empty/sub.py": "import runtime.user\n",
        "user.py": "from runtime.empty import sub\nfrom runtime import empty\nimport runtime.full\n",
        "full/__init__.py": "from runtime.full.part import Part\n",
        "full/part.py": "Part = 1\n",
        "full/other.py": "from runtime.full import Part, part\n",
    }
    graph = _graph_of(tmp_path, files)
    assert graph["runtime.user"] == {"runtime.empty.sub": 1, "runtime.full": 3}
    assert graph["runtime.full"] == {"runtime.full.part": 1}
    assert graph["runtime.full.other"] == {"runtime.full.part": 1, "runtime.full": 1}
    assert find_cycle(graph) == ["runtime.empty.sub", "runtime.user", "runtime.empty.sub"]
    # A submodule that takes a name from its package's __init__ while the __init__ imports it: a cycle.
    files["full/part.py"] = "from runtime.full import other\nfrom runtime.full import Other\n"
    files["empty/sub.py"] = ""
    graph = _graph_of(tmp_path, files)
    assert graph["runtime.full.part"] == {"runtime.full.other": 1, "runtime.full": 2}
    assert find_cycle(graph) == ["runtime.full", "runtime.full.part", "runtime.full"]


def test_type_checking_imports_never_run(tmp_path):
    graph = _graph_of(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import runtime.b\n",
            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import runtime.a\nelse:\n    import os\n",
        },
    )
    assert graph["runtime.b"] == {}
    assert find_cycle(graph) is None
