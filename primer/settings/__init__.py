"""Config sections: one dataclass per component, each field documented once with `knob(help=...)`.

Each stage owns the module of its own section; `primer.config.PrimerConfig` composes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any


def knob(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING,
         min: float | None = None, max: float | None = None, choices: tuple | None = None) -> Any:
    """A dataclass field with its documentation and bounds attached (checked by `validate`)."""
    meta = {"help": help, "min": min, "max": max, "choices": choices}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)
