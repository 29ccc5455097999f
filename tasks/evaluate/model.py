"""The model an evaluation scores (a release, a checkpoint, or an endpoint) and its identity for the key."""

from __future__ import annotations

import re
import uuid
from typing import Any

from primer.errors import InputError
from primer.export import release_backend
from primer.scoring import checkpoints as C
from primer.scoring.backends import OpenAIBackend
from primer.settings.evaluate import EvaluateConfig
from primer.store import ArtifactStore

CHECKPOINT = re.compile(r"/step-\d{6,}/?(manifest\.json)?$")
# Where the model was read from: not part of what it is (a copied store must reuse the evaluation).
LOCATION_FIELDS = ("release", "directory", "checkpoint")


def is_checkpoint(uri: str) -> bool:
    return bool(CHECKPOINT.search("/" + uri.rstrip("/")))


def make_backend(store: ArtifactStore, ev: EvaluateConfig, release: str):
    if ev.backend == "openai":
        return OpenAIBackend.from_config(ev.endpoint, seed=ev.seed if ev.temperature > 0 else None)
    if not release:
        raise InputError("evaluate: nothing to score; pass a release (directory or release/<key> URI), a "
                         "checkpoint URI, or set evaluate.backend=openai with evaluate.endpoint")
    if is_checkpoint(release):
        if ev.backend != "primer":
            raise InputError(f"{release}: a training checkpoint is scored with evaluate.backend=primer; export "
                             "it first (`primer export`) to score it with transformers")
        return C.checkpoint_backend(store, release, device=ev.device, dtype=ev.dtype, batch_size=ev.batch_size,
                                    seed=ev.seed)
    return release_backend(release, store, backend=ev.backend, device=ev.device, dtype=ev.dtype,
                           batch_size=ev.batch_size, seed=ev.seed)


def model_identity(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """What goes into the key: the weights' hash, never the location; a model nothing pins (an endpoint, a
    model without a weights hash) gets a fresh id, so its evaluation is never reused."""
    if fingerprint.get("backend") == "openai" or not (fingerprint.get("weights_sha256")
                                                      or fingerprint.get("release_content_hash")):
        return {**fingerprint, "run_id": uuid.uuid4().hex}
    return {k: v for k, v in fingerprint.items() if k not in LOCATION_FIELDS}
