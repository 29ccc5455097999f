"""Planted contamination: a teacher's answers carrying near-copies of a few HumanEval tasks are excluded from the
synthetic data with evidence; and when such documents do reach training, the contamination report walks the
release back to them and the pruned score leaves exactly those tasks out."""

from __future__ import annotations

import ast
import builtins

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from primer.config import load_config
from primer.scoring import humaneval as he
from tests.synth import scripted

from .helpers import write_run
from .test_harness import TableBackend

PLANTED = ("HumanEval/0", "HumanEval/1", "HumanEval/5")   # among the first 10, each with a real function body


class _Rename(ast.NodeTransformer):
    """Every identifier renamed (v0, v1, ...) and the layout reformatted: what a teacher paraphrasing a
    remembered solution produces, and what n-grams alone miss."""

    def __init__(self):
        self.names: dict[str, str] = {}

    def _new(self, name: str) -> str:
        if name in dir(builtins) or name in ("List", "Tuple", "Optional", "typing"):
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node):
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self._new(node.arg)
        return node

    def visit_FunctionDef(self, node):
        node.name = self._new(node.name)
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(getattr(node.body[0], "value", None),
                                                                             ast.Constant):
            node.body = node.body[1:] or [ast.Pass()]   # the docstring goes too
        self.generic_visit(node)
        return node


def near_copy(task_id: str) -> str:
    p = he.load_problems()[task_id]
    return ast.unparse(_Rename().visit(ast.parse(p.prompt + p.canonical_solution)))


def teacher_rows() -> dict[str, list[dict]]:
    """Textbooks and exercises as the (scripted) teacher answers them, three with a planted near-copy."""
    books = []
    for i in range(6):
        text = scripted.textbook(f'Write a textbook about "topic {i}" for students')
        if i < 2:
            text += f"\n\nA classic exercise:\n\n```python\n{near_copy(PLANTED[i])}\n```\n\nNotice how it works.\n"
        books.append({"id": f"tb-{i}", "topic": f"topic {i}", "text": text})
    exercises = [{"id": f"ex-{i}", "topic": "sums", "text": scripted.exercise(f"sum_even_{i}")} for i in range(4)]
    exercises.append({"id": "ex-planted", "topic": "lists", "text": near_copy(PLANTED[2])})
    return {"textbooks": books, "exercises": exercises}


def test_planted_near_copies_are_excluded_with_evidence(tmp_path):
    from tasks.synth.decontaminate import decontaminate_outputs

    cfg = load_config("tiny", {"store.root": str(tmp_path / "store"), "curate.mbpp_path": ""})
    from primer.store import open_store

    out = open_store(cfg.store).output("synthesize", "planted")
    rows = teacher_rows()
    kept, counts = decontaminate_outputs(cfg, out, rows)
    assert [r["id"] for r in kept["textbooks"]] == ["tb-2", "tb-3", "tb-4", "tb-5"]
    assert [r["id"] for r in kept["exercises"]] == ["ex-0", "ex-1", "ex-2", "ex-3"]
    assert counts["checked"] == {"textbooks": 6, "exercises": 5} and counts["excluded"] == {"textbooks": 2,
                                                                                            "exercises": 1}
    evidence = pq.read_table(out.store.to_path(out.file_uri("exclusions.parquet"))).to_pylist()
    by_doc = {(e["dataset"], e["id"]): e for e in evidence}
    assert {(d, i) for d, i in by_doc} == {("textbooks", "tb-0"), ("textbooks", "tb-1"), ("exercises", "ex-planted")}
    assert {e["task_id"] for e in evidence} >= set(PLANTED)
    for e in evidence:
        if e["task_id"] in PLANTED:
            assert e["method"] in ("ngram", "ast", "embedding") and 0 < e["score"] <= 1 and e["matched_span"]
    assert any(e["method"] == "ast" for e in evidence)  # renamed identifiers: the syntax-tree check finds them
    assert counts["tasks"] and set(counts["hits_by_method"]) <= {"ngram", "ast", "embedding"}


def test_off_switch_checks_nothing(tmp_path):
    from primer.store import open_store
    from tasks.synth.decontaminate import decontaminate_outputs

    cfg = load_config("tiny", {"store.root": str(tmp_path / "store"), "evaluate.contamination.synth": False})
    rows = teacher_rows()
    kept, counts = decontaminate_outputs(cfg, open_store(cfg.store).output("synthesize", "x"), rows)
    assert kept == rows and counts == {"enabled": False}


def _synth_output(store, rows):
    """A synthesize output in the hand-off contract's shape (datasets with files and a text column)."""
    out = store.output("synthesize", "planted-not-excluded")
    if out.is_complete():
        return out.read_manifest()
    for name, part in rows.items():
        with out.open_local(f"{name}.parquet") as local:
            pq.write_table(pa.Table.from_pylist(part), str(local))
    return out.commit({"kind": "synthesis", "datasets": {
        name: {"files": [f"{name}.parquet"], "format": "parquet", "text_column": "text"} for name in rows}})


