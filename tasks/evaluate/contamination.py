"""Contamination report and pruned scores (phi-1 section 5): how close each benchmark task is to the documents
a release was trained on, and pass@k with the close tasks left out, beside the full score.

The release's lineage is walked through manifests only: release -> checkpoint -> training run (and, for a
finetune, the run its initial weights came from) -> token shards (pack) -> pack's inputs -> each input's
documents (a stage output's `datasets`, e.g. curate's "documents", synthesize's "textbooks"/"exercises";
or a raw source folder/file read like pack reads it). Per benchmark task and method (n-gram share, AST match
rate, embedding cosine), the `nearest` documents are listed; a task is *close* when any method reaches its
threshold in `evaluate.contamination`, and close tasks are left out of the pruned score.
"""

from __future__ import annotations

import heapq
from dataclasses import replace
from typing import Any, Callable, Iterator

import numpy as np

from primer.errors import StoreError
from primer.scoring import checkpoints as C
from primer.scoring.harness import Generated, SampleRecord, summarize
from primer.store import ArtifactStore
from tasks.evaluate.model import is_checkpoint

SNIPPET = 240
REPORT_AST_FLOOR = 0.7   # structural matches listed in the report from this rate (close only at ast_threshold)
# evalplus renames tasks (Mbpp/2); the base benchmark's ids are what documents are compared with
_BASE = {"humaneval+": "humaneval", "mbpp+": "mbpp"}


def base_task_id(benchmark: str, task_id: str) -> tuple[str, str]:
    if benchmark == "mbpp+":
        return "mbpp", task_id.split("/")[-1]
    return _BASE.get(benchmark, benchmark), task_id


# ------------------------------------------------------------------------------------------ lineage walk

def _checkpoint_of(store: ArtifactStore, release: str) -> str:
    if is_checkpoint(release):
        return release
    out = store.read_output(release)
    if out.manifest.get("kind") != "release" or not out.manifest.get("checkpoint"):
        raise StoreError(f"{release}: not a release with a recorded checkpoint")
    return store.resolve(out.manifest["checkpoint"])


def training_inputs(store: ArtifactStore, release: str) -> list[dict[str, Any]]:
    """Every pack input the release's weights were trained on: [{"uri", "dataset", "name", "run"}]."""
    found, seen_runs = [], set()
    ckpt = _checkpoint_of(store, release)
    while ckpt:
        run = C.run_info(store, C.run_uri_of_checkpoint(C.output_dir(store.resolve(ckpt))))
        if run["uri"] in seen_runs:
            break
        seen_runs.add(run["uri"])
        shards = store.read_output(C.shards_of(run))
        for inp in shards.manifest.get("inputs", []):
            found.append({"uri": store.resolve(inp["uri"]), "dataset": inp.get("dataset", ""),
                          "name": inp.get("name", ""), "run": store.ref(run["uri"])})
        # a finetune starts from another run's checkpoint: its documents shaped the weights too
        init = C.output_dir(store.resolve((run.get("inputs") or {}).get("init_weights") or ""))
        init = init.removesuffix("/model.safetensors")
        ckpt = init if init and is_checkpoint(init) else ""
    return found


