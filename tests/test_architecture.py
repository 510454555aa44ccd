"""The import graph of ``src/seawall`` has no cycle (the one check import-linter's
contracts cannot express), and ARCHITECTURE.md draws the very layers and package
contracts that pyproject.toml makes import-linter enforce."""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [
            (root, sorted(graph.find_modules_directly_imported_by(root)))
        ]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in graph.modules:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.find_modules_directly_imported_by(nxt))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycle_in_seawall() -> None:
    graph = grimp.build_graph("seawall", cache_dir=None)  # never a stale cache
    assert len(graph.modules) > 50  # the whole package was read, not an empty graph
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]


def _contracts() -> list[dict[str, object]]:
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    with open(root / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["tool"]["importlinter"]["contracts"])


def _architecture() -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parents[1] / "ARCHITECTURE.md").read_text()


def test_architecture_diagram_is_the_layers_contract() -> None:
    """The diagram in ARCHITECTURE.md lists, top to bottom, exactly the layers that
    import-linter enforces over ``seawall`` (a change to one without the other fails)."""
    import re

    text = _architecture()
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    drawn = []
    for line in block.strip().splitlines():
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        drawn.append(" | ".join(n.strip().rstrip("/") for n in names.split("|")))
    top = next(c for c in _contracts() if c.get("containers") == ["seawall"])
    assert top["exhaustive"] is True
    assert drawn == top["layers"]


def test_every_package_contract_is_described() -> None:
    """Each package's own layers contract has its line in ARCHITECTURE.md's list."""
    text = _architecture()
    containers = [
        str(c["containers"][0]).removeprefix("seawall.")  # type: ignore[index]
        for c in _contracts()
        if c["type"] == "layers" and c.get("containers") != ["seawall"]
    ]
    assert containers  # the package contracts were read
    missing = [name for name in containers if f"`{name}`:" not in text]
    assert missing == []
