"""One registry style (clinrl.registry) and no import cycle among clinrl's modules."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from clinrl.errors import ClinrlError
from clinrl.registry import Registry, UnknownName

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The clinrl modules an import statement loads (``from pkg import mod`` counts ``pkg.mod`` when it is one)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == "clinrl"}
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([base] if base else [])])
    if base.split(".")[0] != "clinrl":
        return set()
    return {base} | {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """clinrl module → clinrl modules it imports at import time (module level, including ``if``/``try`` blocks
    but not function bodies: a function-local import runs only when called), and the number of function-local
    imports (module → the clinrl modules its functions import). ``if TYPE_CHECKING:`` blocks are skipped (never run); packages count their
    ``__init__`` (importing ``a.b.c`` runs ``a.b`` first)."""
    files = {_module_name(p): p for p in (SRC / "clinrl").rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = {}
    local: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: set[str] = set()
        local[module] = set()
        is_package = path.name == "__init__.py"

        def visit(nodes, in_function: bool) -> None:  # called at once, inside this iteration
            for node in nodes:
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found = _targets(node, module, is_package, known)
                    if in_function:
                        local[module].update(found)
                    else:
                        edges.update(found)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    visit(ast.iter_child_nodes(node), True)
                elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    continue
                else:
                    visit(ast.iter_child_nodes(node), in_function)

        visit(tree.body, False)
        # importing a.b.c runs a/__init__ and a/b/__init__ first. A module's own ancestors are left out: they
        # are in sys.modules (being initialised) before the module runs, so an edge to one is no cycle.
        parents = {".".join(t.split(".")[:i]) for t in edges for i in range(1, t.count(".") + 1)}
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        graph[module] = {t for t in edges | parents if t in known and t != module and t not in own}
    return graph, local


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph, local = import_graph()
    assert len(graph) > 50 and "clinrl.registry" in graph["clinrl.llm.backends"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} module-level imports of clinrl modules, "
          f"{sum(map(len, local.values()))} function-local ones")  # fmt: skip
    # the checker itself finds a cycle when there is one
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_backends_do_not_import_each_other():
    graph, local = import_graph()
    for a, b in (("backends", "openai_client"), ("openai_client", "backends")):  # not even inside a function
        assert f"clinrl.llm.{b}" not in graph[f"clinrl.llm.{a}"] | local[f"clinrl.llm.{a}"]
    assert {"clinrl.llm.base"} <= graph["clinrl.llm.openai_client"] & graph["clinrl.llm.backends"]


def test_lazy_targets_load_on_first_use():
    """In a fresh interpreter (this one may have imported the client already): the OpenAI client is imported
    by the first lookup of "openai", not by importing the backends."""
    import subprocess

    code = ("import sys; from clinrl.llm import backends as b; loaded = 'clinrl.llm.openai_client' in sys.modules; "
            "factory = b.BACKENDS['openai']; from clinrl.llm.openai_client import OpenAIBackend; "
            "print(loaded, factory is OpenAIBackend)")  # fmt: skip
    env = {**__import__("os").environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr[-500:]


def test_unknown_names_are_one_line_with_the_choices():
    from clinrl.drg.rewards import get_reward
    from clinrl.drg.train.groups import degenerate_groups
    from clinrl.llm.backends import get_backend
    from clinrl.notes.rewards import build_reward
    from clinrl.prm.score import AGGREGATES

    cases = [
        (lambda: get_backend("openia"), "unknown backend 'openia' (did you mean 'openai'?); choose from: transformers, vllm, openai"),
        (lambda: get_reward("acuracy_dense"), "unknown reward 'acuracy_dense' (did you mean 'accuracy_dense'?)"),
        (lambda: build_reward("nope"), "unknown reward 'nope'; choose from: prm, format, completeness, guard"),
        (lambda: AGGREGATES["median"], "unknown aggregate 'median' (did you mean 'mean'?); choose from: sum_log, min, mean, last"),
        (lambda: degenerate_groups([1.0, 1.0], 2, "postive"), "unknown mode 'postive' (did you mean 'positive'?)"),
    ]  # fmt: skip
    for call, expected in cases:
        with pytest.raises(UnknownName) as err:
            call()
        message = str(err.value)
        assert message.startswith(expected) and "\n" not in message
        assert isinstance(err.value, (ClinrlError, KeyError, ValueError))


def test_registry_basics():
    registry: Registry[int] = Registry("thing", {"one": 1})
    registry.register("two", 2)
    registry.register("join", "os.path:join")
    assert list(registry) == ["one", "two", "join"] and "two" in registry and ["x"] not in registry
    assert registry["join"] is __import__("os").path.join and len(registry) == 3
    registry.register("text", "a: b", lazy=False)
    assert registry["text"] == "a: b"
    with pytest.raises(UnknownName, match="unknown thing"):
        registry[["unhashable"]]  # type: ignore[index]
