"""Particle filtering: the softmax, the log-weights and both resamplings on their own; the filter
on scripted replies (one request with n per shared prefix, the slip resampled away) and on the
simulated step model (accuracy against greedy chain-of-thought, requests counted, reproducible)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from pydantic import ValidationError

from reasoner.answers import is_correct
from reasoner.backends.http import OpenAIBackend
from reasoner.data import load_gsm8k
from reasoner.simulators.steps import StepSimulator
from reasoner.strategies.particle_filter import log_weight, resample, softmax
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.testing.scripted import ScriptedBackend
from reasoner.types import GenerationRequest

QUESTION = "Janet's ducks lay 16 eggs a day; she eats 3, bakes with 4 and sells the rest at $2. How much does she make?"


def test_softmax_with_a_temperature() -> None:
    assert softmax([0.0, math.log(3)]) == pytest.approx([0.25, 0.75])
    # Temperature 2 takes the square root of the odds; a high one flattens towards uniform.
    assert softmax([0.0, math.log(3)], 2.0) == pytest.approx([1 / (1 + math.sqrt(3)), math.sqrt(3) / (1 + math.sqrt(3))])
    assert softmax([0.0, 5.0], 1000.0) == pytest.approx([0.5, 0.5], abs=0.01)
    assert softmax([1000.0, 0.0]) == pytest.approx([1.0, 0.0])  # shifted by the largest: no overflow
    with pytest.raises(ValueError, match="positive"):
        softmax([0.0], 0.0)


def test_log_weights_are_the_logit_of_the_score_clipped_at_the_ends() -> None:
    assert log_weight(0.5) == 0.0 and log_weight(0.75) == pytest.approx(math.log(3))
    assert math.isfinite(log_weight(0.0)) and math.isfinite(log_weight(1.0)) and log_weight(0.0) == pytest.approx(-log_weight(1.0))


@pytest.mark.parametrize("seed", range(5))
def test_systematic_resampling_gives_each_particle_its_share_exactly(seed: int) -> None:
    # Evenly spaced draws: a weight w of N draws gets floor(wN) or ceil(wN), here exact.
    drawn = resample([0.5, 0.25, 0.0, 0.25], 4, random.Random(seed), "systematic")
    assert Counter(drawn) == {0: 2, 1: 1, 3: 1} and drawn == sorted(drawn)


def test_multinomial_resampling_draws_in_proportion_and_is_reproducible() -> None:
    drawn = resample([0.6, 0.0, 0.4], 10_000, random.Random(1), "multinomial")
    counts = Counter(drawn)
    assert counts[1] == 0 and abs(counts[0] / 10_000 - 0.6) < 0.02
    assert drawn == resample([0.6, 0.0, 0.4], 10_000, random.Random(1), "multinomial")
    with pytest.raises(ValueError, match="unknown resampling 'stratified'"):
        resample([1.0], 1, random.Random(0), "stratified")  # type: ignore[arg-type]


NEXT = {  # the last line so far -> the next steps, one per choice in turn
    "= 9 eggs.": ["She makes 9 * 2 = 18 dollars.", "She makes 9 * 2 = 19 dollars."],
    "dollars.": ["The answer is {}."],
    "A:": ["She sells 16 - 3 - 4 = 9 eggs.", "She sells 16 - 3 - 4 = 8 eggs."],
    "= 8 eggs.": ["She makes 8 * 2 = 16 dollars."],
}


def janet() -> ScriptedBackend:
    """Scripted steps for QUESTION: each choice of a request the next of its prefix's steps."""
    counts: dict[str, int] = {}

    def reply(request: GenerationRequest, _: int) -> str:
        last = request.as_messages()[-1].content.rstrip("\n").splitlines()[-1]
        key = next(k for k in NEXT if last.endswith(k))
        counts[last] = counts.get(last, -1) + 1
        value = last.rsplit("= ", 1)[-1].split()[0] if key == "dollars." else ""
        return NEXT[key][counts[last] % len(NEXT[key])].format(value)

    return ScriptedBackend([("Q: Janet", reply)])


