"""The evaluate stage's Prefect-free units (plan, model, run, contamination, report) and its Prefect tasks
(prefect_tasks.py). `evaluate_model` scores in one process; the flow runs the same steps with the sandbox
batches mapped on its task runner."""

from tasks.evaluate.run import evaluate_model, read_summary

__all__ = ["evaluate_model", "read_summary"]
