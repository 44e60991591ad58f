"""The architecture, checked from the code: every toolkit import points down the layers (or stays
in its own layer), and no module imports itself back through others. Imports inside functions
count too: a lazy import is still a dependency."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "toolkit"

# Top to bottom; a module may import its own layer and any layer below it. docs/architecture.md's
# layer table names the same layers.
LAYERS = [
    ["toolkit.cli", "toolkit.__main__"],
    ["toolkit.report"],
    ["toolkit.bench", "toolkit.info", "toolkit.serve", "toolkit.cluster", "toolkit.diagnose", "toolkit.gpu_check"],
    ["toolkit.parity", "toolkit.parity_spec", "toolkit.parity_saved", "toolkit.train", "toolkit.export", "toolkit.model_sources"],
    ["toolkit.backends", "toolkit.data", "toolkit.datasets"],
    ["toolkit.files"],
    ["toolkit.model", "toolkit.spec", "toolkit.env", "toolkit.compare", "toolkit.stats", "toolkit.errors", "toolkit"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md"
    return best[0]


def toolkit_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("toolkit")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("toolkit") and node.level == 0:
            # `from toolkit.files import paths` imports the submodule toolkit.files.paths
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                out.add(candidate if (ROOT.parent / (candidate.replace(".", "/") + ".py")).exists()
                        or (ROOT.parent / candidate.replace(".", "/")).is_dir() else node.module)
    return out


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): toolkit_imports(p) for p in sorted(ROOT.rglob("*.py"))}


def test_every_import_points_down_the_layers():
    upward = []
    for module, imports in import_graph().items():
        for target in imports:
            if target == "toolkit":  # the package itself: __version__ only
                continue
            if layer_of(target) < layer_of(module):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    graph = {m: {t for t in ts if t != "toolkit" and t != m} for m, ts in import_graph().items()}
    # A package's __init__ importing its own submodules is not a cycle between layers.
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check itself can fail: a backend importing the parity gate is caught."""
    fake = tmp_path / "toolkit" / "backends"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from toolkit.parity import run_gate\n")
    imports = toolkit_imports(fake / "bad.py")
    assert imports == {"toolkit.parity"} and layer_of("toolkit.parity") < layer_of("toolkit.backends.bad")


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small_or_say_why(path):
    lines = path.read_text(encoding="utf-8").count("\n")
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert lines <= 400 or "over 400 lines" in doc, f"{path.name} has {lines} lines; split it or say why in its docstring"
