"""The one record every data stage streams: a document, and the reason one was dropped.

Stages (curate, synthesize, pack) read and write documents as Parquet tables with at least the columns
`id`, `text`, `source`; stage-specific columns (quality, topic, audience, ...) go in `meta` in memory and
become their own columns on disk. A dropped document is never silently lost: it becomes a `Drop` with a
short machine-readable `reason`, counted in the stage's stats and kept in an exclusions table.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


# Half of a UTF-16 pair on its own (JSON can carry one: "\ud83d" without its partner). It is no character,
# and no UTF-8 consumer (Parquet, the tokenizer, the teacher ledger, the sandbox) takes it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Document:
    id: str                 # stable within its source: relative path, or row id / row number
    text: str
    source: str             # source name (see SourceSpec.display_name)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Drop:
    id: str
    source: str
    reason: str             # short snake_case, e.g. invalid_utf8, empty, too_long
    detail: str = ""        # human-readable evidence: file, line, error text


class DropCounter:
    """Counts drops by reason and keeps the first few examples of each for reports."""

    def __init__(self, keep_examples: int = 5):
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[Drop]] = {}
        self.keep_examples = keep_examples
        self.all: list[Drop] = []

    def add(self, drop: Drop) -> None:
        self.counts[drop.reason] += 1
        self.all.append(drop)
        bucket = self.examples.setdefault(drop.reason, [])
        if len(bucket) < self.keep_examples:
            bucket.append(drop)

    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))
