"""Why a run's strategies fell back: per strategy, its fallback count, accuracy, tokens and calls
per question, and each fallback's reason, read from run folders `reasoner bench` wrote.

    python -m reasoner.bench.measure.fallback_reasons runs/fc-embedded runs/fc-llama
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def reasons(run: Path) -> dict[str, list[dict[str, Any]]]:
    """Each strategy's questions: the fallback reason (None: none), tokens, calls, whether right."""
    records = {}
    for line in (run / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        records[r["strategy"], r["id"]] = r
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in (run / "traces.jsonl").read_text().splitlines():
        t = json.loads(line)
        r = records[t["strategy"], t["id"]]
        per[t["strategy"]].append({
            "reason": t["details"].get("fallback_reason"), "tokens": r["prompt_tokens"] + r["completion_tokens"],
            "calls": r["calls"], "correct": bool(r["correct"]),
        })
    return per


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (holding results.jsonl and traces.jsonl)")
    for run in parser.parse_args(argv).runs:
        print(f"== {run}")
        for strategy, rows in reasons(run).items():
            n, fell = len(rows), [r["reason"] for r in rows if r["reason"]]
            print(f"{strategy}: {n} questions, fallback {len(fell)}/{n}, right {sum(r['correct'] for r in rows)}/{n}, "
                  f"tokens/q {sum(r['tokens'] for r in rows) / n:.0f}, calls/q {sum(r['calls'] for r in rows) / n:.1f}")
            for reason in fell:
                print("   -", " ".join(str(reason).split())[:120])


if __name__ == "__main__":
    main()
