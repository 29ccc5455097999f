"""The `teacher` annotator: phi-1's question or the additive rubric (`curate.annotate_prompt`) to an
OpenAI-compatible endpoint.

Built on the shared client (`primer.teacher.Teacher`: async, retries with backoff on 429/5xx/timeouts,
honours Retry-After) and its `Ledger` on the store (`ledgers/curate-annotate/`). The ledger key hashes
(model, messages, params), and the messages hold the prompt and the document, so an answer is cached by
(content, prompt, model): a re-run never sends a request that was answered before, whatever its score
parsed to. Answers without a usable score (malformed, refusal, out of range) are counted, not fatal.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from primer.errors import PrimerError
from tasks.curate.annotation import SYSTEM_PROMPT, Annotation, build_prompt, parse_score, prompt_version

LEDGER = "curate-annotate"
ANNOTATE_PARAMS = {"temperature": 0.0, "max_tokens": 64}
RUBRIC_MAX_TOKENS = 160  # the rubric answer justifies its points before the score line


class TeacherAnnotator:
    name = "teacher"

    def __init__(self, cfg, teacher_cfg, store, progress=None):
        from primer.teacher import Ledger, open_teacher

        if teacher_cfg is None:
            raise PrimerError("curate.annotator=teacher needs the `teacher` settings")
        if cfg.annotate_model:
            teacher_cfg = dataclasses.replace(teacher_cfg, model=cfg.annotate_model)
        reason = teacher_cfg.skip_reason() if hasattr(teacher_cfg, "skip_reason") else None
        if reason:
            raise PrimerError(f"curate.annotator=teacher: {reason}; or use --set curate.annotator=heuristic")
        self.cfg, self.teacher_cfg = cfg, teacher_cfg
        ledger = Ledger(store, LEDGER, commit_every=teacher_cfg.ledger_commit_every,
                        commit_interval_s=teacher_cfg.ledger_commit_interval_s) if store is not None else None
        self.teacher = open_teacher(teacher_cfg, ledger)   # online, or the Batch API (teacher.mode=batch)
        self.usage: dict[str, Any] | None = None
        self.progress = progress   # gets a primer.teacher.TeacherProgress after each answer
        self.teacher.phase = "annotate"

    def annotate(self, texts: list[str], keys: list[str]) -> list[Annotation]:
        kind = self.cfg.annotate_prompt
        params = dict(ANNOTATE_PARAMS, max_tokens=RUBRIC_MAX_TOKENS) if kind == "rubric" else dict(ANNOTATE_PARAMS)
        requests = []
        for text, content_hash in zip(texts, keys):
            messages = [{"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": build_prompt(text, self.cfg.annotate_max_chars, kind)}]
            requests.append(self.teacher.request(messages, params=dict(params),
                                                 meta={"sha256": content_hash, "prompt": prompt_version(kind)}))
        answers = self.teacher.run_sync(requests, self.progress)
        out = []
        unusable = 0
        for a in answers:
            if not a.ok:
                out.append(Annotation(None, error=f"request failed: {a.error}", extra={"cached": a.cached}))
                unusable += 1
                continue
            score = parse_score(a.text, kind)
            if score is None:
                unusable += 1
                out.append(Annotation(None, rationale=(a.text or "")[:200], error="unparseable answer",
                                      extra={"cached": a.cached}))
            else:
                out.append(Annotation(score, rationale=(a.text or "")[:200], extra={"cached": a.cached}))
        usage = dataclasses.asdict(self.teacher.last_run)
        usage["unusable_answers"] = unusable
        usage["model"] = self.teacher_cfg.model
        self.usage = usage
        try:
            self.teacher.publish_usage("curate-teacher-usage", self.teacher.last_run)
        except Exception:  # the dashboard is never worth failing a run
            pass
        return out
