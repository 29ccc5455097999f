"""Decontaminate synthetic textbooks and exercises against HumanEval and MBPP (issue 15; phi-1 section 5).

A teacher has likely seen both benchmarks, so its answers are checked the way curated code is, plus an
embedding check:

* n-gram and AST: tasks/curate/decontam.py's `Decontaminator` (token n-gram share of a benchmark item found in
  the document; normalized-AST match rate of a function), with the thresholds of `evaluate.contamination`;
* embedding: cosine similarity of the document, and of each of its fenced code blocks, to every benchmark
  task's prompt + solution, with the pluggable embedder of curate (`hashed` offline by default,
  `transformer`, `endpoint`); a hit at `embed_threshold` or above.

A document with any hit is excluded. Every hit is kept as evidence in `exclusions.parquet` (dataset, id,
benchmark, task_id, method, score, matched_span) and counted in the manifest and the dashboard.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from primer.store import content_key

SPAN_CHARS = 400
CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.S)


@dataclass(frozen=True)
class Exclusion:
    dataset: str
    id: str
    benchmark: str
    task_id: str
    method: str          # ngram | ast | embedding
    score: float
    matched_span: str


def benchmark_texts(mbpp_path: str) -> list[tuple[str, str, str]]:
    """(benchmark, task_id, prompt + solution) of every HumanEval and (when available) MBPP task."""
    from primer.scoring import humaneval as he
    from primer.scoring import mbpp

    out = [("humaneval", p.task_id, p.prompt + p.canonical_solution) for p in he.load_problems().values()]
    if mbpp_path:
        out += [("mbpp", str(t.task_id), t.text + "\n" + t.code) for t in mbpp.load_mbpp(mbpp_path).values()]
    return out


def _normalized(m):
    from sklearn.preprocessing import normalize

    return normalize(m)


def without_docstrings(code: str) -> str:
    """The code with every docstring removed (ast round trip), or "" when it does not parse."""
    import ast
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in some benchmark reference code
            tree = ast.parse(code)
    except SyntaxError:
        return ""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


class BenchmarkMatcher:
    """All three checks against one benchmark set, built once per stage run."""

    def __init__(self, cc, mbpp_path: str = "", embedder=None):
        from tasks.curate.decontam import BenchItem, Decontaminator, load_humaneval, load_mbpp
        from tasks.curate.embed import make_embedder

        items = load_humaneval() + (load_mbpp(mbpp_path) if mbpp_path else [])
        # a teacher paraphrasing a solution rarely keeps HumanEval's docstring: the syntax-tree prefilter must
        # also see each task without it, or a renamed copy never reaches the AST comparison
        items += [BenchItem(it.benchmark, it.task_id, code) for it in items
                  if (code := without_docstrings(it.code)) and code != it.code]
        self.cc, self.mbpp_path = cc, mbpp_path
        self.checker = Decontaminator(items, cc.ngram_size, cc.ngram_threshold, cc.ast_threshold, cc.ast_min_nodes)
        self.tasks = benchmark_texts(mbpp_path)
        self.embedder = embedder or make_embedder(cc)
        self.task_vecs = _normalized(self.embedder.embed([t for _, _, t in self.tasks]))

    def spec(self) -> dict[str, Any]:
        """What decides the result (for the stage key): thresholds, embedder, benchmark contents."""
        return {"settings": asdict(self.cc) if hasattr(self.cc, "__dataclass_fields__") else dict(self.cc),
                "embedder": self.embedder.spec(), "benchmarks": content_key(self.tasks)}

    def similarity(self, texts: list[str]) -> np.ndarray:
        """(len(texts), n_tasks) cosine similarities."""
        if not texts:
            return np.zeros((0, len(self.tasks)), np.float32)
        sims = _normalized(self.embedder.embed(texts)) @ self.task_vecs.T
        return np.asarray(sims.todense() if hasattr(sims, "todense") else sims, dtype=np.float32)

    def hits(self, text: str) -> list[tuple[str, str, str, float, str]]:
        """(benchmark, task_id, method, score, matched span) of the best check that fires per task on `text`.
        Textbooks are markdown: the whole text and each fenced code block are checked (a syntax tree needs code
        that parses on its own)."""
        chunks = [text] + [b for b in CODE_BLOCK.findall(text) if b.strip()]
        best: dict[tuple[str, str], tuple[str, str, str, float, str]] = {}

        def keep(hit: tuple[str, str, str, float, str]) -> None:
            key = hit[:2]
            if key not in best or hit[3] > best[key][3]:
                best[key] = hit

        for chunk in chunks:
            for h in self.checker.check(chunk):
                keep((h.benchmark, h.task_id, h.method, float(h.score), h.snippet[:SPAN_CHARS]))
        sims = self.similarity(chunks)
        if sims.size:
            best_chunk, best_task = np.unravel_index(int(np.argmax(sims)), sims.shape)
            score = float(sims[best_chunk, best_task])
            if score >= self.cc.embed_threshold:
                bench, tid, _ = self.tasks[best_task]
                if (bench, tid) not in best:
                    best[bench, tid] = (bench, tid, "embedding", round(score, 4), chunks[best_chunk][:SPAN_CHARS])
        return sorted(best.values(), key=lambda h: (-h[3], h[0], h[1]))


def decontaminate_rows(rows: list[dict[str, Any]], dataset: str, matcher: BenchmarkMatcher,
                       text_key: str = "text", id_key: str = "id") -> tuple[list[dict[str, Any]], list[Exclusion]]:
    """(rows kept, evidence of every hit on the rows excluded)."""
    kept, excluded = [], []
    for row in rows:
        found = matcher.hits(row[text_key])
        if not found:
            kept.append(row)
            continue
        excluded += [Exclusion(dataset, str(row.get(id_key, "")), b, t, m, s, span) for b, t, m, s, span in found]
    return kept, excluded


def exclusion_counts(exclusions: list[Exclusion], seen: dict[str, int]) -> dict[str, Any]:
    """Dashboard/manifest counts: documents checked and excluded per dataset, hits per benchmark and method."""
    docs = {(e.dataset, e.id) for e in exclusions}
    out: dict[str, Any] = {"checked": dict(seen), "excluded": {d: sum(1 for ds, _ in docs if ds == d) for d in seen},
                           "hits_by_method": {}, "hits_by_benchmark": {}, "tasks": sorted({f"{e.benchmark}:{e.task_id}"
                                                                                           for e in exclusions})}
    for e in exclusions:
        out["hits_by_method"][e.method] = out["hits_by_method"].get(e.method, 0) + 1
        out["hits_by_benchmark"][e.benchmark] = out["hits_by_benchmark"].get(e.benchmark, 0) + 1
    return out


def write_exclusions(out, exclusions: list[Exclusion], name: str = "exclusions.parquet") -> None:
    """The evidence table, written into a stage output before its commit (an empty table when clean)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("dataset", pa.string()), ("id", pa.string()), ("benchmark", pa.string()),
                        ("task_id", pa.string()), ("method", pa.string()), ("score", pa.float64()),
                        ("matched_span", pa.string())])
    with out.open_local(name) as local:
        pq.write_table(pa.Table.from_pylist([asdict(e) for e in exclusions], schema=schema), str(local))


