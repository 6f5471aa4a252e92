"""reasoner: make a language model reason better by orchestrating it.

Strategies from the literature run as graphs of model calls on any backend:

    import reasoner
    solution = reasoner.solve("What is 17 * 3 - 4?", strategy="zero-shot-cot", model="local")
    print(solution.answer, solution.usage)
"""

from reasoner.api import SolveError, asolve, solve
from reasoner.backends import Backend, BackendError, open_backend
from reasoner.engine import Engine
from reasoner.graph import Ctx, Forward, Graph
from reasoner.strategy import Strategy, available, get_strategy
from reasoner.types import Answer, Choice, Completion, GenerationRequest, Message, Solution, Usage

__version__ = "0.1.0"

__all__ = [
    "Answer", "Backend", "BackendError", "Choice", "Completion", "Ctx", "Engine", "Forward",
    "GenerationRequest", "Graph", "Message", "Solution", "SolveError", "Strategy", "Usage",
    "asolve", "available", "get_strategy", "open_backend", "solve",
]
