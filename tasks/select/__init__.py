"""The select stage's Prefect-free units (run.py: score every checkpoint, choose; report.py: what is
published) and its Prefect tasks (prefect_tasks.py)."""

from tasks.select.run import read_selection, select_run

__all__ = ["read_selection", "select_run"]
