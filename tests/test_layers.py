"""The layers run one way: ``cache/`` at the bottom, ``stages/`` above, ``pipeline/`` on top.

Read from the source (every ``import`` and ``from ... import``, inside functions too, and
``importlib.import_module("...")`` with a literal name): nothing in ``cache/`` or ``stages/``
imports ``pipeline``, nothing in ``cache/`` imports ``stages``, no set of modules imports each
other in a circle, and no import of the project's own modules hides behind an ``except
ImportError``.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("cache", "stages", "pipeline")  # bottom to top


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in LAYERS:
        for p in (REPO / pkg).rglob("*.py"):
            parts = list(p.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


def _known(name: str, mods: dict) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _targets(mod: str, node: ast.AST, is_pkg: bool, mods: dict) -> list[str]:
    """Project modules an import node loads (``from pkg import sub`` loads ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = mod.split(".")
            if not is_pkg:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            src = ".".join(base + ([node.module] if node.module else []))
        else:
            src = node.module or ""
        names = [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src for a in node.names]
    elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
          and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        names = [node.args[0].value]
    else:
        return []
    return [t for t in (_known(n, mods) for n in names) if t and t != mod]


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[mod] = {t for node in ast.walk(tree) for t in _targets(mod, node, path.name == "__init__.py", mods)}
    return graph


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
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_sees_imports_inside_functions():
    """The reader is not blind: it finds imports in function bodies and import_module calls."""
    g = import_graph()
    assert "stages.extract.plan" in g["stages.data.entry_lookup"]
    assert "pipeline.engines.dask" in g["pipeline.commands.extract"]  # imported inside extract()


def test_no_module_imports_a_layer_above_it():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [f"{m} -> {t}" for m, ts in import_graph().items() for t in ts
              if rank[t.split(".")[0]] > rank[m.split(".")[0]]]
    assert not upward, "imports into a higher layer:\n" + "\n".join(sorted(upward))


def test_no_import_circles():
    assert not _cycles(import_graph())


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_own_modules_are_never_imported_behind_an_import_error_guard():
    mods = _modules()
    hidden = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Try):
                continue
            catches = {getattr(h.type, "id", getattr(h.type, "attr", None)) for h in node.handlers if h.type is not None}
            for h in node.handlers:
                if isinstance(h.type, ast.Tuple):
                    catches |= {getattr(e, "id", getattr(e, "attr", None)) for e in h.type.elts}
            if not catches & {"ImportError", "ModuleNotFoundError"}:
                continue
            for inner in node.body:
                for sub in ast.walk(inner):
                    if _targets(mod, sub, path.name == "__init__.py", mods):
                        hidden.append(f"{path.relative_to(REPO)}:{sub.lineno}")
    assert not hidden, f"project modules imported behind except ImportError: {hidden}"


def test_help_imports_no_heavy_library():
    """`pipeline --help` stays fast: the CLI wiring imports neither torch nor mmengine nor open_clip."""
    code = ("import sys, pipeline.cli; "
            "print(sorted(m for m in ('torch', 'mmengine', 'open_clip', 'mmpose', 'zarr') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert res.stdout.strip() == "[]"


def test_stage_two_public_surface():
    from stages.data import CacheClipDataset  # (benchmarks and users import it from here)
    from stages.data.dataset import CacheClipDataset as defined

    assert CacheClipDataset is defined
