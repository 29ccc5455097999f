"""The train stage's Prefect-free units: the run spec (spec.py), launching the ranks (launch.py), the run
manifest and loss curve (summary.py). Prefect tasks are declared in prefect_tasks.py only."""

from tasks.train.launch import TrainingFailed, check_precision, launch, remove_stale_shm_buffers
from tasks.train.spec import build_spec, launch_world
from tasks.train.summary import best_checkpoint, loss_plot_png, run_summary

__all__ = ["TrainingFailed", "best_checkpoint", "build_spec", "check_precision", "launch", "launch_world",
           "loss_plot_png", "remove_stale_shm_buffers", "run_summary"]
