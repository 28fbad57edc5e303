"""A task graph as an SVG picture (pure): layered left to right by dependency depth, each task a
box coloured by its state. No graphviz needed; any browser shows the file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape  # not xml.sax.saxutils's, which imports urllib.request (20 ms a start)
from typing import Any

__all__ = ["graph_svg"]

_FILL = {
    "succeeded": "#d4edda",
    "failed": "#f8d7da",
    "cancelled": "#f8d7da",
    "escalated": "#fff3cd",
    "errored": "#fff3cd",
    "running": "#d1ecf1",
}
_W, _H, _GAP_X, _GAP_Y, _PAD = 180, 48, 60, 24, 20


def _depths(nodes: Sequence[Mapping[str, Any]], edges: Sequence[Sequence[str]]) -> dict[str, int]:
    ids = [str(n["id"]) for n in nodes]
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for a, b in edges:
        if a in parents and b in parents:
            parents[b].append(a)
    depth: dict[str, int] = {}
    for _ in ids:  # relax at most |nodes| times: enough for any DAG, bounded on a cycle
        changed = False
        for i in ids:
            d = max((depth.get(p, 0) + 1 for p in parents[i]), default=0)
            if depth.get(i) != d:
                depth[i], changed = d, True
        if not changed:
            break
    return depth


def graph_svg(nodes: Sequence[Mapping[str, Any]], edges: Sequence[Sequence[str]]) -> str:
    """The SVG document of tasks (``id``, ``capability``, ``status``) and their dependencies."""
    depth = _depths(nodes, edges)
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for n in nodes:
        node_id = str(n["id"])
        column = depth.get(node_id, 0)
        row = rows.get(column, 0)
        rows[column] = row + 1
        place[node_id] = (_PAD + column * (_W + _GAP_X), _PAD + row * (_H + _GAP_Y))
    width = _PAD * 2 + (max(rows, default=0) + 1) * (_W + _GAP_X) - _GAP_X
    height = _PAD * 2 + max(rows.values(), default=1) * (_H + _GAP_Y) - _GAP_Y
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="8" refY="4"'
        ' orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>',
    ]
    for a, b in edges:
        if a in place and b in place:
            (ax, ay), (bx, by) = place[a], place[b]
            out.append(
                f'<line x1="{ax + _W}" y1="{ay + _H // 2}" x2="{bx}" y2="{by + _H // 2}"'
                ' stroke="#555" marker-end="url(#arrow)"/>'
            )
    for n in nodes:
        x, y = place[str(n["id"])]
        status = str(n.get("status") or "")
        fill = _FILL.get(status, "#ffffff")
        out.append(
            f'<g><rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6" fill="{fill}"'
            ' stroke="#333"/>'
            f'<text x="{x + 8}" y="{y + 18}" font-weight="bold">{escape(str(n["id"]))}</text>'
            f'<text x="{x + 8}" y="{y + 36}">{escape(str(n.get("capability") or ""))}:'
            f" {escape(status)}</text></g>"
        )
    out.append("</svg>")
    return "\n".join(out)
