"""Curation: sources, filters, dedup, quality classifier, decontamination (owned by the curate stage).

The defaults run the `tiny` profile on 2 CPU cores in seconds: a hash-sampled 1,000 files of this Python's
standard library, the offline heuristic annotator and the offline hashed embedder. `small`/`phi1` profiles
raise `max_docs` (0 = everything), add sources and switch `annotator` to `teacher`. See docs/curate.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from primer.errors import ConfigError
from primer.settings import knob
from primer.settings.pack import SourceSpec


@dataclass
class CurateConfig:
    # ---- input ----------------------------------------------------------------------------------------
    sources: list[SourceSpec] = knob(default_factory=lambda: [SourceSpec(uri="python:stdlib")],
                                     help="Raw code to curate: folders of *.py (glob), Parquet/JSONL datasets "
                                          "with a text column, any store URI; `python:stdlib`, "
                                          "`python:site-packages` = this Python's own sources.")
    max_docs: int = knob(1000, help="Curate at most this many documents per source (0 = all): folder sources "
                                    "keep a seeded hash sample of files, dataset sources their first rows.",
                         min=0)
    shard_bytes: int = knob(4_000_000, help="Target input bytes per shard of a folder source (one mapped task "
                                            "each); a Parquet/JSONL file is one shard.", min=1)
    seed: int = knob(1234, help="Seed for file sampling, the annotation sample and the classifier.")
    # ---- filters ----------------------------------------------------------------------------------------
    min_bytes: int = knob(64, help="Drop documents smaller than this (reason too_small).", min=0)
    max_bytes: int = knob(1_000_000, help="Drop documents larger than this, unread (reason too_large).", min=1)
    min_lines: int = knob(5, help="Drop documents with fewer non-blank lines (reason too_few_lines).", min=0)
    max_line_length: int = knob(1000, help="Drop documents with any line longer than this (reason long_lines).",
                                min=1)
    max_mean_line_length: float = knob(100.0, help="Drop documents whose mean line length exceeds this "
                                                   "(reason long_lines).", min=1.0)
    min_alnum_fraction: float = knob(0.25, help="Drop documents with a smaller fraction of alphanumeric "
                                                "characters (reason low_alphanumeric).", min=0.0, max=1.0)
    max_data_fraction: float = knob(0.5, help="Drop documents whose bytes are mostly numeric/string literals "
                                              "(data tables, embedded blobs; reason data_heavy).",
                                    min=0.0, max=1.0)
    require_python: bool = knob(True, help="Drop documents that do not parse as Python (reason syntax_error).")
    # ---- dedup -----------------------------------------------------------------------------------------
    dedup_exact: bool = knob(True, help="Drop exact duplicates (same text after normalizing line ends, "
                                        "trailing spaces and blank edges; reason exact_duplicate).")
    dedup_near: bool = knob(True, help="Drop near-duplicates (MinHash + LSH over code-token shingles; "
                                       "reason near_duplicate).")
    near_threshold: float = knob(0.7, help="Jaccard similarity above which two documents are near-duplicates.",
                                 min=0.05, max=1.0)
    num_perm: int = knob(128, help="MinHash permutations.", min=16, max=1024)
    shingle_size: int = knob(5, help="Code tokens per shingle for MinHash.", min=1, max=64)
    near_verify: bool = knob(True, help="Confirm each LSH candidate pair by its estimated Jaccard (fewer false "
                                        "positives).")
    near_exact_margin: float = knob(0.1, help="Candidate pairs whose estimated Jaccard is within this of "
                                              "`near_threshold` are decided by their exact shingle-set "
                                              "Jaccard, from the two texts (0 = the estimate decides).",
                                    min=0.0, max=1.0)
    dedup_buckets: int = knob(4, help="Hash partitions of the dedup signatures (one mapped task each); raise "
                                      "it to bound memory on large inputs.", min=1, max=4096)
    # ---- annotation + quality classifier ------------------------------------------------------------------
    annotator: str = knob("heuristic", help="Who labels the annotation sample: `teacher` (the OpenAI-compatible "
                                            "endpoint in `teacher.*`) or `heuristic` (offline rules).",
                          choices=("heuristic", "teacher"))
    annotate_n: int = knob(300, help="Documents in the annotation sample (seeded, drawn after dedup).", min=0)
    annotate_prompt: str = knob("phi1", help="Teacher prompt: `phi1` (phi-1's 0-10 educational-value question) or "
                                             "`rubric` (FineWeb-Edu style additive 5-point rubric, doubled to 0-10).",
                                choices=("phi1", "rubric"))
    annotate_model: str = knob("", help="Teacher model for annotation; empty = the teacher's default model.")
    annotate_max_chars: int = knob(6000, help="Characters of a document shown to the teacher.", min=200)
    label_threshold: float = knob(5.0, help="Score (0-10) at or above which an annotated document counts as "
                                            "educational (heuristic: >= 3 of its 5 rubric points).",
                                  min=0.0, max=10.0)
    classifier: str = knob("forest", help="Quality head on the embeddings: `forest` (phi-1: random forest on the "
                                          "labels, quality = P(educational)) or `linear` (FineWeb-Edu: ridge "
                                          "regression on the 0-10 score, quality = 0.5 + (predicted score - "
                                          "label_threshold) / 10).",
                           choices=("forest", "linear"))
    linear_alpha: float = knob(1.0, help="L2 penalty of the linear head.", min=0.0)
    embedder: str = knob("hashed", help="Features for the classifier: `hashed` (offline token + AST n-grams), "
                                        "`transformer` (a local model at embed_model), `endpoint` (an "
                                        "OpenAI-compatible /embeddings endpoint, model embed_model).",
                         choices=("hashed", "transformer", "endpoint"))
    embed_model: str = knob("", help="Local model path (transformer) or model name (endpoint).")
    embed_features: int = knob(1 << 14, help="Feature dimension of the hashed embedder.", min=64, max=1 << 22)
    rf_trees: int = knob(100, help="Trees in the random forest.", min=1, max=10_000)
    rf_max_depth: int = knob(0, help="Maximum tree depth (0 = unlimited).", min=0)
    rf_max_features: float = knob(0.05, help="Share of the features each split of the random forest considers. "
                                             "Hashed features are sparse: scikit-learn's sqrt(n) (128 of 16,384) "
                                             "mostly offers all-zero columns, and selected less well on the "
                                             "held-out set (tests/curate/test_quality.py).", min=0.0001, max=1.0)
    test_fraction: float = knob(0.25, help="Annotations held out to measure the classifier.", min=0.05, max=0.9)
    min_per_class: int = knob(8, help="Fail with a clear message when an annotation class has fewer examples.",
                              min=2)
    quality_min: float = knob(0.5, help="Keep documents whose predicted probability of being educational is "
                                        "at least this (0 = keep all, still scored; reason low_quality).",
                              min=0.0, max=1.0)
    # ---- decontamination ----------------------------------------------------------------------------------
    decontaminate: bool = knob(True, help="Drop documents that contain HumanEval/MBPP problems (reason "
                                          "contaminated, evidence in contamination/).")
    mbpp_path: str = knob("", help="MBPP jsonl (path or URL, fields task_id/code); empty = $PRIMER_MBPP_PATH, "
                                          "and when that is unset too, MBPP is skipped with a note.")
    ngram_size: int = knob(10, help="Code tokens per n-gram for the benchmark overlap check.", min=3, max=64)
    ngram_threshold: float = knob(0.5, help="Fraction of a benchmark item's n-grams found in a document that "
                                            "marks it contaminated.", min=0.01, max=1.0)
    ast_threshold: float = knob(0.9, help="Normalized-AST similarity (1 - edit distance rate) of a function to "
                                          "a benchmark solution that marks it contaminated.", min=0.1, max=1.0)
    ast_min_nodes: int = knob(30, help="Ignore functions with fewer AST nodes in the structural check.", min=1)
    # ---- output -----------------------------------------------------------------------------------------
    exclusion_text_chars: int = knob(20_000, help="Characters of each dropped document's text kept in the "
                                                  "exclusions table (0 = none).", min=0)
    keep_work: bool = knob(False, help="Keep the per-shard work files (curate-work/<key>) after success.")

    def check(self, path: str = "curate") -> None:
        if self.min_bytes >= self.max_bytes:
            raise ConfigError(f"{path}.min_bytes: must be < max_bytes ({self.max_bytes}), got {self.min_bytes}")
        if self.embedder != "hashed" and not self.embed_model:
            raise ConfigError(f"{path}.embed_model: required with embedder={self.embedder!r} "
                              "(a local model path or an endpoint model name)")
        if not self.sources:
            raise ConfigError(f"{path}.sources: give at least one source, e.g. --set curate.sources=python:stdlib")