def decontaminate_outputs(cfg, out, datasets: dict[str, list[dict[str, Any]]], *, text_key: str = "text",
                          id_key: str = "id", matcher: BenchmarkMatcher | None = None
                          ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The synthesize stage's one call: check every dataset's rows, write `exclusions.parquet` into `out`,
    publish the counts, and return (datasets with the excluded rows removed, counts for the manifest).
    With `evaluate.contamination.synth` off, nothing is checked and the counts say so."""
    from primer import dashboard
    from primer.scoring.data_files import try_locate_mbpp

    cc = cfg.evaluate.contamination
    if not cc.synth:
        return datasets, {"enabled": False}
    mbpp_path, why = try_locate_mbpp(getattr(cfg.curate, "mbpp_path", "") or cfg.evaluate.mbpp_path)
    matcher = matcher or BenchmarkMatcher(cc, mbpp_path)
    kept_sets, exclusions = {}, []
    for name, rows in datasets.items():
        kept_sets[name], ex = decontaminate_rows(rows, name, matcher, text_key, id_key)
        exclusions += ex
    write_exclusions(out, exclusions)
    counts = {"enabled": True, **exclusion_counts(exclusions, {k: len(v) for k, v in datasets.items()}),
              "benchmarks": ["humaneval"] + (["mbpp"] if mbpp_path else []), "file": "exclusions.parquet"}
    if why:
        counts["note"] = f"MBPP not checked: {why}"
    dashboard.table("synth-decontamination", [{"dataset": d, "checked": counts["checked"][d],
                                               "excluded": counts["excluded"][d]} for d in datasets],
                    "Synthetic documents checked and excluded as close to HumanEval/MBPP")
    if exclusions:
        dashboard.table("synth-exclusions", [{k: v for k, v in asdict(e).items() if k != "matched_span"}
                                             for e in exclusions[:200]],
                        "Evidence of each exclusion (all of it, with the matched span: exclusions.parquet)")
    return kept_sets, counts
