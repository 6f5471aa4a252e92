"""`reasoner chat`: a conversation in the terminal with a model that reasons and uses tools in the open."""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from reasoner.backends.base import Backend, BackendError
from reasoner.backends.spec import open_backend
from reasoner.cli import context
from reasoner.cli.console import SafeConsole, clean
from reasoner.cli.parser import UsageError, bad_options, given_options
from reasoner.cli.solve import plural
from reasoner.prompts import Templates
from reasoner.strategy import Strategy, available, get_strategy
from reasoner.trace import render_tree
from reasoner.types import Solution, Usage

templates = Templates("reasoner.cli")
HISTORY_FILE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reasoner" / "chat_history"
SHOWN_STEP_CHARS = 2000

HELP = """[bold]commands[/bold]
  /help              this list
  /strategy NAME     switch strategy, one of:
{strategies}
  /model SPEC        switch model: local (SmolLM2), local:gemma (Gemma 3 270M),
                     llamacpp:PATH.gguf, http://HOST:PORT/v1, openai:MODEL,
                     vllm:MODEL_OR_PATH
  /tools \\[a,b]       show the tools, or choose them (calculator, python, search)
  /trace [FILE.html] the last turn's graph of calls; with a file, as a page
  /save FILE         save the session as FILE.json and FILE.md
  /reset             forget the conversation
  /quit              leave (Ctrl-D works too)
Ctrl-C during a turn cancels it. Older turns are left out when the
conversation outgrows the model's context window.
Typed lines are kept in {history}."""

# Colours per kind of step, so thoughts, actions and observations read apart at a glance.
STEP_STYLE = {"thought": "cyan", "action": "magenta", "observation": "yellow", "tool": "yellow", "model": "blue"}


class Turn(BaseModel):
    question: str
    answer: str | None = None
    text: str = ""
    error: str | None = None
    strategy: str
    usage: dict[str, Any] = Field(default_factory=dict)
    trace: dict[str, Any] = Field(default_factory=dict)


class Session(BaseModel):
    model: str
    strategy: str
    tools: list[str]
    turns: list[Turn] = Field(default_factory=list)


