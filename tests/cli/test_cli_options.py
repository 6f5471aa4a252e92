"""The command line's flags: one model-flag set, one --seed, yes/no options, usage errors (exit 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import reasoner.cli as cli_package
from reasoner.cli.main import main
from reasoner.cli.parser import build_parser
from reasoner.strategy import available


def solver(body: dict[str, Any], index: int) -> str:
    return " 6 * 7 = 42.\nThe answer is 42."


pytestmark = pytest.mark.server(models="tiny", responder=solver)


@pytest.fixture
def opened(monkeypatch):  # type: ignore[no-untyped-def]
    """The options each `open_backend` call got, from the solve path."""
    import reasoner.cli.solve as solve

    calls: list[dict[str, Any]] = []
    real = solve.open_backend

    async def spy(spec: str, **options: Any):  # type: ignore[no-untyped-def]
        calls.append(options)
        return await real(spec, **options)

    monkeypatch.setattr(solve, "open_backend", spy)
    return calls


@pytest.fixture
def configs(monkeypatch):  # type: ignore[no-untyped-def]
    """The BenchConfig each `reasoner bench` builds; the run itself stops there."""
    import reasoner.cli.main as m

    seen: list[Any] = []

    async def fake_run(config, console):  # type: ignore[no-untyped-def]
        seen.append(config)
        raise m.BenchError("stop here")

    monkeypatch.setattr(m, "run_gsm8k", fake_run)
    return seen


def test_a_flag_for_no_chosen_strategy_is_a_usage_error(capsys) -> None:  # type: ignore[no-untyped-def]
    # It used to leave through SystemExit(message): exit 1 and no usage line.
    assert main(["bench", "gsm8k", "-s", "few-shot-cot", "--samples", "3"]) == 2
    err = capsys.readouterr().err
    assert "usage: reasoner bench" in err and "--samples does not apply to any chosen strategy" in err


def test_temperature_nan_is_refused_as_not_a_number(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit:
        main(["solve", "Q?", "--temperature", "nan"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "--temperature: must be a finite number, got 'nan'" in err and "2" not in err.split("--temperature")[-1]


def test_yes_no_options_can_be_switched_off() -> None:
    parser = build_parser(available())
    on = parser.parse_args(["solve", "Q", "-s", "self-consistency", "--logprobs"])
    off = parser.parse_args(["solve", "Q", "-s", "self-consistency", "--no-logprobs"])
    unset = parser.parse_args(["solve", "Q", "-s", "self-consistency"])
    assert (on.opt_logprobs, off.opt_logprobs, unset.opt_logprobs) == (True, False, None)


def test_one_seed_goes_to_every_strategy_and_to_the_sample(server, tmp_path: Path, configs) -> None:  # type: ignore[no-untyped-def]
    argv = ["bench", "gsm8k", "-s", "few-shot-cot", "-s", "zero-shot-cot", "--model", server.base_url,
            "--sample", "3", "--seed", "7", "-o", str(tmp_path / "run")]
    main(argv)
    (config,) = configs
    assert config.seed == 7
    assert {name: s.seed for name, s in config.strategies.items()} == {"few-shot-cot": 7, "zero-shot-cot": 7}


def test_model_flags_reach_the_backend_only_when_given(server, opened, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["solve", "Q?", "--model", server.base_url]) == 0
    assert main(["solve", "Q?", "--model", server.base_url, "--max-in-flight", "3", "--deadline", "30",
                 "--stall-timeout", "5", "--max-response-bytes", "100000"]) == 0
    assert opened[0] == {"model_name": None}
    assert opened[1] == {"model_name": None, "max_in_flight": 3, "deadline_s": 30.0, "stall_timeout_s": 5.0,
                         "max_response_bytes": 100000}


def test_http_flags_on_the_embedded_model_are_a_usage_error(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["solve", "Q?", "--deadline", "30"]) == 2
    assert "--deadline applies only to HTTP models" in capsys.readouterr().err


def test_concurrency_above_the_backend_bound_raises_it(server, tmp_path: Path, configs) -> None:  # type: ignore[no-untyped-def]
    base = ["bench", "gsm8k", "-s", "few-shot-cot", "--model", server.base_url, "-o", str(tmp_path / "r")]
    main([*base, "-c", "8"])
    main([*base, "-c", "100"])
    main([*base, "-c", "100", "--max-in-flight", "20"])
    assert [c.backend_options.get("max_in_flight") for c in configs] == [None, 100, 20]


def test_help_says_the_defaults_and_the_environment(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "default: few-shot-cot" in out
    # Each option says its default; where strategies differ, each one's.
    assert re.search(r"\[self-consistency\]; default 16|16 \(self- ?consistency\)", out)  # argparse may wrap at the hyphen
    assert "REASONER_THREADS" in out and "chat_history" in out
    assert "-c counts questions, this counts requests" in out


def test_interrupt_handler_is_installed_only_for_the_command() -> None:
    import signal

    # Importing the package from a program (here: pytest) leaves Ctrl-C to that program.
    assert signal.getsignal(signal.SIGINT) is not cli_package._interrupted_while_starting


def test_json_output_is_scrubbed_of_secrets(server, capsys) -> None:  # type: ignore[no-untyped-def]
    from reasoner import secrets

    secrets.register("sk-test-echoed-secret-1234")
    server.responder = lambda body, i: " sk-test-echoed-secret-1234 The answer is 42."
    assert main(["solve", "Q?", "--model", server.base_url, "--json"]) == 0
    out = capsys.readouterr().out
    assert "sk-test-echoed-secret-1234" not in out and json.loads(out)["answer"] == "42"


def test_a_bad_chat_option_is_a_usage_error_before_the_chat_starts(capsys) -> None:  # type: ignore[no-untyped-def]
    # It was accepted, and every turn then failed on it.
    assert main(["chat", "-s", "zero-shot-cot", "--max-tokens", "lots"]) == 2
    assert "usage: reasoner chat" in capsys.readouterr().err
