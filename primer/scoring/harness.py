"""One harness for every backend: benchmark problems -> prompts -> completions -> sandboxed programs -> results.

    problems = load_problems("mbpp", "validation", "docstring_first_test", limit=10, mbpp_path=...)
    run = evaluate(backend, "humaneval", "test", "humaneval", n_samples=1, max_new_tokens=128)
    run.summary      # {"benchmark", "split", "prompt_format", "pass@1", "n_tasks", "sampling": {...}, ...}
    run.samples      # per sample: task_id, sample_index, completion, passed, status, error_kind, duration_s

Benchmarks, splits and prompt formats (the format is recorded with every result):

| benchmark | split | task ids | prompt formats (stop sequences) |
|---|---|---|---|
| humaneval | test | HumanEval/0..163 | humaneval (Codex stops: \\ndef, \\nclass, \\nif __name__, \\nprint(, \\n#) |
| mbpp | test | 11..510 | austin3shot ([DONE]), docstring_first_test (\\nclass, \\nassert, ...) |
| mbpp | validation | 511..600 | same (checkpoint selection uses only this split) |

Greedy decoding (temperature 0, one sample) reports pass@1 as the fraction solved; sampling reports the
unbiased pass@k (Chen et al. 2021) for each k <= n_samples.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from primer.evals import humaneval as he
from primer.evals import mbpp
from primer.evals.metrics import greedy_pass_at_1, summarize_pass_at_k
from primer.sandbox import Limits, Program, Sandbox

SPLITS = {"humaneval": ("test",), "mbpp": ("test", "validation")}
FORMATS = {"humaneval": (he.PROMPT_FORMAT,), "mbpp": mbpp.PROMPT_FORMATS}


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    stop: tuple[str, ...]
    build: Callable[[str], Program]          # completion -> program (code + tests)
    reference: str                           # a completion that passes (canonical solution), for harness tests


@dataclass(frozen=True)
class SampleRecord:
    benchmark: str
    split: str
    prompt_format: str
    task_id: str
    sample_index: int
    completion: str
    passed: bool
    status: str
    error_kind: str | None
    duration_s: float


@dataclass
class EvalRun:
    samples: list[SampleRecord]
    summary: dict[str, Any]
    prompts: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.samples]


def check_split(benchmark: str, split: str, prompt_format: str) -> None:
    if benchmark not in SPLITS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {sorted(SPLITS)}")
    if split not in SPLITS[benchmark]:
        raise ValueError(f"{benchmark} has no split {split!r}; choose from {SPLITS[benchmark]}")
    if prompt_format not in FORMATS[benchmark]:
        raise ValueError(f"{benchmark} has no prompt format {prompt_format!r}; choose from {FORMATS[benchmark]}")


def load_problems(benchmark: str, split: str, prompt_format: str, *, limit: int = 0, mbpp_path: str = "",
                  humaneval_path: str = "", mbpp_tasks: dict[int, mbpp.MBPPTask] | None = None) -> list[Problem]:
    """The first `limit` problems (0 = all) of one benchmark split, with their prompts in `prompt_format`."""
    check_split(benchmark, split, prompt_format)
    out: list[Problem] = []
    if benchmark == "humaneval":
        for p in he.load_problems(humaneval_path or None).values():
            out.append(Problem(p.task_id, p.prompt, he.STOP_SEQUENCES,
                               (lambda c, p=p: he.build_program(p, c)), p.canonical_solution))
    else:
        tasks = mbpp_tasks if mbpp_tasks is not None else mbpp.load_mbpp(mbpp_path or None)
        stops = mbpp.STOP_SEQUENCES[prompt_format]
        for t in mbpp.split(tasks, split):
            assert t.task_id in mbpp.SPLITS[split]  # the split is by task id, never by position
            reference = t.code.strip() + ("\n[DONE]" if prompt_format == "austin3shot" else "\n")
            out.append(Problem(str(t.task_id), mbpp.build_prompt(t, prompt_format, tasks), stops,
                               (lambda c, t=t: mbpp.build_program(t, mbpp.extract_code(c, prompt_format))),
                               reference))
    return out[:limit] if limit else out


def summarize(records: Iterable[SampleRecord], *, greedy: bool, ks: Iterable[int] = (1, 10, 100)) -> dict[str, Any]:
    by_task: dict[str, list[bool]] = {}
    for r in records:
        by_task.setdefault(r.task_id, []).append(r.passed)
    out: dict[str, Any] = {"n_tasks": len(by_task), "n_samples": sum(len(v) for v in by_task.values()),
                           "n_passed": sum(sum(v) for v in by_task.values())}
    if greedy:
        out["pass@1"] = greedy_pass_at_1({k: v[0] for k, v in by_task.items()})
    else:
        out.update(summarize_pass_at_k(by_task, ks))
    return out


def evaluate(backend, benchmark: str, split: str, prompt_format: str, n_samples: int = 1, *,
             temperature: float = 0.0, top_p: float = 0.95, max_new_tokens: int = 128, limit: int = 0,
             ks: Iterable[int] = (1, 10, 100), problems: list[Problem] | None = None,
             sandbox: Sandbox | None = None, limits: Limits | None = None, workers: int | None = None,
             mbpp_path: str = "", humaneval_path: str = "",
             on_progress: Callable[[float], None] | None = None) -> EvalRun:
    """Generate `n_samples` completions per problem with `backend`, run each in the sandbox, summarize."""
    check_split(benchmark, split, prompt_format)
    if problems is None:
        problems = load_problems(benchmark, split, prompt_format, limit=limit, mbpp_path=mbpp_path,
                                 humaneval_path=humaneval_path)
    greedy = temperature <= 0 and n_samples == 1
    if temperature <= 0 and n_samples > 1:
        n_samples = 1  # greedy samples are identical: one is enough
        greedy = True
    t0 = time.perf_counter()
    if any(p.stop != problems[0].stop for p in problems):
        raise ValueError("problems of one run must share their stop sequences")
    stop = list(problems[0].stop) if problems else []
    completions = backend.generate([p.prompt for p in problems], max_new_tokens=max_new_tokens, stop=stop,
                                   temperature=temperature, top_p=top_p, n=n_samples) if problems else []
    if on_progress:
        on_progress(0.5)
    gen_s = time.perf_counter() - t0
    if len(completions) != len(problems) or any(len(c) != n_samples for c in completions):
        raise RuntimeError(f"backend {getattr(backend, 'name', backend)!r} returned the wrong number of completions")
    flat = [(p, j, c) for p, cs in zip(problems, completions) for j, c in enumerate(cs)]
    programs = [p.build(c) for p, _, c in flat]
    lim = limits or Limits(timeout_s=5.0)
    t1 = time.perf_counter()
    if sandbox is not None:
        results = sandbox.run_many(programs, lim)
    else:
        with Sandbox(workers) as sb:
            results = sb.run_many(programs, lim)
    exec_s = time.perf_counter() - t1
    if on_progress:
        on_progress(1.0)
    records = [SampleRecord(benchmark, split, prompt_format, p.task_id, j, c, r.passed, r.status, r.error_kind,
                            round(r.duration_s, 4)) for (p, j, c), r in zip(flat, results)]
    summary = {"benchmark": benchmark, "split": split, "prompt_format": prompt_format,
               "stop": stop,
               "sampling": {"greedy": greedy, "n_samples": n_samples, "temperature": temperature if not greedy else 0.0,
                            "top_p": top_p if not greedy else 1.0, "max_new_tokens": max_new_tokens},
               **summarize(records, greedy=greedy, ks=ks),
               "errors": _error_counts(records),
               "timing_s": {"generate": round(gen_s, 3), "execute": round(exec_s, 3)}}
    return EvalRun(records, summary, {p.task_id: p.prompt for p in problems})


def _error_counts(records: list[SampleRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        if not r.passed:
            k = r.error_kind or r.status
            out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def write_parquet(rows: list[dict[str, Any]], path, extra: tuple[str, ...] = ()) -> None:
    """Per-sample results as Parquet (one row per sample); `extra` integer columns (e.g. a checkpoint step)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("benchmark", pa.string()), ("split", pa.string()), ("prompt_format", pa.string()),
                        ("task_id", pa.string()), ("sample_index", pa.int32()), ("completion", pa.string()),
                        ("passed", pa.bool_()), ("status", pa.string()), ("error_kind", pa.string()),
                        ("duration_s", pa.float64())] + [(name, pa.int64()) for name in extra])
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, str(path))
