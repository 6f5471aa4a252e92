"""The mistake-finder: its training data, features, training, evaluation and model file."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

from reasoner.data import DataError, load_gsm8k
from reasoner.simulators.steps import StepSimulator
from reasoner.verifiers import VerifierSpecError, open_verifier
from reasoner.verifiers.classifier import SHIPPED, ClassifierVerifier, ModelFileError, load_model
from reasoner.verifiers.features import quantities, trace_features
from reasoner.verifiers.mistakes import (
    arithmetic_slip, dropped_quantity, load_labelled, made_traces, split_by_question, wrong_operand, wrong_operation,
)
from reasoner.verifiers.training import TrainConfig, evaluate, simulated_traces, train_from_gsm8k

SHIPPED_PATH = Path(__file__).resolve().parents[2] / "reasoner" / "verifiers" / SHIPPED
QUESTION = "Janet's ducks lay 16 eggs per day. She eats three and bakes with four. She sells the rest for $2 each. How much does she make?"


def test_each_programmatic_mistake_changes_what_it_should() -> None:
    rng = random.Random(0)
    for _ in range(20):
        assert dropped_quantity("16 - 3 - 4", rng) in ("16 - 3", "16 - 4")
        swapped = wrong_operation("9 * 2", rng)
        assert swapped is not None and swapped[:2] == "9 " and swapped[2] in "+-/"
        operand = wrong_operand("9 * 2", {Fraction(16), Fraction(9), Fraction(2)}, rng)
        assert operand is not None and operand != "9 * 2" and operand.count("*") == 1
        assert arithmetic_slip(Fraction(18), rng) != 18
    assert dropped_quantity("9 * 2", rng) is None  # one term dropped from two leaves no calculation


def test_question_quantities_include_words_and_percents() -> None:
    assert {Fraction(16), Fraction(3), Fraction(4), Fraction(2)} <= quantities(QUESTION)
    assert {Fraction(150), Fraction(3, 2), Fraction(5, 2)} <= quantities("the value rose by 150%")


def test_made_traces_are_labelled_by_the_simulators_judge() -> None:
    problems = load_gsm8k("train")[:60]
    traces = made_traces(problems, per_problem=3, mistake_share=0.7, seed=1)
    sim = StepSimulator(problems, arith_rate=0, logic_rate=0)
    made = {t.made for t in traces}
    assert {"clean", "arith", "operand", "operation"} <= made
    for t in traces:
        first = sim.first_error(t.question, t.steps)
        assert t.first_mistake == (None if first is None else first[0])
        assert t.labels.count(1) == (t.made != "clean")
        if t.made == "arith":
            assert t.kind == "arith"
        elif t.made != "clean":
            assert t.kind == "logic"


def test_split_by_question_keeps_a_questions_traces_together() -> None:
    traces = made_traces(load_gsm8k("train")[:50], per_problem=2)
    train, held = split_by_question(traces, 0.2)
    assert held and train and not {t.question for t in train} & {t.question for t in held}


def test_features_see_a_slip_and_an_operand_from_nowhere() -> None:
    steps = ["She sells 16 - 3 - 4 = 9 eggs.", "She makes 9 * 2 = 19 dollars.", "The answer is 19."]
    f = trace_features(QUESTION, steps)
    assert "arith_wrong" not in f[0] and f[1]["arith_wrong"] == 1.0 and f[2]["answer_is_last"] == 1.0
    near = trace_features(QUESTION, ["She sells 17 - 3 - 4 = 10 eggs."])[0]
    assert near["operand:near"] == 1.0 and near["ungrounded=1"] == 1.0
    assert "operand:near" not in f[0]


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_labelled_traces_in_big_bench_mistakes_shape(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"question": QUESTION, "steps": ["16 - 3 - 4 = 9", "9 * 2 = 19", "The answer is 19."], "mistake_index": 1, "mistake_type": "arith"},
        {"input": QUESTION, "steps": ["16 - 3 - 4 = 9", "9 * 2 = 18"], "mistake_index": None},
    ])  # fmt: skip
    first, second = load_labelled(path)
    assert first.labels == [0, 1, None] and first.kind == "arith" and first.first_mistake == 1
    assert second.labels == [0, 0] and second.first_mistake is None and second.question == QUESTION


@pytest.mark.parametrize(
    "row, message",
    [
        ({"steps": ["a"], "mistake_index": 0}, "field 'question'"),
        ({"question": "q", "steps": "one string", "mistake_index": 0}, "field 'steps'"),
        ({"question": "q", "steps": ["a", ""], "mistake_index": 0}, "field 'steps'"),
        ({"question": "q", "steps": ["a"]}, "field 'mistake_index' is missing"),
        ({"question": "q", "steps": ["a", "b"], "mistake_index": 2}, "integer from 0 to 1, got 2"),
        ({"question": "q", "steps": ["a"], "mistake_index": True}, "field 'mistake_index'"),
        ({"question": "q", "steps": ["a"], "mistake_index": 0, "mistake_type": "typo"}, "field 'mistake_type'"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_labelled_row_names_the_file_line_and_field(tmp_path: Path, row: object, message: str) -> None:
    good = {"question": "q", "steps": ["a"], "mistake_index": None}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(DataError, match=f"{path}:2: .*{message}" if "JSON" not in message else f"{path}:2: {message}"):
        load_labelled(path)


def test_training_on_a_little_data_beats_chance_and_takes_the_users_traces(tmp_path: Path) -> None:
    labelled = write_jsonl(tmp_path / "mine.jsonl", [
        {"question": f"Tom has {n} apples and gets {n} more. How many?", "steps": [f"{n} + {n} = {2 * n + 1}", f"The answer is {2 * n + 1}."],
         "mistake_index": 0} for n in range(2, 40)
    ])  # fmt: skip
    config = TrainConfig(limit=400, per_problem=2, simulated_questions=60, labelled=[str(labelled)], epochs=2)
    result = train_from_gsm8k(config)
    assert result.model.trained["user_traces"] == 38 and result.labelled_held_out is not None
    for e in (result.held_out, result.simulated):
        assert e is not None and e.traces > 50
        assert e.first_mistake_accuracy > e.chance_first_mistake + 0.2
        assert e.recall["arith"] > 0.6 > e.chance_recall["arith"]
    # Saved and loaded, it scores exactly as trained.
    path = result.model.save(tmp_path / "m.json")
    again = open_verifier(f"classifier:{path}")
    assert isinstance(again, ClassifierVerifier) and again.model.weights == result.model.weights


def test_the_shipped_model_is_read_once_not_per_question() -> None:
    assert load_model() is load_model()
    assert open_verifier("classifier").model is open_verifier("classifier").model  # type: ignore[attr-defined]


def test_the_shipped_model_finds_logic_slips_on_held_out_simulator_traces() -> None:
    # GSM8K test questions (the model was trained on train questions only), the simulator's own slips.
    model = load_model()
    e = evaluate(model, simulated_traces(load_gsm8k("test")[400:520], per_problem=4, arith_rate=0.05, logic_rate=0.1, seed=3))
    assert e.counts["logic"] >= 40
    assert e.recall["logic"] > e.chance_recall["logic"] + 0.05 and e.arith_recall["logic"] < 0.05
    assert e.recall["arith"] > 0.8 and (e.clean_left_alone or 0) > 0.8
    assert e.first_mistake_accuracy > e.arith_first_mistake > e.chance_first_mistake


def test_the_verdict_locates_the_first_mistake_and_scores_in_unit_interval() -> None:
    verifier = open_verifier(f"classifier:{SHIPPED_PATH}")
    steps = ["She sells 16 - 3 - 4 = 9 eggs.", "She makes 9 * 2 = 19 dollars.", "The answer is 19."]
    scores = verifier.model.scores(QUESTION, steps)  # type: ignore[attr-defined]
    assert all(0.0 < s < 1.0 for s in scores) and scores[0] >= 0.5 > scores[1]
    assert open_verifier("classifier").spec == "classifier"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read the mistake-finder"),
        ("{oops", "not JSON"),
        ('{"format": "something-else", "weights": {}}', "not a mistake-finder file"),
        ('{"format": "reasoner-mistake-finder", "weights": {"bias": "high"}}', "field weights.bias"),
    ],
)
def test_a_bad_model_file_is_a_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "model.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ModelFileError, match=message) as caught:
        load_model(path)
    assert str(path) in str(caught.value)
    # Through a strategy option, the same message (a spec is checked when the strategy is made).
    from reasoner.strategy import get_strategy

    with pytest.raises(Exception, match=message):
        get_strategy("backtrack", verifier=f"classifier:{path}")


def test_an_unknown_kind_is_still_refused() -> None:
    with pytest.raises(VerifierSpecError, match="known kinds: .*classifier"):
        open_verifier("classifer:model.json")


def test_the_measure_script_splits_logic_slips_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    from reasoner.bench.measure.mistake_finder import main as measure

    measure(["--questions", "40", "--logic-rate", "0.2"])
    shown = capsys.readouterr().out
    assert "logic: wrong operand" in shown and "logic: wrong operation" in shown and "ms a trace" in shown
