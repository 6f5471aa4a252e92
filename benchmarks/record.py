"""One line of results.jsonl: a question's outcome under one strategy, as written and as read back."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: The scoring rules a run can report under, and the record fields holding each one's verdict
#: and prediction. lm-eval-strict is the `gsm8k` task's `#### N` rule, lm-eval-cot-strict the
#: `gsm8k_cot` tasks' `The answer is N.` rule; flexible is the same in both tasks.
RULES = ("ours", "lm-eval-strict", "lm-eval-cot-strict", "lm-eval-flexible")
CORRECT_FIELD = {
    "ours": "correct_ours",
    "lm-eval-strict": "correct_lm_eval_strict",
    "lm-eval-cot-strict": "correct_lm_eval_cot_strict",
    "lm-eval-flexible": "correct_lm_eval_flexible",
}
PREDICTION_FIELD = {
    "ours": "prediction",
    "lm-eval-strict": "prediction_lm_eval_strict",
    "lm-eval-cot-strict": "prediction_lm_eval_cot_strict",
    "lm-eval-flexible": "prediction_lm_eval_flexible",
}


class Record(BaseModel):
    """A result record. Fields added since the first release have defaults, so older runs still read."""

    # Extra keys are kept, not refused: a newer version's record must not break an older report.
    model_config = ConfigDict(extra="allow")

    strategy: str
    id: str
    question: str
    gold: str | None
    prediction: str | None = None  # our extraction: the strategy's own answer
    prediction_lm_eval_strict: str | None = None  # lm-eval's filters on the final text; None: nothing found
    prediction_lm_eval_cot_strict: str | None = None
    prediction_lm_eval_flexible: str | None = None
    correct: bool = False  # under the run's --scoring
    correct_ours: bool = False
    correct_lm_eval_strict: bool = False
    correct_lm_eval_cot_strict: bool | None = None  # None: a run from before this rule existed
    correct_lm_eval_flexible: bool = False
    text: str = ""  # the final text
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None  # why the question failed
    #: The strategy this one fell back to (PAL, least-to-most, plan-dag) when its own method gave up;
    #: "none" when it gave up with no fallback set; None when it did not give up.
    fallback: str | None = None
    session: int = 0
    started_at: float = 0.0  # unix seconds
    finished_at: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return self.strategy, self.id

    def verdict(self, rule: str) -> bool:
        return bool(getattr(self, CORRECT_FIELD[rule]))

    def predicted(self, rule: str) -> str | None:
        value: str | None = getattr(self, PREDICTION_FIELD[rule])
        return value
