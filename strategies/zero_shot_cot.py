"""Zero-shot chain-of-thought (Kojima et al. 2022, "Large Language Models are Zero-Shot Reasoners").

Two stages, two model calls:
1. reasoning extraction:  "Q: {question}\\nA: Let's think step by step."  -> the model reasons;
2. answer extraction:     the same text, the reasoning, then
                          "Therefore, the answer (arabic numerals) is"  -> the model names a number.
On a chat model the "A: ..." part starts the assistant's reply, which the model continues.
"""

from __future__ import annotations

from pydantic import Field

from reasoner.answers import extract_answer
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer
from reasoner.strategies.common import logprob_details, templates


class ZeroShotCoT(Strategy):
    name = "zero-shot-cot"
    summary = "Let's think step by step, then 'Therefore, the answer (arabic numerals) is' (2 calls)."

    max_tokens: int = Field(256, ge=1, description="tokens for the reasoning stage")
    answer_max_tokens: int = Field(32, ge=1, description="tokens for the answer-extraction stage")

    async def forward(self, run: Run, question: str) -> Answer:
        # The question is the user's turn; "A: Let's think step by step." starts the model's reply.
        ask = templates.render("zero_shot_cot/question.j2", question=question)
        reason = await run.generate(self.turn(ask, templates.render("zero_shot_cot/reason.j2"), stop=("\nQ:",)), label="reason")
        reasoning = reason.text.strip()
        # The answer is a short continuation; sampling it would only add noise.
        prefill = templates.render("zero_shot_cot/answer.j2", reasoning=reasoning)
        extract = self.turn(ask, prefill, temperature=0.0, max_tokens=self.answer_max_tokens, stop=("\n\n", "\nQ:"))
        final = (await run.generate(extract, label="answer")).text.strip()
        # Kojima et al. take the first number after the trigger; reading the continuation as
        # "The answer is …" makes our parser do exactly that.
        return Answer(
            answer=extract_answer(f"The answer is {final}"),
            text=f"{reasoning}\nTherefore, the answer (arabic numerals) is {final}",
            details={"reasoning": reasoning, "answer_text": final, **logprob_details(reason.choices[0])},
        )
