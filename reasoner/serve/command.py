"""The `reasoner serve` sub-command: its flags, and running the gateway in the foreground.

Imported by the CLI's parser, so it imports nothing of the `serve` extra until the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from rich.console import Console

from reasoner import secrets
from reasoner.backends.errors import BackendError

HELP = "an OpenAI-compatible gateway: strategies chosen by the model name (self-consistency/MODEL)"


def whole(least: int, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in range, so a bad value is refused naming its flag
    (the CLI's other commands use it too; it is here because the CLI's parser imports this)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < least or (most is not None and value > most):
            bound = f"from {least} to {most}" if most is not None else f"at least {least}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("gateway")
    group.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other needs --api-key)")
    group.add_argument("--port", type=whole(0, 65535), default=8000, help="port (default 8000; 0 picks a free one)")
    group.add_argument("--api-key", help="clients must send `Authorization: Bearer KEY` (default: $REASONER_SERVE_API_KEY)")
    group.add_argument("--max-runs", type=whole(1), default=16, metavar="N",
                       help="strategy runs at once; more requests wait their turn (default 16)")
    group.add_argument("--max-waiting", type=whole(0), default=128, metavar="N",
                       help="strategy runs that may wait; beyond them a request gets 503 with Retry-After (default 128)")
    group.add_argument("--answer", choices=("reasoning", "final"), default="reasoning",
                       help="message content: the chosen reasoning, or only the final answer (default reasoning)")
    group.add_argument("--max-body-bytes", type=whole(1024), default=1024 * 1024, metavar="N", help="largest request body (default 1 MiB)")
    group.add_argument("--max-tokens-limit", type=whole(1), default=32_768, metavar="N", help="largest max_tokens a request may ask for")
    group.add_argument("--bank", metavar="PATH", help="a sample bank file: record every model call there and replay recorded ones")
    group.add_argument("--bank-mode", choices=("record", "replay", "refresh"), default="record",
                       help="with --bank: record (use and record; default), replay (a missing sample is an error), refresh")
    group.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))


def run(args: argparse.Namespace, backend_options: dict[str, Any], console: Console) -> int:
    """Serve until interrupted; a configuration that cannot start is one line and exit 2."""
    try:
        from pydantic import ValidationError

        from reasoner.serve.config import ServeConfig, ServeError, key_from_env
        from reasoner.serve.schemas import Limits
        from reasoner.serve.server import backend_factory, bind, run_loop, serve, url_of
    except ImportError as exc:
        console.print(f"error: `reasoner serve` needs the serve extra (pip install -e \".[serve]\"): {exc}", markup=False)
        return 2
    try:
        config = ServeConfig(
            model=args.model, host=args.host, port=args.port, api_key=key_from_env(args.api_key), max_runs=args.max_runs,
            max_waiting=args.max_waiting,
            answer=args.answer, limits=Limits(max_body_bytes=args.max_body_bytes, max_tokens=args.max_tokens_limit),
            bank=args.bank, bank_mode=args.bank_mode,
        ).checked()  # fmt: skip
        sock = bind(config.host, config.port)
    except (ValidationError, ServeError, OSError) as exc:
        console.print(f"error: {secrets.scrub(str(exc))}", markup=False, soft_wrap=True)
        return 2
    options = dict(backend_options)
    if args.model_name:
        options["model_name"] = args.model_name
    console.print(f"reasoner serve: {url_of(sock)} in front of {secrets.scrub(config.model)}"
                  f"{' (API key required)' if config.api_key else ''}", markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    try:
        run_loop(serve(config, backend_factory(config, options), sock, log_level=args.log_level))
    except BackendError as exc:
        console.print(f"error: {secrets.scrub(str(exc))}", markup=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
