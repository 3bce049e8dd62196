"""quant/ imports run one way: no module of the package imports itself back, in any order."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

QUANT = Path(__file__).resolve().parents[2] / "quant"
MODULES = sorted(p.stem for p in QUANT.glob("*.py") if p.stem != "__init__")


def _imports(path: Path) -> set[str]:
    """Sibling quant modules that ``path`` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:                 # from .x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:                               # from . import x, y
                found.update(a.name for a in node.names)
            elif node.level == 0 and node.module and node.module.split(".")[0] == "quant":
                rest = node.module.split(".")[1:]
                found.update(rest[:1] or [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "quant" and len(parts) > 1:
                    found.add(parts[1])
    return found & set(MODULES)


def _graph() -> dict[str, set[str]]:
    return {m: _imports(QUANT / f"{m}.py") for m in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None if the graph is acyclic."""
    state = {}                                                  # 1: on the path, 2: done

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = path + [m, n]
                return cycle[cycle.index(n):]
            if n not in state:
                found = visit(n, path + [m])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m, [])
            if found:
                return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(g) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_is_acyclic():
    graph = _graph()
    assert set(MODULES) >= {"loop", "prune", "inq", "presets", "train"}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_layers_run_loop_then_steps_then_presets_then_cli():
    graph = _graph()
    assert graph["train"] == {"presets", "arch"}
    assert graph["arch"] == {"presets", "model"}
    assert {"loop", "prune", "inq"} <= graph["presets"]
    assert "loop" in graph["prune"] and "loop" in graph["inq"]
    assert graph["loop"] & {"prune", "inq", "presets", "train"} == set()


@pytest.mark.parametrize("first", MODULES)
def test_every_module_imports_first_in_a_fresh_interpreter(first):
    code = (f"import importlib, json, sys\n"
            f"importlib.import_module('quant.{first}')\n"
            f"for m in {MODULES!r}: importlib.import_module('quant.' + m)\n"
            f"print(json.dumps(sorted(k for k in sys.modules if k.startswith('quant.'))))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=QUANT.parent, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == [f"quant.{m}" for m in MODULES]
