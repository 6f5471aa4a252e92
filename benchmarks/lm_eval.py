"""Cross-scoring with lm-evaluation-harness: which of its GSM8K tasks a strategy's prompt follows,
and the strict rule of its chain-of-thought tasks.

lm-eval's `gsm8k` task prompts for GSM8K's own "#### N" answers and its strict filter reads
only those; its `gsm8k_cot` tasks (`gsm8k_cot`, `gsm8k_cot_zeroshot`, `gsm8k_cot_self_consistency`)
prompt with exemplars that end "The answer is N." and read `The answer is (\\-?[0-9\\.\\,]+).`.
Every strategy here writes its final answer the chain-of-thought way, so a strict score means
something only under the `gsm8k_cot` rule; the `####` rule stays for comparison with runs of the
`gsm8k` task. The flexible filter (the last number) is the same in both.
"""

from __future__ import annotations

import re
from typing import Any

from reasoner.answers import lm_eval_correct

#: The lm-eval task whose prompt each strategy follows (by strategy name).
TASKS = {
    "few-shot-cot": "gsm8k_cot",  # Wei et al.'s exemplar style, as in lm-eval's gsm8k_cot
    "zero-shot-cot": "gsm8k_cot_zeroshot",  # "Let's think step by step."
    "self-consistency": "gsm8k_cot_self_consistency",
}
#: Strategies not listed write "The answer is N." too (PAL, plan-dag, least-to-most, ReAct,
#: tree-of-thought) but have no lm-eval task of their own; their text is closest to gsm8k_cot.
DEFAULT_TASK = "gsm8k_cot"
#: The strict rule of each task (see `reasoner.bench.record.RULES`).
STRICT_RULE = {"gsm8k": "lm-eval-strict"}
COT_STRICT = "lm-eval-cot-strict"

# The `.` at the end is lm-eval's: any one character must follow the number.
_COT_STRICT_RE = re.compile(r"The answer is (\-?[0-9\.\,]+).")


def task_for(settings: dict[str, Any]) -> str:
    """The lm-eval task a strategy's prompt follows, from its settings in run.json."""
    return TASKS.get(str(settings.get("strategy")), DEFAULT_TASK)


def strict_rule_for(task: str) -> str:
    return STRICT_RULE.get(task, COT_STRICT)


def cot_strict(text: str, gold_field: str) -> tuple[str | None, bool]:
    """(prediction, correct) under the gsm8k_cot tasks' strict-match filter.

    The first match counts (their group_select 0). The comparison is lm-eval's own exact match
    (commas, "$", a trailing "." and everything up to "#### " ignored, case-insensitive), reached
    through `lm_eval_correct` by handing it the filtered number in the form its filter reads.
    """
    found = _COT_STRICT_RE.search(text)
    if found is None:
        return None, False
    prediction = found.group(1).strip()
    return prediction, lm_eval_correct(f"#### {prediction}", gold_field, "strict")
