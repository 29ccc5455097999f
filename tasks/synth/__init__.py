"""The synthesize stage's Prefect-free units (prepare, topics, generation, verification, output).

The Prefect tasks wrapping them are declared in one place, tasks/synth/prefect_tasks.py; the order they run
in is the flow's, flows/synthesize.py. Nothing here imports Prefect.
"""