@pytest.mark.parametrize("resampling", ["multinomial", "systematic"])
async def test_particles_with_a_slip_are_resampled_away_and_shared_prefixes_ask_once(resampling: str) -> None:
    backend = janet()
    solution = await get_strategy("particle-filter", particles=4, resampling=resampling, seed=0).solve(QUESTION, backend)
    assert solution.error is None and solution.answer == "18"
    # Step 1: the 4 particles share the empty prefix: one request with n=4. Half slip (= 8 eggs),
    # are weighed logit(0), and none is drawn again, so step 2 is again one prefix, one request.
    assert [(r.n, r.prefill.splitlines()[-1]) for r in backend.requests[:2]] == [(4, "A:"), (4, "A: She sells 16 - 3 - 4 = 9 eggs.")]
    first, second = solution.details["steps"][:2]
    assert first["distinct"] == 2 and first["kept"] == 1 and second["kept"] == 1
    assert set(solution.details["answers"]) == {"18"}
    ids = {n["id"] for n in solution.trace["nodes"]}
    assert {"step0/extend0", "step0/weigh0", "step0/weigh1", "step1/extend0"} <= ids


async def test_a_seeded_run_is_reproducible_and_the_options_are_checked() -> None:
    runs = [await get_strategy("particle-filter", particles=6, seed=3).solve(QUESTION, janet()) for _ in range(2)]
    assert runs[0].details == runs[1].details and runs[0].text == runs[1].text
    with pytest.raises(ValidationError, match="resampling"):
        get_strategy("particle-filter", resampling="stratified")
    with pytest.raises(ValidationError, match="softmax_temperature"):
        get_strategy("particle-filter", softmax_temperature=0)


@pytest.fixture(scope="module")
def sim_server() -> object:
    pool = load_gsm8k("test")[:40]
    sim = StepSimulator(pool, arith_rate=0.15, logic_rate=0.0, seed=5)
    problems = [p for p in pool if sim.usable(p.question)][:12]
    with FakeOpenAIServer(responder=sim.respond) as server:
        yield server, problems


@pytest.mark.parametrize("options", [{}, {"resampling": "multinomial", "final": "best", "particles": 4}])
async def test_on_the_simulated_model_the_filter_beats_greedy_chain_of_thought(sim_server, options: dict) -> None:  # type: ignore[no-untyped-def]
    server, problems = sim_server
    backend = OpenAIBackend(server.base_url, "fake-model")
    particles = options.get("particles", 8)
    try:
        baseline = filtered = requests = samples = 0
        for i, p in enumerate(problems):
            plain = await get_strategy("few-shot-cot", temperature=0.7, seed=i).solve(p.question, backend)
            server.reset()
            solution = await get_strategy("particle-filter", seed=i, **options).solve(p.question, backend)
            assert solution.error is None, solution.error
            baseline += is_correct(plain.answer, p.gold)
            filtered += is_correct(solution.answer, p.gold)
            # Counted on the server: a request per distinct open prefix, all of whose particles it serves.
            sent = [r.body for r in server.completion_requests()]
            steps = solution.details["steps"]
            assert sent[0]["n"] == particles and len(sent) == sum(s["requests"] for s in steps)
            assert sum(b["n"] for b in sent) == sum(s["extended"] for s in steps)
            requests += len(sent)
            samples += sum(b["n"] for b in sent)
    finally:
        await backend.aclose()
    assert filtered > baseline and filtered >= len(problems) - 2
    assert samples > requests  # particles with the same steps (the start, copies resampling made) shared requests


@pytest.mark.slow
async def test_on_the_embedded_model_it_runs_to_an_answer_or_no_answer(local_backend) -> None:  # type: ignore[no-untyped-def]
    pf = get_strategy("particle-filter", particles=3, depth=2, k=2, max_tokens=32, seed=0)
    solution = await pf.solve("Tom has 3 apples and buys 4 more. How many apples does he have?", local_backend)
    assert solution.error is None, solution.error
    assert solution.answer is None or solution.answer.lstrip("-").replace(".", "", 1).isdigit()
    [first] = [n for n in solution.trace["nodes"] if n["id"] == "step0/extend0"]
    assert first["request"]["n"] == 3 and len(first["output"]["choices"]) == 3  # every particle: one batched call
