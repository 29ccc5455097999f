"""The teacher annotator over real HTTP against the loopback OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from primer.settings.curate import CurateConfig
from tasks.curate.text import sha256_text
from tasks.curate.teacher_annotator import TeacherAnnotator
from tests.curate.conftest import STDLIB
from tests.support.openai_server import FaultPlan, prompt_text

FILES = ("textwrap.py", "heapq.py", "bisect.py", "json/decoder.py", "html/parser.py", "colorsys.py",
         "keyword.py", "this.py", "fnmatch.py", "glob.py", "shlex.py", "sched.py")


def responder(req: dict) -> str:
    """Deterministic teacher: well-formed scores for most documents, junk for glob.py and heapq.py."""
    text = prompt_text(req)
    if '"""Filename globbing utility' in text:
        return "This code is a fine example of pattern matching."          # no score: unusable
    if "Heap queue algorithm" in text:
        return "**Score:** 12/10"                                           # out of range: unusable
    return f"Score: {8 if text.count('def ') >= 5 else 2}\nReason: structure."


def test_teacher_annotator_faults_and_cache(openai_server, teacher_config, local_store):
    openai_server.responder = responder
    openai_server.faults = FaultPlan(rate_limit=0.25, server_error=0.25, malformed=0.15, retry_after=0.02,
                                     max_per_key=2, seed=7)
    texts = [(STDLIB / f).read_text() for f in FILES]
    keys = [sha256_text(t) for t in texts]
    cfg = CurateConfig(annotator="teacher")
    first = TeacherAnnotator(cfg, teacher_config, local_store).annotate(texts, keys)
    snap = openai_server.stats.snapshot()
    assert len(first) == len(texts)
    assert snap["by_status"].get(429, 0) > 0 and snap["by_status"].get(500, 0) > 0   # faults were served
    unusable = [a for a in first if a.score is None]
    assert len(unusable) == 2 and all(a.error == "unparseable answer" for a in unusable)
    assert {a.score for a in first if a.score is not None} <= {2.0, 8.0}
    # a second run (new annotator, same store) pays for nothing
    total = openai_server.stats.total
    again = TeacherAnnotator(cfg, teacher_config, local_store)
    second = again.annotate(texts, keys)
    assert openai_server.stats.total == total
    assert [a.score for a in second] == [a.score for a in first]
    assert again.usage["cached"] == len(texts) and again.usage["sent"] == 0
    assert again.usage["unusable_answers"] == 2


@pytest.mark.usefixtures("prefect_harness")
def test_flow_with_teacher_never_pays_twice(planted_corpus, mbpp_path, openai_server, teacher_config, tmp_path):
    from flows.curate import curate
    from tests.curate.test_flow import overrides

    openai_server.responder = responder
    openai_server.faults = FaultPlan(rate_limit=0.2, server_error=0.2, malformed=0.1, retry_after=0.02, seed=3)
    teacher = {f"teacher.{k}": getattr(teacher_config, k) for k in
               ("base_url", "model", "api_key_env", "timeout_s", "max_retries", "backoff_base_s", "backoff_max_s")}
    over = overrides(planted_corpus, tmp_path, mbpp_path, **{"curate.annotator": "teacher", "curate.annotate_n": 40},
                     **teacher)
    uri = curate("tiny", over)
    manifest = json.loads(Path(uri, "manifest.json").read_text())
    assert manifest["annotations"]["annotator"] == "teacher" and manifest["annotations"]["n"] == 40
    usage = manifest["run"]["annotation_usage"]  # run facts live in the manifest, not in hashed files
    assert usage["rate_limited"] + usage["server_errors"] > 0
    successful = openai_server.stats.successful
    assert successful >= 40
    # another output key (a changed filter knob) annotates the same documents: all answers from the ledger
    uri2 = curate("tiny", {**over, "curate.max_mean_line_length": 99.0})
    assert uri2 != uri
    assert openai_server.stats.successful == successful
    assert json.loads(Path(uri2, "manifest.json").read_text())["run"]["annotation_usage"]["sent"] == 0


def test_rubric_prompt_scores_on_the_ten_point_scale(openai_server, teacher_config, local_store):
    """The FineWeb-Edu style additive rubric: the teacher sees the 5-point criteria, its 0-5 total is doubled."""
    seen = []

    def rubric_teacher(req: dict) -> str:
        text = prompt_text(req)
        seen.append(text)
        return ("It defines documented functions with examples.\nEducational score: 4" if "def " in text
                else "Configuration only.\nEducational score: 1")

    openai_server.responder = rubric_teacher
    texts = [(STDLIB / "bisect.py").read_text(), "SETTINGS = {'debug': True}\nNAME = 'x'\n"]
    cfg = CurateConfig(annotator="teacher", annotate_prompt="rubric")
    answers = TeacherAnnotator(cfg, teacher_config, local_store).annotate(texts, [sha256_text(t) for t in texts])
    assert [a.score for a in answers] == [8.0, 2.0]
    assert all("additive 5-point scoring system" in t and "Educational score: N" in t for t in seen)
