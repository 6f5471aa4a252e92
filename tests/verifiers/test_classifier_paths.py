"""The mistake-finder end to end: `reasoner verifier train`, then `--verifier classifier:PATH` in the
verifier-guided strategies, the runner, the chat and the gateway, on the step-level simulated model."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from reasoner.backends.http import OpenAIBackend
from reasoner.cli.main import build_parser, main
from reasoner.data import load_gsm8k
from reasoner.simulators.steps import StepSimulator
from reasoner.strategy import available, get_strategy

PROBLEMS = load_gsm8k("test")[:30]
SIM = StepSimulator(PROBLEMS, arith_rate=0.2, logic_rate=0.1, seed=5)
USABLE = [p for p in PROBLEMS if SIM.usable(p.question)][:8]
pytestmark = pytest.mark.server(responder=SIM.respond)

# Each verifier-guided strategy with small options, and the option that names its verifier.
GUIDED = {
    "backtrack": {"max_backtracks": 2},
    "beam-search": {"width": 2, "expansions": 2},
    "best-of-n": {"samples": 3},
    "diverse": {"prompts": 2, "samples": 2, "k": 1},
    "self-consistency": {"samples": 3, "weighting": "verifier"},
    "tree-of-thought": {"evaluator": "verifier", "breadth": 2},
    "particle-filter": {"particles": 3},
    "mcts": {"iterations": 4},
}


def is_verdict(node: dict) -> bool:  # type: ignore[type-arg]
    """A verifier's node: a tool node whose output is a Verdict (labels differ by strategy)."""
    output = node.get("output")
    return node["kind"] == "tool" and isinstance(output, dict) and "verifier" in output and "scores" in output


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mistake-finder trained by the command, small and fast."""
    out = tmp_path_factory.mktemp("mf") / "finder.json"
    assert main(["verifier", "train", "--limit", "300", "--per-problem", "2", "--epochs", "2", "--simulated", "40", "--out", str(out)]) == 0
    return out


def test_the_train_command_saves_a_model_and_prints_its_evaluation(model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = json.loads(model_file.read_text())
    assert saved["format"] == "reasoner-mistake-finder" and saved["weights"]
    trained = saved["trained"]
    assert trained["made_from"] == "GSM8K train, 300 problems" and trained["seconds"] > 0
    held = trained["held_out"]
    assert held["first_mistake_accuracy"] > held["chance_first_mistake"] and set(held["recall"]) >= {"arith", "logic"}
    assert trained["simulated"]["traces"] > 0


def test_the_train_command_shows_progress_tables_and_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "small.json"
    assert main(["verifier", "train", "--limit", "200", "--per-problem", "2", "--epochs", "1", "--simulated", "0", "-o", str(out)]) == 0
    shown = capsys.readouterr()
    assert "recall: logic" in shown.out and "recall: arith" in shown.out and f"saved {out}" in shown.out
    assert [line.split(":")[0] for line in shown.err.splitlines()] == ["making traces", "reading features", "fitting", "calibrating", "evaluating"]
    assert "step-simulator traces" not in shown.out  # --simulated 0 skips that evaluation
    assert out.is_file()


def test_the_train_command_refuses_a_bad_labelled_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "mine.jsonl"
    bad.write_text('{"question": "q", "steps": ["a"], "mistake_index": 3}\n')
    assert main(["verifier", "train", "--limit", "20", "--labelled", str(bad), "-o", str(tmp_path / "m.json")]) == 1
    assert f"{bad}:1: field 'mistake_index'" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_the_train_command_refuses_too_little_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verifier", "train", "--limit", "5", "-o", str(tmp_path / "m.json")]) == 1
    assert "too few traces to train" in capsys.readouterr().err and not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("name", sorted(GUIDED))
async def test_every_verifier_guided_strategy_takes_the_classifier(server, model_file: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    if name not in available():
        pytest.skip(f"strategy {name} is not installed")
    spec = f"classifier:{model_file}"
    backend = OpenAIBackend(server.base_url, "fake-model")
    try:
        for i, p in enumerate(USABLE[:3]):
            solution = await get_strategy(name, verifier=spec, seed=i, **GUIDED[name]).solve(p.question, backend)
            assert solution.error is None, solution.error
            verdicts = [n for n in solution.trace["nodes"] if is_verdict(n)]
            assert verdicts and all(n["output"]["verifier"] == spec for n in verdicts)
            assert all(0.0 <= s <= 1.0 for n in verdicts for s in n["output"]["scores"])
    finally:
        await backend.aclose()


async def test_backtracking_with_the_classifier_goes_back_to_a_logic_slip_the_calculator_passes(server, model_file: Path) -> None:  # type: ignore[no-untyped-def]
    # Questions whose first pass has a logic slip the classifier locates: it backtracks there; arith never does.
    backend = OpenAIBackend(server.base_url, "fake-model")
    located = 0
    try:
        for i, p in enumerate(USABLE):
            with_classifier = await get_strategy("backtrack", verifier=f"classifier:{model_file}", seed=i).solve(p.question, backend)
            first = SIM.first_error(p.question, with_classifier.details["initial_text"].splitlines())
            if first is None or first[1] != "logic":
                continue
            with_arith = await get_strategy("backtrack", verifier="arith", seed=i).solve(p.question, backend)
            assert with_arith.details["initial_text"] == with_classifier.details["initial_text"]
            assert not with_arith.details["backtracks"] or with_arith.details["backtracks"][0]["step"] != first[0]
            steps = [b["step"] for b in with_classifier.details["backtracks"]]
            located += bool(steps) and steps[0] == first[0]
    finally:
        await backend.aclose()
    assert located >= 1


def write_data(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": p.id, "question": p.question, "answer": p.answer_field}) + "\n" for p in USABLE))
    return path


def test_the_runner_takes_the_classifier_flag(server, model_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    code = main(["bench", "gsm8k", "--model", server.base_url, "--data", str(write_data(tmp_path / "q.jsonl")), "-s", "backtrack",
                 "--verifier", f"classifier:{model_file}", "--out", str(out), "-c", "4"])  # fmt: skip
    assert code == 0
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == len(USABLE) and all(t["details"]["verifier"] == f"classifier:{model_file}" for t in traces)


def test_the_chat_takes_the_classifier_flag(server, model_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from reasoner.cli.chat import Chat
    from reasoner.cli.parser import given_options

    args = build_parser(available()).parse_args(
        ["chat", "--model", server.base_url, "-s", "backtrack", "--verifier", f"classifier:{model_file}"]
    )
    shown = io.StringIO()
    chat = Chat(args.model, None, args.strategy, [], None, console=Console(file=shown, width=200), options=given_options(args))
    assert chat.strategy().verifier == f"classifier:{model_file}"  # type: ignore[attr-defined]

    async def one_turn():  # type: ignore[no-untyped-def]
        try:
            return await chat.turn(USABLE[0].question)
        finally:
            await chat.backend.aclose()  # type: ignore[union-attr]

    turn = asyncio.run(one_turn())
    assert turn.error is None and turn.answer is not None
    assert any(is_verdict(n) and n["output"]["verifier"] == f"classifier:{model_file}" for n in turn.trace["nodes"])
    assert "answer" in shown.getvalue()


def test_the_chat_refuses_a_missing_model_file(server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "none.json"
    assert main(["chat", "--model", server.base_url, "-s", "backtrack", "--verifier", f"classifier:{missing}"]) == 2
    assert f"{missing}: cannot read the mistake-finder" in capsys.readouterr().err


def test_the_gateway_takes_the_classifier(server, model_file: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("uvicorn")
    openai = pytest.importorskip("openai")
    from reasoner.serve import BackgroundGateway, ServeConfig

    async def open_it() -> OpenAIBackend:
        return await OpenAIBackend(server.base_url, max_attempts=1).connect()

    spec = f"classifier:{model_file}"
    with BackgroundGateway(ServeConfig(model=server.base_url, port=0), open_it) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
        question = [{"role": "user", "content": USABLE[1].question}]
        by_body = client.chat.completions.create(model="fake-model", messages=question,  # type: ignore[arg-type]
                                                 extra_body={"reasoner": {"strategy": "backtrack", "options": {"verifier": spec}}})  # fmt: skip
        shipped = client.chat.completions.create(model="backtrack:verifier=classifier/fake-model", messages=question)  # type: ignore[arg-type]
        # The served model is matched at the end of the name, so a path may sit in the options.
        by_name = client.chat.completions.create(model=f"backtrack:verifier={spec}/fake-model", messages=question)  # type: ignore[arg-type]
        for reply, named in ((by_body, spec), (shipped, "classifier"), (by_name, spec)):
            extra = reply.model_extra["reasoner"]  # type: ignore[index]
            assert extra["strategy"] == "backtrack" and extra["details"]["verifier"] == named
            assert reply.choices[0].message.content