@pytest.fixture(scope="module")
def contaminated_release(tiny_tokenizer, tmp_path_factory):
    """A release whose training run was packed from teacher answers that kept the planted near-copies."""
    from primer.config import StoreConfig
    from primer.export import export_checkpoint
    from primer.store import open_store

    tok, _ = tiny_tokenizer
    store = open_store(StoreConfig(root=str(tmp_path_factory.mktemp("contaminated") / "store")))
    synth = _synth_output(store, teacher_rows())
    inputs = [{"name": "textbooks", "uri": store.ref(synth["uri"]), "dataset": "textbooks", "fingerprint": "t"},
              {"name": "exercises", "uri": store.ref(synth["uri"]), "dataset": "exercises", "fingerprint": "e"}]
    run = write_run(store, tok, steps=(10,), val_losses=(3.0,), inputs=inputs)
    release = export_checkpoint(store, run["checkpoints"][0]["uri"], name="contaminated")
    return store, release


def test_report_walks_the_release_to_the_planted_documents_and_prunes_their_tasks(contaminated_release, no_mbpp):
    from primer.scoring.harness import load_problems
    from primer.settings.evaluate import EvaluateConfig
    from tasks.evaluate import evaluate_model, read_summary

    store, release = contaminated_release
    problems = load_problems("humaneval", "test", "humaneval", limit=10)
    solved = {p.prompt: p.reference for p in problems if p.task_id in PLANTED + ("HumanEval/2",)}
    backend = TableBackend(lambda p, n: [solved.get(p, "    return None\n")])
    backend.fingerprint = lambda: {"backend": "table", "weights_sha256": release["weights_sha256"]}
    ev = EvaluateConfig(benchmarks=["humaneval"], limit=10, workers=2)
    manifest = evaluate_model(store, ev, release=release["uri"], backend=backend)
    summary = read_summary(store, manifest["uri"])
    run = summary["runs"][0]
    assert run["pass@1"] == pytest.approx(4 / 10)
    assert run["pruned"]["removed"] == sorted(PLANTED)
    assert run["pruned"]["n_tasks"] == 7 and run["pruned"]["pass@1"] == pytest.approx(1 / 7)
    assert manifest["headline"]["humaneval/humaneval"] == {"pass@1": pytest.approx(0.4),
                                                            "pruned": {"pass@1": pytest.approx(1 / 7)}}
    report = store.read_json(store.read_output(manifest["uri"]).file_uri("contamination.json"))
    assert report["documents"] == 11 and {i["dataset"] for i in report["training_inputs"]} == {"textbooks",
                                                                                                 "exercises"}
    assert sorted(report["close_tasks"]["humaneval"]) == sorted(PLANTED)
    want = {"HumanEval/0": "textbooks/textbooks.parquet#0", "HumanEval/1": "textbooks/textbooks.parquet#1",
            "HumanEval/5": "exercises/exercises.parquet#4"}
    for tid, doc in want.items():
        entry = report["tasks"]["humaneval"][tid]
        assert entry["close_by"], entry
        best = max((entry[m][0] for m in entry["close_by"]), key=lambda d: d["score"])
        assert best["document"].endswith(doc), (tid, best)
    clean = report["tasks"]["humaneval"]["HumanEval/3"]
    assert not clean["close_by"] and set(clean) == {"ngram", "ast", "embedding", "close_by"}
    assert summary["contamination"]["reported"] and summary["contamination"]["documents"] == 11


def test_synthesize_stage_excludes_what_its_teacher_copied(prefect_harness, scripted_server, tmp_path):
    """Through the real synthesize stage and a loopback teacher: the answers that carry a planted near-copy
    are excluded, listed with evidence in exclusions.parquet and counted in the manifest."""
    import hashlib

    from flows.synthesize import synthesize
    from tests.support.fixtures import TEST_KEY_ENV

    planted: list[str] = []

    def responder(req):
        text = scripted.responder(req)
        prompt = str(req)
        if "textbook about" in prompt and int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 3 == 0:
            task = PLANTED[len(planted) % 2]
            planted.append(task)
            text += f"\n\nA classic exercise:\n\n```python\n{near_copy(task)}\n```\n\nNotice how it works.\n"
        return text

    scripted_server.responder = responder
    overrides = {"store.root": str(tmp_path / "store"), "teacher.base_url": scripted_server.url,
                 "teacher.model": "loopback-model", "teacher.api_key_env": TEST_KEY_ENV,
                 "synth.textbooks": 9, "synth.exercises": 2, "synth.verify_timeout_s": 2.0,
                 "synth.dedup_threshold": 1.0, "synth.min_chars": 300}
    uri = synthesize(profile="tiny", overrides=overrides)
    from primer.store import open_store

    store = open_store(load_config("tiny", overrides).store)
    out = store.read_output(uri, "synthesize")
    d = out.manifest["decontamination"]
    assert planted and d["enabled"] and d["excluded"]["textbooks"] == len(planted) and d["excluded"]["exercises"] == 0
    evidence = pq.read_table(store.to_path(out.file_uri("exclusions.parquet"))).to_pylist()
    assert {e["task_id"] for e in evidence} == set(planted) and all(e["method"] == "ast" for e in evidence)
    kept = pq.read_table(store.to_path(out.file_uri("textbooks.parquet"))).to_pylist()
    assert len(kept) == d["checked"]["textbooks"] - len(planted) and not any("def v0(" in r["text"] for r in kept)
