"""The task graph as SVG: one box per task in dependency order, one arrow per dependency."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from swarmlog.rendering.svg import graph_svg

NS = {"svg": "http://www.w3.org/2000/svg"}


def test_boxes_arrows_and_layers() -> None:
    nodes = [
        {"id": "fetch", "capability": "search", "status": "succeeded"},
        {"id": "draft", "capability": "write", "status": "running"},
        {"id": "review", "capability": "<judge>", "status": "pending"},
    ]
    edges = [["fetch", "draft"], ["draft", "review"], ["fetch", "review"]]
    root = ET.fromstring(graph_svg(nodes, edges))  # well-formed, even with "<" in a label
    rects = root.findall(".//svg:rect", NS)
    assert len(rects) == 3
    assert len(root.findall(".//svg:line", NS)) == 3
    xs = [float(r.get("x", "0")) for r in rects]
    assert xs[0] < xs[1] < xs[2]  # each task right of what it depends on
    assert rects[0].get("fill") == "#d4edda"  # succeeded is green
    texts = [t.text for t in root.findall(".//svg:text", NS)]
    assert "fetch" in texts
    assert "<judge>: pending" in texts


def test_a_cycle_still_renders() -> None:
    nodes = [{"id": "a", "capability": "x", "status": ""}, {"id": "b", "capability": "x"}]
    root = ET.fromstring(graph_svg(nodes, [["a", "b"], ["b", "a"]]))
    assert len(root.findall(".//svg:rect", NS)) == 2
