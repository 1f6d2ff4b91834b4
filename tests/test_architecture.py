"""The import rules of ``docs/architecture.md``: every module of the package imports downward only.

The layers are read from the table under "Import rules" in the document, so the document and this check cannot
drift apart. A module may import its own subpackage and any subpackage of a lower layer; an import of a subpackage
on its own layer or above fails, naming the module, the line and the import. Imports inside functions count as much
as those at the top of a module. ``cxrkd_monai/__init__.py`` exposes the subpackages and is above them all. No two
modules import each other, directly or through a chain, and ``metrics`` holds no Ignite code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import imported_modules

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cxrkd_monai"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def read_layers(document: Path) -> dict[str, int]:
    """``{subpackage or top-level module: layer}`` from the ``| layer | subpackages | ... |`` table of the document's
    "Import rules" section."""
    text = document.read_text()
    section = re.search(r"^## Import rules\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    if section is None:
        raise ValueError(f"{document} has no '## Import rules' section.")
    layers = {}
    for layer, names in re.findall(r"^\| (\d+) \| ([^|]+) \|", section.group(1), flags=re.MULTILINE):
        for name in re.findall(r"`([\w.]+)`", names):
            if name in layers:
                raise ValueError(f"{document}: {name!r} is on two layers, {layers[name]} and {layer}.")
            layers[name] = int(layer)
    if not layers:
        raise ValueError(f"{document}: the 'Import rules' section has no '| <layer> | `subpackage`, ... |' rows.")
    return layers


def _module_name(path: Path, package_dir: Path) -> list[str]:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def import_violations(package_dir: Path, layers: dict[str, int]) -> list[str]:
    """One message per import that breaks the layering, and one per subpackage that has no layer."""
    package = package_dir.name
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        module = _module_name(path, package_dir)
        if len(module) == 1:  # the package's own __init__: it exposes the subpackages
            continue
        own = module[1]
        if own not in layers:
            problems.append(f"{path.relative_to(package_dir.parent)}: '{own}' has no layer in the import rules")
            continue
        for line, name in imported_modules(path, package_dir):
            parts = name.split(".")
            if parts[0] != package or len(parts) < 2 or parts[1] == own:
                continue
            target = parts[1]
            if target not in layers or layers[target] >= layers[own]:
                target_layer = layers.get(target, "none")
                problems.append(
                    f"{path.relative_to(package_dir.parent)}:{line} imports {name}: '{own}' (layer {layers[own]}) "
                    f"may not import '{target}' (layer {target_layer})"
                )
    return problems


def module_graph(package_dir: Path) -> dict[str, set[str]]:
    """``{module: modules it imports}`` over the package's modules (not the packages' ``__init__``).

    A name imported from a package is followed to the module its ``__init__`` re-exports it from, so that
    ``from cxrkd_monai.data import load_datalist`` is an edge to ``cxrkd_monai.data.datalist``.
    """
    paths = {".".join(_module_name(path, package_dir)): path for path in package_dir.rglob("*.py")}
    exported = {  # package -> {name it re-exports: full name of the import}
        module: {name.rsplit(".", 1)[1]: name for _, name in imported_modules(path, package_dir)}
        for module, path in paths.items()
        if path.name == "__init__.py"
    }

    def resolve(name: str, seen: frozenset[str] = frozenset()) -> str | None:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            module = ".".join(parts[:end])
            if module not in paths:
                continue
            if paths[module].name != "__init__.py":
                return module
            if end < len(parts) and parts[end] in exported[module] and name not in seen:
                return resolve(exported[module][parts[end]], seen | {name})
            return None
        return None

    graph = {}
    for module, path in paths.items():
        if path.name == "__init__.py":
            continue
        targets = {resolve(name) for _, name in imported_modules(path, package_dir)}
        graph[module] = {target for target in targets if target is not None and target != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def _write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def test_every_module_imports_only_its_own_subpackage_and_lower_layers():
    layers = read_layers(ARCHITECTURE)
    problems = import_violations(ROOT / PACKAGE, layers)
    assert not problems, "imports against the rules of docs/architecture.md:\n" + "\n".join(problems)


def test_no_two_modules_import_each_other_even_through_a_chain():
    cycles = import_cycles(module_graph(ROOT / PACKAGE))
    assert not cycles, "modules that import each other (put the shared piece below them):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_cycles_are_found_through_package_re_exports_and_function_imports(tmp_path):
    package = tmp_path / "pkg"
    _write(package, "__init__.py", "")
    _write(package, "data/__init__.py", "from .lists import load\nfrom .compact import pack\n")
    _write(package, "data/lists.py", "def load():\n    from pkg.data import pack\n    return pack\n")
    _write(package, "data/compact.py", "from .lists import load\n\ndef pack():\n    return load\n")
    _write(package, "data/alone.py", "from pkg.data import load\n")
    graph = module_graph(package)
    assert graph["pkg.data.lists"] == {"pkg.data.compact"}
    assert graph["pkg.data.alone"] == {"pkg.data.lists"}
    assert import_cycles(graph) == [["pkg.data.compact", "pkg.data.lists"]]


def test_metrics_are_computation_without_ignite():
    """As ``monai.metrics``: the Ignite wrappers of the metrics are in ``handlers``."""
    metrics_dir = ROOT / PACKAGE / "metrics"
    ignite_imports = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted(metrics_dir.rglob("*.py"))
        for line, name in imported_modules(path, ROOT / PACKAGE)
        if name.split(".")[0] == "ignite" or name.startswith(("monai.handlers", "monai.engines"))
    ]
    assert not ignite_imports, "Ignite code in metrics/, move it to handlers/:\n" + "\n".join(ignite_imports)


def test_every_layer_of_the_document_exists_in_the_package():
    package_dir = ROOT / PACKAGE
    missing = [
        name
        for name in read_layers(ARCHITECTURE)
        if not (package_dir / name / "__init__.py").is_file() and not (package_dir / f"{name}.py").is_file()
    ]
    assert not missing, f"docs/architecture.md lays out {missing}, which the package does not have"


def test_upward_same_layer_and_unplaced_imports_are_named(tmp_path):
    package = tmp_path / "pkg"
    _write(package, "__init__.py", "from . import low, mid, high\n")
    _write(package, "low/__init__.py", "from .core import f\n")
    _write(package, "low/core.py", "def f():\n    from pkg.mid import g  # inside a function\n    return g\n")
    _write(package, "mid/__init__.py", "from pkg.low import f\nfrom pkg import side\n")
    _write(package, "side.py", "import pkg.mid.x\n")
    _write(package, "high/__init__.py", "from ..mid import g\nfrom ..low.core import f\nfrom . import local\n")
    _write(package, "stray/__init__.py", "")
    layers = {"low": 0, "mid": 1, "side": 1, "high": 2}
    assert sorted(import_violations(package, layers)) == [
        "pkg/low/core.py:2 imports pkg.mid.g: 'low' (layer 0) may not import 'mid' (layer 1)",
        "pkg/mid/__init__.py:2 imports pkg.side: 'mid' (layer 1) may not import 'side' (layer 1)",
        "pkg/side.py:1 imports pkg.mid.x: 'side' (layer 1) may not import 'mid' (layer 1)",
        "pkg/stray/__init__.py: 'stray' has no layer in the import rules",
    ]


def test_layers_are_read_from_the_import_rules_table(tmp_path):
    document = tmp_path / "architecture.md"
    document.write_text(
        "# Architecture\n\n| layer | x |\n|---|---|\n| 9 | `ignored` |\n\n## Import rules\n\n"
        "| layer | subpackages | role |\n|---|---|---|\n| 1 | `b`, `c` | top |\n| 0 | `a` | bottom |\n\n## Next\n"
        "| 5 | `ignored_too` | |\n"
    )
    assert read_layers(document) == {"a": 0, "b": 1, "c": 1}
    document.write_text("## Import rules\n\n| 1 | `a` |\n| 0 | `a` |\n")
    with pytest.raises(ValueError, match="'a' is on two layers"):
        read_layers(document)
