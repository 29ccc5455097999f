"""The curate flow under a real Prefect server, on real standard-library files with planted cases."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from primer.config import SourceSpec
from primer.documents import DropCounter
from primer.errors import PrimerError
from tasks.sources import read_documents, resolve_source
from tests.curate.conftest import PLANTED

pytestmark = pytest.mark.usefixtures("prefect_harness")


def overrides(corpus: Path, root: Path, mbpp: str, **extra) -> dict:
    return {"store.root": str(root), "curate.sources": [{"uri": str(corpus)}], "curate.max_docs": 0,
            "curate.mbpp_path": mbpp, "curate.quality_min": 0.0, "curate.annotate_n": 80,
            "curate.min_per_class": 3, "curate.shard_bytes": 300_000, "curate.rf_trees": 25,
            "curate.dedup_buckets": 3, **extra}


def read_dir(uri: str, sub: str):
    """Rows of the output's files under `sub`, found through its manifest (as any reader must)."""
    manifest = json.loads(Path(uri, "manifest.json").read_text())
    files = sorted(f["name"] for f in manifest["files"] if f["name"].startswith(sub + "/"))
    return [row for f in files for row in pq.read_table(Path(uri, f)).to_pylist()]


@pytest.fixture(scope="module")
def curated(planted_corpus, mbpp_path, tmp_path_factory):
    from flows.curate import curate

    root = tmp_path_factory.mktemp("curate-store")
    over = overrides(planted_corpus, root, mbpp_path)
    state = curate("tiny", over, return_state=True)
    return {"uri": state.result(), "over": over, "root": root, "flow_run_id": state.state_details.flow_run_id}


def test_planted_cases_excluded_with_reason(curated, planted_corpus):
    excl = {r["id"]: r for r in read_dir(curated["uri"], "exclusions")}
    for rel, reason in PLANTED.items():
        assert rel in excl, f"{rel} not excluded"
        assert excl[rel]["reason"] == reason, (rel, excl[rel]["reason"], excl[rel]["detail"])
    assert excl["zz_planted/exact_copy.py"]["duplicate_of"].endswith("json/decoder.py")
    assert excl["zz_planted/near_copy.py"]["duplicate_of"].endswith("html/parser.py")
    assert excl["zz_planted/humaneval_copy.py"]["duplicate_of"] == "HumanEval/10"
    assert excl["zz_planted/huge.py"]["bytes"] >= 20_000_000 and excl["zz_planted/huge.py"]["text"] is None
    assert excl["zz_planted/generated_pb2.py"]["text"].startswith("# -*- coding")


def test_clean_files_survive_and_everything_is_accounted_for(curated, planted_corpus):
    docs = read_dir(curated["uri"], "data")
    excl = read_dir(curated["uri"], "exclusions")
    kept = {d["id"] for d in docs}
    for rel in ("json/decoder.py", "html/parser.py", "email/message.py", "http/client.py", "urllib/parse.py"):
        assert rel in kept, rel
    inputs = {str(p.relative_to(planted_corpus)) for p in planted_corpus.rglob("*.py")}
    assert kept | {e["id"] for e in excl} == inputs
    assert not kept & {e["id"] for e in excl}
    assert all(d["quality"] is not None and 0.0 <= d["quality"] <= 1.0 for d in docs)
    manifest = json.loads(Path(curated["uri"], "manifest.json").read_text())
    assert manifest["documents"] == len(docs)
    # the funnel: input -> each filter -> dedup -> quality -> decontamination, monotone
    funnel = manifest["funnel"]
    assert funnel[0]["docs"] == len(inputs) and funnel[-1]["docs"] == len(docs)
    assert [r["step"] for r in funnel][-3:] == ["after dedup", "after quality", "after decontamination"]
    assert all(a["docs"] >= b["docs"] for a, b in zip(funnel, funnel[1:]))
    assert sum(manifest["drops"].values()) == len(excl)


def test_contamination_evidence(curated):
    ev = read_dir(curated["uri"], "contamination")
    he = [e for e in ev if e["id"] == "zz_planted/humaneval_copy.py"]
    mb = [e for e in ev if e["id"] == "zz_planted/mbpp_copy.py"]
    assert any(e["benchmark"] == "humaneval" and e["task_id"] == "HumanEval/10" and e["score"] >= 0.9
               and "make_palindrome" in e["snippet"] for e in he)
    assert {e["task_id"] for e in mb if e["benchmark"] == "mbpp"} >= {"17", "23"}
    assert {e["id"] for e in ev} == {"zz_planted/humaneval_copy.py", "zz_planted/mbpp_copy.py"}


def test_output_reads_as_a_parquet_source(curated):
    manifest = json.loads(Path(curated["uri"], "manifest.json").read_text())
    dataset = manifest["datasets"]["documents"]
    assert dataset["format"] == "parquet" and dataset["text_column"] == "text"
    assert dataset["files"] and all(f.startswith("data/part-") and f.endswith(".parquet") for f in dataset["files"])
    listed = {f["name"] for f in manifest["files"]}
    assert set(dataset["files"]) <= listed
    src = resolve_source(SourceSpec(uri=curated["uri"], format="parquet"))
    assert src.files and all("/data/part-" in f for f in src.files)
    docs = list(read_documents(src, DropCounter()))
    assert len(docs) == manifest["documents"]


