"""A workload's resource graph drawn on the server (the workload page's SVG)."""

from __future__ import annotations

from typing import Any

from seawall.model import ResourceGraph


def _depths(by_ref: dict[Any, Any]) -> dict[Any, int]:
    """Each resource's dependency depth (0: depends on nothing drawn); cycles are cut."""
    depth: dict[Any, int] = {}

    def d(ref: Any, trail: frozenset[Any] = frozenset()) -> int:
        if ref in depth:
            return depth[ref]
        r = by_ref.get(ref)
        deps = [x for x in (r.depends_on if r else ()) if x in by_ref and x not in trail]
        depth[ref] = 1 + max((d(x, trail | {ref}) for x in deps), default=-1)
        return depth[ref]

    for ref in by_ref:
        d(ref)
    return depth


def graph_svg(graph: ResourceGraph) -> dict[str, Any]:
    """A layered drawing: a column per dependency depth, an edge per reference."""
    by_ref = {r.ref: r for r in graph.resources}
    depth = _depths(by_ref)
    columns: dict[int, list[Any]] = {}
    for ref in sorted(by_ref, key=lambda x: (x.kind.value, by_ref[x].name)):
        columns.setdefault(depth[ref], []).append(ref)
    w, h, cw, rh = 150, 30, 190, 44
    pos: dict[Any, tuple[int, int]] = {}
    for col, refs in columns.items():
        for row, ref in enumerate(refs):
            pos[ref] = (20 + col * cw, 20 + row * rh)
    nodes = [
        {
            "x": x,
            "y": y,
            "w": w,
            "h": h,
            "kind": ref.kind.value,
            "name": (by_ref[ref].name or ref.id)[:18],
            "title": f"{ref.kind.value} {by_ref[ref].name} ({ref.id})",
        }
        for ref, (x, y) in pos.items()
    ]
    edges = []
    for ref, r in by_ref.items():
        x1, y1 = pos[ref]
        for dep in r.depends_on:
            if dep in pos:
                x2, y2 = pos[dep]
                edges.append({"x1": x1, "y1": y1 + h // 2, "x2": x2 + w, "y2": y2 + h // 2})
    width = 40 + (max(columns, default=0) + 1) * cw
    height = 40 + max((len(v) for v in columns.values()), default=0) * rh
    return {"nodes": nodes, "edges": edges, "width": width, "height": height}
