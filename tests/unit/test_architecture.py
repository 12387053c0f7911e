"""The layering rules of docs/ARCHITECTURE.md, checked on the code's imports (every import
counts: module level, inside functions, and under TYPE_CHECKING)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "broker_service"

# Top to bottom: a module may import its own layer and the layers below it, never above.
LAYERS: list[set[str]] = [
    {"__main__", "cli", "ops"},
    {"runtime"},
    {"net"},
    {"api"},
    {"kafka"},
    {"cluster"},
    {"control"},
    {"security"},
    {"stream"},
    {"metadata"},
    {"config", "metrics", "protocol"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
# protocol/ is sans-I/O: no sockets, no storage, no AWS, no asyncio
SANS_IO = {"protocol": {"socket", "asyncio", "boto3", "botocore", "sqlite3", "ssl"}}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cli"


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for target in _imports(name, path):
            if target in mods and target != name:
                graph[name].add(target)
    return graph


def test_every_package_has_a_layer() -> None:
    tops = {_layer(m) for m in _modules() if m != "broker_service"}
    assert tops <= RANK.keys(), f"give these a layer in ARCHITECTURE.md: {tops - RANK.keys()}"


def test_no_layer_imports_upward() -> None:
    upward = []
    for src, targets in _graph().items():
        for dst in targets:
            a, b = _layer(src), _layer(dst)
            if a != b and RANK[b] < RANK[a]:
                upward.append(f"{src} -> {dst}")
    assert not upward, "imports that point up:\n" + "\n".join(sorted(upward))


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph()
    color: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        color[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if color.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in color:
                visit(nxt, stack)
        stack.pop()
        color[node] = 2

    for node in sorted(graph):
        if node not in color:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_protocol_is_sans_io() -> None:
    bad = []
    for name, path in _modules().items():
        forbidden = SANS_IO.get(_layer(name), set())
        for target in _imports(name, path):
            if target.split(".")[0] in forbidden:
                bad.append(f"{name} imports {target}")
    assert not bad, "\n".join(bad)
