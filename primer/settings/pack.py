"""Tokenizer and packing: documents -> EOS-joined rows of exactly seq_len tokens."""

from __future__ import annotations

from dataclasses import dataclass

from primer.settings import knob


@dataclass
class SourceSpec:
    uri: str = knob(help="A local folder of source files, a Parquet/JSONL file, a folder of them, or a glob; "
                         "any store URI. `python:stdlib` = this Python's standard library sources.")
    weight: float = knob(1.0, help="Mixture weight: how many times each document is used (2.0 = twice, "
                                   "0.5 = a seeded half).", min=0.0)
    name: str = knob("", help="Source name in stats and manifests; default derived from the URI.")
    format: str = knob("auto", help="Input format.", choices=("auto", "dir", "parquet", "jsonl"))
    text_column: str = knob("text", help="Column/key holding the document text (Parquet/JSONL).")
    glob: str = knob("**/*.py", help="File pattern inside a folder of source files.")
    keep_if: str = knob("", help="Parquet/JSONL: keep only rows whose boolean column of this name is true "
                                 "(e.g. `verified` for synthetic exercises).")
    prompt_column: str = knob("", help="Parquet/JSONL: column holding each document's prompt, a prefix of its "
                                       "text (synthesize's exercises: `prompt`, taken from its manifest). Pack "
                                       "then records which tokens are prompt, for train.<phase>.loss_on=solution.")
    dataset: str = knob("", help="When `uri` is another stage's output: which dataset of its manifest to read "
                                 "(curate: `documents`; synthesize: `textbooks`, `exercises`). Empty = its only "
                                 "dataset.")

    def display_name(self) -> str:
        if self.name:
            return self.name
        tail = self.uri.rstrip("/").rsplit("/", 1)[-1]
        return tail or self.uri


@dataclass
class TokenizerConfig:
    uri: str = knob("", help="Load this tokenizer.json (any store URI) instead of training one.")
    vocab_size: int = knob(8192, help="Vocabulary size of a trained byte-level BPE tokenizer.", min=300,
                           max=1_000_000)
    min_frequency: int = knob(2, help="Minimum pair frequency for a BPE merge.", min=1)
    train_max_bytes: int = knob(32_000_000, help="Train the tokenizer on at most this many bytes of text "
                                                 "(a seeded sample of documents).", min=1_000)
    eos_token: str = knob("<|endoftext|>", help="End-of-document token; joins documents in packed rows.")


@dataclass
class PackConfig:
    sources: list[SourceSpec] = knob(default_factory=lambda: [SourceSpec(uri="python:stdlib")],
                                     help="Document datasets to pack, each with a mixture weight.")
    seq_len: int = knob(256, help="Tokens per training row (every row has exactly this many).", min=8,
                        max=1_048_576)
    val_fraction: float = knob(0.02, help="Fraction of documents held out for validation.", min=0.0, max=0.5)
    seed: int = knob(1234, help="Seed for the document shuffle, the train/validation split and weights < 1.")
    rows_per_shard: int = knob(2048, help="Rows per Parquet shard.", min=1)
    batch_docs: int = knob(1024, help="Documents per tokenizer batch.", min=1)
    shard_bytes: int = knob(4_000_000, help="Source files grouped into one tokenization unit up to this many "
                                            "bytes (a Parquet/JSONL file is one unit); units run in parallel "
                                            "on the stage's task runner. Does not change the output.", min=1)
    word_cache: str = knob("auto", help="Encode ASCII text piece by piece through a cache of each piece's ids "
                                        "(the tokenizer's own ids, about half its CPU; byte-level BPE "
                                        "tokenizers only). auto: on with at most 3 cores per process, where "
                                        "it is faster; its work holds the GIL, so with more cores in one "
                                        "process the tokenizer alone is faster. Does not change the output.",
                           choices=("auto", "on", "off"))
    max_doc_bytes: int = knob(8_000_000, help="Documents larger than this many bytes are dropped before "
                                              "tokenizer training and packing (reason: too_large); 0 = no "
                                              "limit.", min=0)
    max_doc_tokens: int = knob(262_144, help="Documents longer than this many tokens are dropped "
                                             "(reason: too_long); 0 = no limit.", min=0)