class Chat:
    def __init__(self, model: str, model_name: str | None, strategy: str, tools: list[str], docs: str | None,
                 context_tokens: int | None = None, console: Console | None = None,
                 backend_options: dict[str, Any] | None = None, options: dict[str, Any] | None = None) -> None:
        self.console = console or SafeConsole()
        self.model_spec = model
        self.model_name = model_name
        self.backend_options = backend_options or {}
        self.strategies = available()
        self.session = Session(model=model, strategy=strategy, tools=tools)
        self.docs = docs
        self.context_tokens = context_tokens
        self._overhead: dict[str, int] = {}  # tokens each strategy setting wraps around a question
        self.backend: Backend | None = None
        # Strategy options from the command line; each strategy takes the ones it has.
        self.options = options or {}

    # -- the conversation ------------------------------------------------------------------

    async def prompt_for(self, question: str, strategy: Strategy, backend: Backend) -> context.Fitted:
        """The question with as much of the conversation as the model's window leaves room for."""
        history = [t for t in self.session.turns if t.error is None]
        count = context.token_counter(backend)
        window = context.context_window(backend, self.context_tokens)
        if not history:
            return context.Fitted(prompt=question, kept=0, dropped=0, budget=window)
        key = f"{self.model_spec} {strategy.name} {strategy.model_dump_json()}"
        if key not in self._overhead:  # the strategy's own prompt, measured once per setting
            self._overhead[key] = await context.strategy_overhead(strategy, question, backend, count)
        budget = window - self._overhead[key] - context.generation_reserve(strategy) - context.SPARE_TOKENS
        return context.fit(history, question, budget, count)

    def strategy(self) -> Strategy:
        cls = self.strategies[self.session.strategy]
        options: dict[str, Any] = {k: v for k, v in self.options.items() if k in cls.model_fields}
        if "tools" in cls.model_fields:
            options["tools"] = self.session.tools
        if "docs" in cls.model_fields and self.docs:
            options["docs"] = self.docs
        return get_strategy(self.session.strategy, **options)

    async def backend_ready(self) -> Backend:
        if self.backend is None:
            self.backend = await open_backend(self.model_spec, model_name=self.model_name, **self.backend_options)
        return self.backend

    def show_step(self, event: str, node: str, attrs: dict[str, Any]) -> None:
        if event not in ("done", "failed"):
            return
        label, kind = attrs.get("label", node), attrs.get("kind", "")
        style = STEP_STYLE.get(label, STEP_STYLE.get(kind, "white"))
        if event == "failed":
            if "upstream" not in attrs:  # one line for the cause, not one per dependant
                self.console.print(Text(clean(f"✗ {node}: {attrs.get('error', '')}"), style="red"))
            return
        output = attrs.get("output")
        if kind == "model" and isinstance(output, dict):
            self.show_thinking(label, output)
            texts = [c.get("text", "") for c in output.get("choices", [])]
            body = texts[0] if len(texts) == 1 else "\n".join(f"[{i}] {t.strip()}" for i, t in enumerate(texts))
        elif kind == "tool" and isinstance(output, dict) and "output" in output:
            body = f"{output.get('tool', '')}[{output.get('input') or ''}] → {output['output']}"
        else:
            return  # pure steps (parse, vote) add nothing a reader needs live
        # Cleaned before it becomes a Text: rich drops BEL, which ends an OSC title or link, and
        # the console could then no longer tell where the sequence stops.
        body = clean(body).strip()
        if body:
            if len(body) > SHOWN_STEP_CHARS:
                body = f"{body[:SHOWN_STEP_CHARS]} … ({len(body) - SHOWN_STEP_CHARS:,} more characters; /save keeps all)"
            self.console.print(Text(f"{label} ", style=f"bold {style}") + Text(body, style=style))

    def show_thinking(self, label: str, output: dict[str, Any]) -> None:
        """A reasoning model's thinking: one dim line, its start, apart from the text it led to."""
        thoughts = [c["reasoning"] for c in output.get("choices", []) if c.get("reasoning")]
        if not thoughts:
            return
        start = " ".join(clean(thoughts[0]).split())
        start = start if len(start) <= 100 else start[:99] + "…"
        more = f"; {len(thoughts)} samples" if len(thoughts) > 1 else ""
        self.console.print(Text(f"{label} thinking ({len(thoughts[0]):,} characters{more}; /trace keeps it) {start}", style="dim italic"))

    async def turn(self, question: str) -> Turn:
        backend = await self.backend_ready()
        strategy = self.strategy()
        fitted = await self.prompt_for(question, strategy, backend)
        if fitted.dropped:
            window = context.context_window(backend, self.context_tokens)
            self.console.print(
                f"[dim]({plural(fitted.dropped, 'earlier turn')} left out to fit the model's {window}-token context "
                f"window; {fitted.kept} kept)[/dim]"
            )
        started = time.perf_counter()
        solution: Solution = await strategy.solve(fitted.prompt, backend, on_node=self.show_step)
        u = solution.usage
        turn = Turn(question=question, answer=solution.answer, text=solution.text, error=solution.error,
                    strategy=self.session.strategy, usage=u.model_dump(), trace=solution.trace)
        if solution.error:
            self.console.print(f"[red]error:[/red] {escape(solution.error)}")
        else:
            shown = solution.answer if solution.answer is not None else "(no numeric answer)"
            self.console.print(Panel(f"[bold]{escape(shown)}[/bold]", title="answer", border_style="green", expand=False))
        fallback, why = solution.details.get("fallback"), solution.details.get("fallback_reason")
        if isinstance(fallback, str) and isinstance(why, str):  # pal, plan-dag, flowchart: say why their own way failed
            said = " ".join(clean(why).split())
            said = said if len(said) <= 200 else said[:199] + "…"
            what = "gave no answer" if fallback == "none" else f"fell back to {fallback}"
            self.console.print(Text(f"{self.session.strategy} {what}: {said}", style="yellow"))
        self.console.print(
            f"[dim]{plural(u.calls, 'call')} · {u.prompt_tokens}+{u.completion_tokens} tokens"
            f"{f' ({u.reasoning_tokens} thinking)' if u.reasoning_tokens else ''} · "
            f"{time.perf_counter() - started:.1f} s · {self.session.strategy}[/dim]"
        )
        return turn

    # -- commands ---------------------------------------------------------------------------

    def trace_page(self, turn: Turn, path: str) -> None:
        """The turn's graph as `reasoner solve --trace-html` draws it: one offline HTML page."""
        from reasoner.bench.explorer import write_solution_page

        solution = Solution(question=turn.question, strategy=turn.strategy, answer=turn.answer, text=turn.text,
                            usage=Usage(**turn.usage), trace=turn.trace, error=turn.error)  # fmt: skip
        try:
            page = write_solution_page(solution, path, model=self.model_spec)
        except OSError as exc:
            self.console.print(f"[red]cannot write {escape(path)}: {escape(exc.strerror or str(exc))}[/red]")
            return
        self.console.print(f"trace page: {escape(str(page))}")

    def command(self, line: str) -> bool:
        """Run a slash command; False means leave."""
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            self.console.print(self.help())
        elif name == "strategy":
            if arg not in self.strategies:
                self.console.print(f"[red]unknown strategy {escape(arg)!r}[/red]; one of: {', '.join(sorted(self.strategies))}")
            else:
                self.session.strategy = arg
                self.console.print(f"strategy: [bold]{arg}[/bold]")
        elif name == "model":
            if not arg:
                self.console.print(f"model: [bold]{escape(self.model_spec)}[/bold]")
            else:
                self.switch_model(arg)
        elif name == "tools":
            if arg:
                self.session.tools = [t.strip() for t in arg.split(",") if t.strip()]
            self.console.print(f"tools: [bold]{', '.join(self.session.tools) or 'none'}[/bold]")
        elif name == "trace":
            if not self.session.turns:
                self.console.print("no turn yet")
            elif arg:
                self.trace_page(self.session.turns[-1], arg)
            else:
                self.console.print(render_tree(self.session.turns[-1].trace, title="last turn"))
        elif name == "save":
            self.save(arg or "reasoner-chat")
        elif name == "reset":
            self.session.turns.clear()
            self.console.print("conversation forgotten")
        else:
            self.console.print(f"[red]unknown command /{escape(name)}[/red]")
            self.console.print(self.help())
        return True

    def help(self) -> str:
        names = textwrap.fill(", ".join(sorted(self.strategies)), 78, initial_indent=" " * 21, subsequent_indent=" " * 21)
        return HELP.format(strategies=names, history=escape(str(HISTORY_FILE)))

    def switch_model(self, spec: str) -> None:
        try:
            backend = asyncio.run(open_backend(spec, model_name=self.model_name, **self.backend_options))
        except BackendError as exc:
            self.console.print(f"[red]error:[/red] {escape(str(exc))}")
            return
        self.backend, self.model_spec = backend, spec
        self.session.model = spec
        self.console.print(f"model: [bold]{escape(spec)}[/bold]")

    def save(self, target: str) -> None:
        base = Path(target).with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".json").write_text(self.session.model_dump_json(indent=2))
        base.with_suffix(".md").write_text(templates.render("chat_transcript.md.j2", session=self.session))
        self.console.print(f"saved {base}.json and {base}.md")

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        try:
            import readline  # line editing and history where the platform has it

            HISTORY_FILE.parent.mkdir(parents=True, exist_ok=True)
            if HISTORY_FILE.exists():
                readline.read_history_file(HISTORY_FILE)
        except (ImportError, OSError):
            readline = None  # type: ignore[assignment]
        self.console.print(
            f"[bold]reasoner chat[/bold] · model {escape(self.model_spec)} · strategy {self.session.strategy} · "
            "/help for commands"
        )
        try:
            while True:
                try:
                    line = input("you> ").strip()
                except EOFError:
                    self.console.print()
                    return 0
                except KeyboardInterrupt:
                    self.console.print()
                    continue
                if not line:
                    continue
                if line.startswith("/"):
                    if not self.command(line):
                        return 0
                    continue
                try:
                    # asyncio.run turns Ctrl-C into cancelling the turn: every request in flight is
                    # cancelled before KeyboardInterrupt reaches us.
                    self.session.turns.append(asyncio.run(self.turn(line)))
                except KeyboardInterrupt:
                    self.console.print("[yellow]turn cancelled[/yellow]")
                except (BackendError, ValueError, OSError) as exc:
                    self.console.print(f"[red]error:[/red] {escape(str(exc))}")
        finally:
            if readline is not None:
                try:
                    readline.write_history_file(HISTORY_FILE)
                except OSError:
                    pass


def main(args: Any, backend_options: dict[str, Any]) -> int:
    """`reasoner chat` with the parsed command line and the backend options its model flags make."""
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    chat = Chat(args.model, args.model_name, args.strategy, tools, args.docs, context_tokens=args.context_tokens,
                backend_options=backend_options, options=given_options(args))
    try:
        chat.strategy()  # a bad option is a usage error now, not an error on every turn
    except ValidationError as exc:
        raise UsageError(bad_options(args.strategy, exc)) from None
    return chat.run()
