"""Benchmark data (HumanEval, MBPP) and metrics (pass@k).  No model code; execution goes through
primer.sandbox."""

from primer.evals import humaneval, mbpp
from primer.evals.metrics import estimate_pass_at_k, greedy_pass_at_1, pass_at_k, summarize_pass_at_k
from primer.evals.runner import SampleResult, score_samples, summarize

__all__ = ["humaneval", "mbpp", "estimate_pass_at_k", "greedy_pass_at_1", "pass_at_k", "summarize_pass_at_k",
           "SampleResult", "score_samples", "summarize"]
