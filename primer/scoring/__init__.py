"""Scoring models: benchmark data (humaneval, mbpp, evalplus, data_files), conventions, pass@k (metrics), the
harness, generation backends, checkpoints, checkpoint selection, contamination. See docs/evaluate.md."""

from primer.scoring.backends import Backend, Completion, HFBackend, OpenAIBackend, PrimerBackend, cut_at_stops
from primer.scoring.harness import EvalRun, Problem, SampleRecord, evaluate, load_problems, summarize

__all__ = ["Backend", "Completion", "PrimerBackend", "HFBackend", "OpenAIBackend", "cut_at_stops", "EvalRun",
           "Problem", "SampleRecord", "evaluate", "load_problems", "summarize"]
