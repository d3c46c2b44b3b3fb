"""The import layering of docs/architecture.md, read from the source with `ast` (nothing is imported):

    commands (cli) -> pipeline / serving -> problems -> ml -> features / data -> schema / config

A module may import its own layer and the layers below it, never one above; no import cycle among
the olist_ml modules (function-level imports count: a lazy import is still a dependency); the
portable model code (olist_ml_model, logged with every model) imports nothing of olist_ml."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = next(p / "src" for p in Path(__file__).resolve().parents if (p / "src" / "olist_ml").is_dir())

# highest first; a module belongs to the first layer with a prefix that names it or a package above it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("commands", ("olist_ml.cli", "olist_ml.__main__", "olist_ml.commands")),
    ("pipeline/serving", ("olist_ml.pipeline", "olist_ml.steps", "olist_ml.serving", "olist_ml.spark.pipeline")),
    ("problems", ("olist_ml.problems", "olist_ml.spark.problems", "olist_ml.spark.ml")),
    ("ml", ("olist_ml.ml",)),
    (
        "features/data",
        (
            "olist_ml.features",
            "olist_ml.warehouse",
            "olist_ml.lineage",
            "olist_ml.records",
            "olist_ml.extract",
            "olist_ml.ingest",
            "olist_ml.synth",
            "olist_ml.geo",
            "olist_ml.spark",
        ),
    ),
    (
        "schema/config",
        ("olist_ml.schema", "olist_ml.config", "olist_ml.errors", "olist_ml.home", "olist_ml", "olist_ml_model"),
    ),
]

KNOWN_CYCLES: list[set[str]] = []  # none left


def modules(src: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """module name -> (file, is a package __init__)."""
    out = {}
    for f in sorted(src.rglob("*.py")):
        parts = list(f.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def imports(src: Path = SRC) -> dict[str, set[str]]:
    """module -> the olist_ml / olist_ml_model modules it imports anywhere in its file."""
    mods = modules(src)
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for a in node.names:  # `from pkg import submodule` depends on the submodule only
                    targets.add(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
        graph[name] = {t for t in targets if t in mods and t != name}
    return graph


def layer_of(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "olist_ml"):
            return i
    if module == "olist_ml":
        return len(LAYERS) - 1
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, ts in graph.items()
        for t in ts
        if layer_of(t) < layer_of(m)
    )


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

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
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    for m in imports():
        layer_of(m)


def test_no_layer_imports_a_layer_above_it():
    assert upward_imports(imports()) == []


def test_no_import_cycle():
    found = [c for c in cycles(imports()) if c not in KNOWN_CYCLES]
    assert found == [], f"import cycles: {[sorted(c) for c in found]}"


def test_portable_model_code_imports_nothing_of_olist_ml():
    graph = imports()
    bad = {
        m: sorted(t for t in ts if not t.startswith("olist_ml_model"))
        for m, ts in graph.items()
        if m.startswith("olist_ml_model")
    }
    assert not any(bad.values()), bad


def test_the_checks_catch_what_they_are_for(tmp_path):
    """A lower module importing a higher one, and a circle, are both found (the checks can fail)."""
    pkg = tmp_path / "olist_ml"
    (pkg / "commands").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("from .commands import data\n")
    (pkg / "commands" / "__init__.py").write_text("")
    (pkg / "commands" / "data.py").write_text("def f():\n    from ..cli import main\n")  # lazy, still a cycle
    (pkg / "config.py").write_text("from .problems import x\n")
    (pkg / "problems").mkdir()
    (pkg / "problems" / "__init__.py").write_text("")
    g = imports(tmp_path)
    assert g["olist_ml.commands.data"] == {"olist_ml.cli"} and g["olist_ml.cli"] == {"olist_ml.commands.data"}
    assert cycles(g) == [{"olist_ml.cli", "olist_ml.commands.data"}]
    assert upward_imports(g) == ["olist_ml.config (schema/config) imports olist_ml.problems (problems)"]
