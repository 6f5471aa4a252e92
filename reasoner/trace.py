"""Show a trace (a graph's node-link JSON) in the terminal as a rich tree."""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text
from rich.tree import Tree

_STYLE = {"done": "green", "failed": "bold red", "running": "yellow", "pending": "dim"}
_ICON = {"model": "◆", "tool": "⚙", "function": "ƒ"}


def _line(node: dict[str, Any], scope: tuple[str, ...] = ()) -> Text:
    # One line, cut to the width: a long preview wrapping one word a line says nothing more.
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{_ICON.get(node.get('kind', ''), '•')} ", style="bold")
    name = str(node["id"])
    inside = "/".join(scope) + "/"
    text.append(name[len(inside) :] if scope and name.startswith(inside) else name, style=_STYLE.get(node.get("status", ""), ""))
    facts = []
    if node.get("kind") == "model":
        request = node.get("request", {})
        facts.append(f"n={request.get('n', 1)} T={request.get('temperature', 0)}")
        if "completion_tokens" in node:
            thought = f" ({node['reasoning_tokens']} thinking)" if node.get("reasoning_tokens") else ""
            facts.append(f"{node.get('prompt_tokens', 0)}→{node['completion_tokens']} tok{thought}")
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


def _thought(output: Any, width: int = 70) -> str:
    """The start of a model call's reasoning (its first choice's), where it has one."""
    if not (isinstance(output, dict) and output.get("choices")):
        return ""
    value = " ".join(str(output["choices"][0].get("reasoning") or "").split())
    return value if len(value) <= width else value[: width - 1] + "…"


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


def _scope(node: dict[str, Any]) -> tuple[str, ...]:
    """The scopes a node was built in (`sample0/fallback/reason` → ("sample0", "fallback"))."""
    nid, label = re.sub(r"#\d+$", "", str(node["id"])), str(node.get("label", ""))
    prefix = nid[: len(nid) - len(label)] if label and nid.endswith(label) else nid.rpartition("/")[0] + "/"
    return tuple(part for part in prefix.split("/") if part)


def render_tree(trace: dict[str, Any], title: str = "trace") -> Tree:
    """The steps in the order they were added, one line each, as a sequence: a loop or a chain
    reads top to bottom instead of nesting one level per step. The calls a strategy's node made
    (a ReAct loop's thoughts and actions, self-consistency's samples) are drawn inside it, named
    from its scope (`sample0/few-shot-cot`); a node no strategy made sits in its scope's branch
    (`sample0/`, `fallback/`). So the depth is that of the composition, whatever the number of steps."""
    nodes = sorted(trace.get("nodes", []), key=lambda n: n.get("order", 0))
    waited_by = {
        e["source"]: e["target"] for e in trace.get("edges", trace.get("links", [])) if e.get("waited")
    }
    tree = Tree(Text(title, style="bold"))
    branches: dict[Any, Tree] = {}

    def scope_branch(scope: tuple[str, ...]) -> Tree:
        if not scope:
            return tree
        if scope not in branches:
            branches[scope] = scope_branch(scope[:-1]).add(Text(f"{scope[-1]}/", style="bold dim"))
        return branches[scope]

    by_id = {node["id"]: node for node in nodes}
    for node in nodes:
        owner = waited_by.get(node["id"])
        parent = branches.get(owner) if owner is not None else None
        if parent is None:
            parent, scope = scope_branch(_scope(node)), _scope(node)
        else:  # named from its owner's scope: a sample's strategy reads "sample0/few-shot-cot"
            scope = _scope(by_id[owner])
        branches[node["id"]] = parent.add(_line(node, scope))
        thought = _thought(node.get("output")) if node.get("status") == "done" else ""
        if thought:  # a line of its own under the call, marked: the thinking is never read as its answer
            branches[node["id"]].add(Text(f"[thought: {thought}]", style="dim", no_wrap=True, overflow="ellipsis"))
    return tree
