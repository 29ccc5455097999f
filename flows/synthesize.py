"""The synthesize flow: synthetic textbooks and exercises from an OpenAI-compatible teacher.

Returns the output URI (a store folder closed by manifest.json), or "skipped: <reason>" when no teacher is
configured or synth.enabled is false, so that the pipeline goes on with what it has. See docs/synthesize.md.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from primer.config import load_config
from primer.secrets import install_log_redaction
from primer.store import open_store


@flow(name="synthesize")
def synthesize(profile: str = "tiny", overrides: dict[str, Any] | None = None) -> str:
    from tasks.synth import prefect_ops
    from tasks.synth.stage import run_synthesis

    install_log_redaction()
    cfg = load_config(profile, overrides)
    open_store(cfg.store)  # fails early, with a clear message, when the store is unreachable
    return run_synthesis(cfg, prefect_ops()).flow_value


if __name__ == "__main__":
    import sys

    print(synthesize(sys.argv[1] if len(sys.argv) > 1 else "tiny"))
