"""The house rules of ARCHITECTURE.md, checked on the source: imports point down, no cycles, no
module grows past about 600 lines.

Imports are read with `ast` (nothing is imported), including the ones inside functions: a lazy
import is still a dependency, only a cheaper one. Imports under `if TYPE_CHECKING:` must point
down too, but they never run, so a type annotation may name a sibling that imports this module
(no cycle at run time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[1] / "hbreg"

# The layers of ARCHITECTURE.md, top first. A module may import from its own package (one
# entry below) and from any lower layer; never from a higher layer, nor from another package
# of its own layer (peers stay independent, so each can be understood alone).
LAYERS: list[tuple[str, ...]] = [
    ("cli",),  # the command line: parse, call, print
    ("compare", "simulate", "predict"),  # commands that read run directories
    ("fit",),  # the fit pipeline: config -> data -> model -> draws -> run directory
    ("report", "plots", "resources", "prior"),  # what a person sees, what a run costs, priors
    ("models", "inference", "stats", "runs", "executors"),  # build, sample, summarize, store
    ("data",),  # files and built-in datasets -> ModelData
    ("config",),  # YAML, --set, schema, priors
    # the foundation: imports nothing of ours
    (
        "names",
        "families",
        "errors",
        "signals",
        "_gc",
        "_imports",
        "compile_cache",
        "terminal",
        "__init__",
    ),
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    """Every module under hbreg/, by dotted name (`hbreg.config.load`, `hbreg.config`)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _unit(module: str) -> str:
    """The package (or top-level module) of hbreg that a module belongs to: its layer's key."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the import nodes inside `if TYPE_CHECKING:` blocks."""
    inside = set()
    for node in ast.walk(tree):
        test = node.test if isinstance(node, ast.If) else None
        name = getattr(test, "id", None) or getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for child in node.body:
                inside |= {id(n) for n in ast.walk(child)}
    return inside


def _imports(module: str, path: Path, *, typing: bool = True) -> set[str]:
    """The hbreg modules that `module` imports, resolved to the most specific module name.

    With `typing=False`, imports under `if TYPE_CHECKING:` are left out.
    """
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = set() if typing else _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from hbreg.config import load` names a submodule; `... import Config` does not.
            targets = [
                f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in MODULES else stem
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import hbreg.x.y` -> deepest known
                target = target.rpartition(".")[0]
            if target.split(".")[0] == "hbreg" and target != module:
                found.add(target)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}
RUNTIME = {module: _imports(module, path, typing=False) for module, path in MODULES.items()}


def test_every_package_has_a_layer():
    units = {_unit(m) for m in MODULES}
    missing = sorted(units - RANK.keys())
    assert not missing, f"add {missing} to LAYERS here and to ARCHITECTURE.md"


def test_imports_point_down():
    wrong = []
    for module, targets in GRAPH.items():
        for target in targets:
            mine, theirs = _unit(module), _unit(target)
            if mine == theirs:
                continue
            if RANK.get(theirs, -1) <= RANK.get(mine, -1):
                wrong.append(f"{module} imports {target} ({theirs} is not below {mine})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    # Depth-first search; a back edge to a module still on the stack closes a cycle.
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(RUNTIME[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target) :] + [module, target]))
            elif target not in state:
                visit(target, stack + [module])
        state[module] = 2

    for module in sorted(RUNTIME):
        if module not in state:
            visit(module, [])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_what_it_should():
    # Guards against a checker that passes because it reads nothing.
    assert {"hbreg.config", "hbreg.data", "hbreg.inference", "hbreg.runs"} <= GRAPH["hbreg.fit"]
    assert "hbreg.config.schema" in GRAPH["hbreg.config.load"]
    assert "hbreg.names" in GRAPH["hbreg.config.schema"]
    assert "hbreg.errors" in GRAPH["hbreg.cli"]
    assert "hbreg.fit" in GRAPH["hbreg.cli"]  # imported inside a command function


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_600_lines(module):
    path = MODULES[module]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE.parent)} has {lines} lines"
