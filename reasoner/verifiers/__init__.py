"""Verifiers: score a candidate solution, whole or step by step, as nodes of the graph.

Named by a spec (`arith`, `judge`, `judge:MODEL_SPEC`, `prm:URL`, `classifier[:PATH]`); see `spec.open_verifier`.
"""

from reasoner.verdict import Aggregation, Verdict, Verifier, aggregate, split_steps
from reasoner.verifiers.spec import (
    SPEC_HELP, VerifierSpec, VerifierSpecError, check_spec, kinds, open_verifier, parse_spec, register,
)

__all__ = [
    "Aggregation", "Verdict", "Verifier", "aggregate", "split_steps",
    "SPEC_HELP", "VerifierSpec", "VerifierSpecError", "check_spec", "kinds", "open_verifier", "parse_spec", "register",
]