def test_two_fresh_runs_give_the_same_content_hash(curated, tmp_path):
    """Same input, a fresh store elsewhere: the same key and the same content hash, file for file."""
    from flows.curate import curate

    uri = curate("tiny", {**curated["over"], "store.root": str(tmp_path)})
    first = json.loads(Path(curated["uri"], "manifest.json").read_text())
    second = json.loads(Path(uri, "manifest.json").read_text())
    assert second["key"] == first["key"]
    differing = {f["name"] for f in first["files"]} ^ {f["name"] for f in second["files"]} | {
        a["name"] for a, b in zip(first["files"], second["files"]) if a != b}
    assert not differing, f"files that differ between two fresh runs: {sorted(differing)}"
    assert second["content_hash"] == first["content_hash"]
    assert not second["run"]["classifier_reused"]  # a fresh store trained its own classifier, bit for bit


def test_artifacts_published(curated):
    from tests.conftest import flow_artifacts

    keys = ["curate-funnel", "curate-classifier-metrics", "curate-classifier-confusion", "curate-drops",
            "curate-label-balance"]
    found = flow_artifacts(curated["flow_run_id"], keys)
    assert set(keys) <= set(found)
    metrics = found["curate-classifier-metrics"].data
    rows = json.loads(metrics) if isinstance(metrics, str) else metrics
    assert {r["class"] for r in rows} >= {"low", "educational"}
    assert "precision" in rows[0] and "recall" in rows[0] and "f1" in rows[0]


def test_rerun_reuses_output_and_classifier(curated):
    from flows.curate import curate

    assert curate("tiny", curated["over"]) == curated["uri"]
    stats = json.loads(Path(curated["uri"], "stats.json").read_text())
    model_uri = Path(curated["root"], stats["classifier"]["ref"])  # a store-relative ref
    assert Path(model_uri, "classifier.pkl").is_file() and Path(model_uri, "manifest.json").is_file()
    # a new key (a changed filter knob) with the same annotations reuses the saved classifier
    uri2 = curate("tiny", {**curated["over"], "curate.max_mean_line_length": 99.0})
    assert uri2 != curated["uri"]
    manifest2 = json.loads(Path(uri2, "manifest.json").read_text())
    assert manifest2["run"]["classifier_reused"]
    assert manifest2["classifier"]["model_key"] == stats["classifier"]["model_key"]


def test_resume_skips_finished_shards(planted_corpus, mbpp_path, tmp_path):
    from flows.curate import curate

    over = overrides(planted_corpus, tmp_path, mbpp_path, **{"curate.keep_work": True, "curate.annotate_n": 0,
                                                             "curate.decontaminate": False})
    uri = curate("tiny", over)
    first = json.loads(Path(uri, "manifest.json").read_text())
    key = Path(uri).name
    # simulate a crash in the last step: no manifest, one shard's final marker and data gone
    Path(uri, "manifest.json").unlink()
    Path(tmp_path, "curate-work", key, "final", "00000.json").unlink()
    Path(uri, "data", "part-00000.parquet").unlink()
    assert curate("tiny", over) == uri
    second = json.loads(Path(uri, "manifest.json").read_text())
    shards = len(first["datasets"]["documents"]["files"])
    assert second["run"]["resumed"]["filter"] == shards
    assert second["run"]["resumed"]["finalize"] == shards - 1
    assert second["funnel"] == first["funnel"]
    assert second["content_hash"] == first["content_hash"]
    assert Path(uri, "data", "part-00000.parquet").is_file()


def test_too_few_annotations_fails_clearly(planted_corpus, mbpp_path, tmp_path):
    from flows.curate import curate

    # 20 annotations cannot hold 15 of each class
    with pytest.raises(PrimerError, match=r"too few annotations of class '(low|educational)'.*min_per_class=15"):
        curate("tiny", overrides(planted_corpus, tmp_path, mbpp_path, **{"curate.annotate_n": 20,
                                                                          "curate.min_per_class": 15}))


def test_process_runner_gives_the_same_bytes(curated, tmp_path):
    """Mapped units in other processes (as on Dask workers): arguments pickle, nothing process-local leaks
    into the output, and the content hash equals the threads runner's."""
    from flows.curate import curate
    from primer.prefect_setup import make_task_runner

    uri = curate.with_options(task_runner=make_task_runner("processes:2"))(
        "tiny", {**curated["over"], "store.root": str(tmp_path)})
    first = json.loads(Path(curated["uri"], "manifest.json").read_text())
    second = json.loads(Path(uri, "manifest.json").read_text())
    assert second["content_hash"] == first["content_hash"]


def test_errors_name_curate_sources(tmp_path):
    from flows.curate import curate

    with pytest.raises(PrimerError, match=r"curate\.sources\[0\]") as err:
        curate("tiny", {"store.root": str(tmp_path / "store"), "curate.sources": [{"uri": str(tmp_path / "nope")}]})
    assert "pack.sources" not in str(err.value)


def test_keeping_no_document_fails_with_the_drop_counts(tmp_path):
    """All binary, undecodable or huge: the run fails naming the drops instead of publishing nothing."""
    from flows.curate import curate

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"blob{i}.py").write_bytes(bytes(range(256)) * 40)
    (corpus / "latin1.py").write_bytes("# caf\u00e9\nname = 'Jos\u00e9'\n".encode("latin-1") * 10)
    with open(corpus / "huge.py", "w") as f:
        f.write("x = 1\n" * 400_000)   # 2.4 MB > max_bytes
    root = tmp_path / "store"
    over = {"store.root": str(root), "curate.sources": [{"uri": str(corpus)}], "curate.max_bytes": 1_000_000,
            "curate.decontaminate": False}
    with pytest.raises(PrimerError, match=r"kept 0 of 5 documents \(dropped: .*binary 3.*too_large 1") as err:
        curate("tiny", over)
    assert "invalid_utf8 1" in str(err.value)
    assert not list(root.glob("curate/*/manifest.json"))  # nothing published as complete