def documents(store: ArtifactStore, inputs: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(document id, text) of every training input; ids say where each came from (input ref/dataset/row)."""
    import pyarrow.parquet as pq

    from primer.config import SourceSpec
    from primer.documents import DropCounter
    from tasks.sources import read_documents, resolve_source

    for inp in inputs:
        uri = inp["uri"]
        try:
            out = store.read_output(uri)
        except StoreError:
            out = None
        if out is not None and out.manifest.get("datasets"):
            sets = out.manifest["datasets"]
            names = [inp["dataset"]] if inp.get("dataset") else sorted(sets)
            for name in names:
                spec = sets[name]
                if not spec.get("text_column") and name != inp.get("dataset"):
                    continue  # a side table (e.g. synthesize's "dropped"), not documents
                files = spec.get("files") or ([spec["file"]] if spec.get("file") else [])
                for f in files:
                    with store.fs.open(store.to_path(out.file_uri(f)), "rb") as fh:
                        table = pq.read_table(fh, columns=[spec.get("text_column", "text")])
                    for i, text in enumerate(table.column(0).to_pylist()):
                        yield f"{store.ref(out.uri)}/{name}/{f}#{i}", text or ""
            continue
        src = resolve_source(SourceSpec(uri=uri), store.cfg)
        for doc in read_documents(src, DropCounter(), store.cfg):
            yield f"{store.ref(uri)}:{doc.id}", doc.text


# ------------------------------------------------------------------------------------------ similarity

class NgramShares:
    """For any text, how many of each item's distinct code-token n-grams it contains (curate's tokens and
    hashes, so the share is the one the decontamination threshold applies to)."""

    def __init__(self, codes: list[str], n: int):
        from primer.minhash import TOKEN_RE, ngram_hashes, token_hashes

        self.n, self._re, self._ngrams, self._hashes = n, TOKEN_RE, ngram_hashes, token_hashes
        grams = [np.unique(ngram_hashes(token_hashes(TOKEN_RE.findall(c)), n)) for c in codes]
        self.sizes = np.array([len(g) for g in grams], dtype=np.int64)
        h = np.concatenate(grams) if grams else np.zeros(0, np.uint64)
        o = np.repeat(np.arange(len(grams), dtype=np.int64), self.sizes)
        order = np.argsort(h, kind="stable")
        self.hash, self.owner = h[order], o[order]

    def counts(self, text: str) -> np.ndarray:
        q = np.unique(self._ngrams(self._hashes(self._re.findall(text)), self.n))
        lo = np.searchsorted(self.hash, q, "left")
        hi = np.searchsorted(self.hash, q, "right")
        sel = hi > lo
        idx = np.concatenate([np.arange(a, b) for a, b in zip(lo[sel], hi[sel])]) if sel.any() else \
            np.zeros(0, np.int64)
        return np.bincount(self.owner[idx], minlength=len(self.sizes))


class _TopK:
    """The k highest-scoring documents per task."""

    def __init__(self, k: int):
        self.k, self.heaps = k, {}

    def add(self, task: tuple[str, str], score: float, doc_id: str, snippet: str) -> None:
        h = self.heaps.setdefault(task, [])
        item = (round(float(score), 4), doc_id, snippet[:SNIPPET])
        if len(h) < self.k:
            heapq.heappush(h, item)
        elif item[0] > h[0][0]:
            heapq.heapreplace(h, item)

    def best(self, task: tuple[str, str]) -> list[dict[str, Any]]:
        return [{"score": s, "document": d, "snippet": sn} for s, d, sn in sorted(self.heaps.get(task, []),
                                                                                  reverse=True)]


def nearest_documents(docs: Iterator[tuple[str, str]], cc, mbpp_path: str = "", matcher=None,
                      batch: int = 256) -> tuple[dict[str, _TopK], int]:
    """Per method, the nearest documents of every benchmark task; and the number of documents read."""
    from tasks.curate.decontam import Decontaminator
    from tasks.synth.decontaminate import CODE_BLOCK
    from tasks.synth.decontaminate import BenchmarkMatcher

    # the report lists near structural matches too, not only those at the exclusion threshold
    matcher = matcher or BenchmarkMatcher(replace(cc, ast_threshold=min(REPORT_AST_FLOOR, cc.ast_threshold)), mbpp_path)
    chk: Decontaminator = matcher.checker
    tops = {m: _TopK(cc.nearest) for m in ("ngram", "ast", "embedding")}
    items = [(it.benchmark, it.task_id) for it in chk.items]
    shares = NgramShares([it.code for it in chk.items], chk.ngram_size)
    n_docs = 0
    pending: list[tuple[str, str]] = []

    def flush() -> None:
        sims = matcher.similarity([t for _, t in pending])        # (documents, tasks)
        k = min(cc.nearest, len(pending))
        best = np.argpartition(-sims, k - 1, axis=0)[:k]           # each task's k nearest of this batch
        for t, (b, tid, _) in enumerate(matcher.tasks):
            for j in best[:, t].tolist():
                tops["embedding"].add((b, tid), sims[j, t], pending[j][0], pending[j][1])
        pending.clear()

    for did, text in docs:
        n_docs += 1
        # n-gram share of every item (the quantity the decontamination threshold applies to), for all items
        counts = shares.counts(text)
        frac = counts / np.maximum(shares.sizes, 1)
        for i in np.nonzero(counts >= 2)[0].tolist():
            tops["ngram"].add(items[i], frac[i], did, text)
        for chunk in [text] + [b for b in CODE_BLOCK.findall(text) if b.strip()]:  # markdown: its code blocks
            for h in chk.check(chunk):
                if h.method == "ast":
                    tops["ast"].add((h.benchmark, h.task_id), h.score, did, h.snippet)
        pending.append((did, text))
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return tops, n_docs


def contamination_for(store: ArtifactStore, cc, release: str, runs: list[tuple[str, str, str]],
                      generated: list[Generated], *, mbpp_path: str = "", matcher=None,
                      log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The report for the scored tasks, or None (with a log line) when no training documents can be found."""
    if not release:
        return None
    try:
        inputs = training_inputs(store, release)
    except (StoreError, KeyError, ValueError) as e:
        if log:
            log(f"contamination report skipped: cannot walk {release} back to training documents ({e})")
        return None
    if not inputs:
        return None
    if not mbpp_path and any(b.startswith("mbpp") for b, _, _ in runs):
        from primer.scoring.data_files import try_locate_mbpp

        mbpp_path = try_locate_mbpp()[0]
    tops, n_docs = nearest_documents(documents(store, inputs), cc, mbpp_path, matcher)
    thresholds = {"ngram": cc.ngram_threshold, "ast": cc.ast_threshold, "embedding": cc.embed_threshold}
    tasks: dict[str, dict[str, Any]] = {}
    close: dict[str, list[str]] = {}
    for (bench, split, fmt), gen in zip(runs, generated):
        per = tasks.setdefault(bench, {})
        for p in gen.problems:
            key = base_task_id(bench, p.task_id)
            entry = {m: tops[m].best(key) for m in tops}
            hit = [m for m in tops if entry[m] and entry[m][0]["score"] >= thresholds[m]]
            per[p.task_id] = {**entry, "close_by": hit}
            if hit and p.task_id not in close.setdefault(bench, []):
                close[bench].append(p.task_id)
    return {"release": store.ref(release) if "://" in release or release.startswith("/") else release,
            "training_inputs": [{**i, "uri": store.ref(i["uri"])} for i in inputs], "documents": n_docs,
            "thresholds": thresholds, "close_tasks": close, "tasks": tasks}


def report_header(report: dict[str, Any] | None) -> dict[str, Any]:
    """What the summary keeps of the report (the full report is contamination.json)."""
    if report is None:
        return {"reported": False}
    return {"reported": True, "documents": report["documents"], "thresholds": report["thresholds"],
            "close_tasks": report["close_tasks"], "training_inputs": report["training_inputs"],
            "file": "contamination.json"}


def pruned_summary(full: dict[str, Any], rows: list[dict[str, Any]], close: list[str], *, greedy: bool,
                   ks) -> dict[str, Any]:
    """pass@k without the close tasks (phi-1's "pruned" score), beside the full one."""
    drop = set(close)
    kept = [SampleRecord(**r) for r in rows if r["task_id"] not in drop]
    out = summarize(kept, greedy=greedy, ks=ks) if kept else {"n_tasks": 0, "n_samples": 0, "n_passed": 0}
    return {**out, "removed": sorted(drop & {r["task_id"] for r in rows})}
