"""The export stage's Prefect-free unit (run.py: a selection's checkpoint -> release/<key>/, see
primer/export.py; report.py: what is published) and its Prefect tasks (prefect_tasks.py)."""

from tasks.export.run import export_release

__all__ = ["export_release"]
