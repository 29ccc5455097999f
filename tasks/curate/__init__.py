"""The curate stage (see docs/curate.md), Prefect-free units plus one module declaring its Prefect tasks:

    sources/plan (stages.py) -> filters (filters.py) + signatures (dedup.py) -> dedup partitions and
    clusters (stages.py, dedup.py) -> annotation (annotate.py: heuristic.py | teacher_annotator.py)
    -> quality classifier (quality.py, embed.py) -> decontamination (decontam.py) -> output (output.py)

`prefect_tasks.py` wraps the units as tasks (retries, cache policy); `flows/curate.py` calls them in order.
Nothing is imported here, so importing one unit never loads the others.
"""
