"""Show a trace (a graph's node-link JSON) in the terminal as a rich tree."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from rich.tree import Tree

_STYLE = {"done": "green", "failed": "bold red", "running": "yellow", "pending": "dim", "waiting": "cyan"}
_ICON = {"model": "◆", "tool": "⚙", "function": "ƒ"}


def _line(node: dict[str, Any]) -> Text:
    text = Text()
    text.append(f"{_ICON.get(node.get('kind', ''), '•')} ", style="bold")
    text.append(str(node["id"]), style=_STYLE.get(node.get("status", ""), ""))
    facts = []
    if node.get("kind") == "model":
        request = node.get("request", {})
        facts.append(f"n={request.get('n', 1)} T={request.get('temperature', 0)}")
        if "completion_tokens" in node:
            facts.append(f"{node.get('prompt_tokens', 0)}→{node['completion_tokens']} tok")
        if "merged" in node:
            facts.append(f"merged n={node['merged']['n']}")
    if "latency_s" in node:
        facts.append(f"{node['latency_s']:.2f}s")
    if facts:
        text.append("  " + " · ".join(facts), style="dim")
    if node.get("status") == "failed":
        text.append(f"  {node.get('error', '')}", style="red")
    else:
        preview = _preview(node.get("output"))
        if preview:
            text.append(f"  {preview}", style="italic")
    return text


def _preview(output: Any, width: int = 70) -> str:
    if output is None:
        return ""
    if isinstance(output, dict) and "choices" in output:
        texts = [c.get("text", "") for c in output["choices"]]
        value = texts[0] if len(texts) == 1 else f"[{len(texts)} samples] {texts[0] if texts else ''}"
    elif isinstance(output, dict) and "tool" in output and "output" in output:
        value = f"{output['tool']}[{output.get('input') or ''}] → {output['output']}"
    elif isinstance(output, dict) and "answer" in output:
        value = f"answer={output['answer']}"
    else:
        value = str(output)
    value = " ".join(value.split())
    return value if len(value) <= width else value[: width - 1] + "…"


def render_tree(trace: dict[str, Any], title: str = "trace") -> Tree:
    """Each node under its first dependency; a node with several dependencies is shown once, and
    later parents point to it."""
    nodes = {n["id"]: n for n in trace.get("nodes", [])}
    parents: dict[str, list[str]] = {nid: [] for nid in nodes}
    children: dict[str, list[str]] = {nid: [] for nid in nodes}
    for edge in trace.get("edges", trace.get("links", [])):
        parents[edge["target"]].append(edge["source"])
        children[edge["source"]].append(edge["target"])
    order = {nid: n.get("order", i) for i, (nid, n) in enumerate(nodes.items())}
    tree = Tree(Text(title, style="bold"))
    placed: set[str] = set()

    def place(branch: Tree, nid: str) -> None:
        placed.add(nid)
        sub = branch.add(_line(nodes[nid]))
        for child in sorted(children[nid], key=order.__getitem__):
            if child in placed:
                continue
            # A join node hangs under the last of its dependencies to finish being placed.
            if all(p in placed for p in parents[child]):
                place(sub, child)

    for nid in sorted(nodes, key=order.__getitem__):
        if not parents[nid] and nid not in placed:
            place(tree, nid)
    for nid in sorted(nodes, key=order.__getitem__):
        if nid not in placed:
            place(tree, nid)
    return tree
