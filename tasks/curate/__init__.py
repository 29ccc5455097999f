"""The curate stage's steps: filters, dedup, annotation, quality classifier, decontamination (see docs/curate.md).

Prefect-free building blocks; `flows/curate.py` maps them over shards as tasks.
"""

from tasks.curate.annotate import Annotation, HeuristicAnnotator, parse_score
from tasks.curate.decontam import Decontaminator, Hit, load_humaneval, load_mbpp
from tasks.curate.dedup import MinHasher
from tasks.curate.filters import BaseFilter, FilterChain, default_filters

__all__ = ["Annotation", "HeuristicAnnotator", "parse_score", "Decontaminator", "Hit", "load_humaneval",
           "load_mbpp", "MinHasher", "BaseFilter", "FilterChain", "default_filters"]
