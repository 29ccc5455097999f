"""Curation: sources, filters, dedup, quality classifier, decontamination (owned by the curate stage)."""

from __future__ import annotations

from dataclasses import dataclass

from primer.settings import knob  # noqa: F401


@dataclass
class CurateConfig:
    """Placeholder until the stage lands."""
