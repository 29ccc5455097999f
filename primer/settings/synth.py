"""The teacher endpoint and synthetic generation (owned by the synthesize stage)."""

from __future__ import annotations

from dataclasses import dataclass

from primer.settings import knob  # noqa: F401


@dataclass
class TeacherConfig:
    """Placeholder until the stage lands."""


@dataclass
class SynthConfig:
    """Placeholder until the stage lands."""
