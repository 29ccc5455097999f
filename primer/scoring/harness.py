"""One harness for every backend: benchmark problems -> prompts -> completions -> sandboxed programs -> results.

    problems = load_problems("mbpp", "validation", "docstring_first_test", limit=10, mbpp_path=...)
    run = evaluate(backend, "humaneval", "test", "humaneval", n_samples=1, max_new_tokens=128)
    run.summary      # {"benchmark", "split", "prompt_format", "pass@1", "n_tasks", "sampling": {...}, ...}
    run.samples      # per sample: task_id, sample_index, completion, passed, status, error_kind, duration_s
    run.run_facts    # measurements (timings, sample durations): a stage keeps them out of its hashed files

The steps are also separate functions (`generate`, `programs_of`, `execute`, `score`), so a stage can run the
sandbox batches on its task runner (tasks/evaluate) and still get the same records.

Benchmarks, splits and prompt formats (the format is recorded with every result):

| benchmark | split | task ids | prompt formats (stop sequences) |
|---|---|---|---|
| humaneval | test | HumanEval/0..163 | humaneval (stops: `bigcode` or `codex`, see conventions.py) |
| mbpp | test | 11..510 | austin3shot ([DONE]), docstring_first_test (\\nclass, \\nassert, ...) |
| mbpp | validation | 511..600 | same (checkpoint selection uses only this split) |
| humaneval+ / mbpp+ | base, plus | evalplus files | humaneval / docstring_first_test (evalplus.py) |

Greedy decoding (temperature 0, one sample) reports pass@1 as the fraction solved; sampling reports the
unbiased pass@k (Chen et al. 2021) for each k <= n_samples.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

from primer.sandbox import ExecResult, Limits, Program, Sandbox
from primer.scoring import conventions
from primer.scoring import humaneval as he
from primer.scoring import mbpp
from primer.scoring.backends import cut_at_stops
from primer.scoring.metrics import greedy_pass_at_1, summarize_pass_at_k
from primer.scoring.problems import Problem

SPLITS = {"humaneval": ("test",), "mbpp": ("test", "validation"), "humaneval+": ("base", "plus"),
          "mbpp+": ("base", "plus")}
FORMATS = {"humaneval": (he.PROMPT_FORMAT,), "mbpp": mbpp.PROMPT_FORMATS, "humaneval+": (he.PROMPT_FORMAT,),
           "mbpp+": ("docstring_first_test",)}


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
    summary: dict[str, Any]                      # what follows from the model, problems and settings
    prompts: dict[str, str] = field(default_factory=dict)
    run_facts: dict[str, Any] = field(default_factory=dict)  # measurements of this run: timings, durations

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.samples]


@dataclass(frozen=True)
class Generated:
    """The completions of one benchmark run, before execution."""

    problems: list[Problem]
    samples: list[tuple[int, int, str]]          # (problem index, sample index, completion as cut)
    sampling: dict[str, Any]
    generate_s: float


def check_split(benchmark: str, split: str, prompt_format: str) -> None:
    if benchmark not in SPLITS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {sorted(SPLITS)}")
    if split not in SPLITS[benchmark]:
        raise ValueError(f"{benchmark} has no split {split!r}; choose from {SPLITS[benchmark]}")
    if prompt_format not in FORMATS[benchmark]:
        raise ValueError(f"{benchmark} has no prompt format {prompt_format!r}; choose from {FORMATS[benchmark]}")


def load_problems(benchmark: str, split: str, prompt_format: str, *, limit: int = 0, mbpp_path: str = "",
                  humaneval_path: str = "", mbpp_tasks: dict[int, mbpp.MBPPTask] | None = None,
                  stops: str = "bigcode", plus_path: str = "", plus_sha256: str = "") -> list[Problem]:
    """The first `limit` problems (0 = all) of one benchmark split, with their prompts in `prompt_format`.
    `stops` names HumanEval's stop-sequence convention (conventions.HUMANEVAL_STOPS)."""
    check_split(benchmark, split, prompt_format)
    if stops not in conventions.HUMANEVAL_STOPS:
        raise ValueError(f"unknown stop convention {stops!r}; choose from {sorted(conventions.HUMANEVAL_STOPS)}")
    out: list[Problem] = []
    if benchmark in ("humaneval+", "mbpp+"):
        from primer.scoring import evalplus

        out = evalplus.load_problems(benchmark, split, plus_path, plus_sha256, stops=conventions.HUMANEVAL_STOPS[stops],
                                     mbpp_stops=mbpp.STOP_SEQUENCES["docstring_first_test"])
    elif benchmark == "humaneval":
        for p in he.load_problems(humaneval_path or None).values():
            out.append(Problem(p.task_id, p.prompt, conventions.HUMANEVAL_STOPS[stops], p.prompt,
                               he.test_code(p), p.canonical_solution, p.entry_point, benchmark))
    else:
        tasks = mbpp_tasks if mbpp_tasks is not None else mbpp.load_mbpp(mbpp_path or None)
        stop = mbpp.STOP_SEQUENCES[prompt_format]
        for t in mbpp.split(tasks, split):
            assert t.task_id in mbpp.SPLITS[split]  # the split is by task id, never by position
            reference = t.code.strip() + ("\n[DONE]" if prompt_format == "austin3shot" else "\n")
            out.append(Problem(str(t.task_id), mbpp.build_prompt(t, prompt_format, tasks), stop, "",
                               mbpp.test_code(t), reference,
                               conventions.entry_point_of_tests(t.test_list, t.code), benchmark))
    return out[:limit] if limit else out


def program_of(problem: Problem, completion: str, sanitizer: str = "none") -> Program:
    """The program that scores `completion`: cut at the problem's stops, prefixed, optionally sanitized."""
    code = problem.prefix + cut_at_stops(completion, problem.stop)[0]
    if sanitizer == "evalplus":
        code = conventions.sanitize(code, problem.entry_point)
    elif sanitizer != "none":
        raise ValueError(f"unknown sanitizer {sanitizer!r}; choose from {conventions.SANITIZERS}")
    return Program(code=code + "\n", tests=problem.tests)


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


def generate(backend, problems: list[Problem], n_samples: int = 1, *, temperature: float = 0.0,
             top_p: float = 0.95, max_new_tokens: int = 128) -> Generated:
    """`n_samples` completions per problem (one when greedy: greedy samples are identical)."""
    greedy = temperature <= 0
    if greedy:
        n_samples = 1
    if any(p.stop != problems[0].stop for p in problems):
        raise ValueError("problems of one run must share their stop sequences")
    stop = list(problems[0].stop) if problems else []
    t0 = time.perf_counter()
    completions = backend.generate([p.prompt for p in problems], max_new_tokens=max_new_tokens, stop=stop,
                                   temperature=temperature, top_p=top_p, n=n_samples) if problems else []
    if len(completions) != len(problems) or any(len(c) != n_samples for c in completions):
        raise RuntimeError(f"backend {getattr(backend, 'name', backend)!r} returned the wrong number of completions")
    # cut here too: a backend (or endpoint) that ignores `stop` is scored the same way
    samples = [(i, j, cut_at_stops(c, stop)[0]) for i, cs in enumerate(completions) for j, c in enumerate(cs)]
    sampling = {"greedy": greedy, "n_samples": n_samples, "temperature": 0.0 if greedy else temperature,
                "top_p": 1.0 if greedy else top_p, "max_new_tokens": max_new_tokens}
    return Generated(problems, samples, sampling, round(time.perf_counter() - t0, 3))


def programs_of(gen: Generated, sanitizer: str = "none") -> list[Program]:
    return [program_of(gen.problems[i], c, sanitizer) for i, _, c in gen.samples]


def limits_of(gen: Generated, limits: Limits, per_task_s: dict[str, float] | None = None) -> list[Limits]:
    """Per-sample limits: `limits`, with the task's own time limit when the `reference` rule gave one."""
    if not per_task_s:
        return [limits] * len(gen.samples)
    return [replace(limits, timeout_s=per_task_s.get(gen.problems[i].task_id, limits.timeout_s))
            for i, _, _ in gen.samples]


def execute(programs: Sequence[Program], limits: Sequence[Limits] | Limits, *, sandbox: Sandbox | None = None,
            workers: int | None = None) -> list[ExecResult]:
    if sandbox is not None:
        return sandbox.run_many(programs, limits)
    with Sandbox(workers) as sb:
        return sb.run_many(programs, limits)


def score(gen: Generated, results: Sequence[ExecResult], benchmark: str, split: str, prompt_format: str, *,
          ks: Iterable[int] = (1, 10, 100), execute_s: float = 0.0,
          conventions_used: dict[str, Any] | None = None) -> EvalRun:
    """Records and the summary of one run, from its completions and their execution results (in order)."""
    if len(results) != len(gen.samples):
        raise RuntimeError(f"{len(results)} execution results for {len(gen.samples)} samples")
    records = [SampleRecord(benchmark, split, prompt_format, gen.problems[i].task_id, j, c, r.passed, r.status,
                            r.error_kind, round(r.duration_s, 4)) for (i, j, c), r in zip(gen.samples, results)]
    stop = list(gen.problems[0].stop) if gen.problems else []
    summary = {"benchmark": benchmark, "split": split, "prompt_format": prompt_format, "stop": stop,
               "conventions": conventions_used or {}, "sampling": gen.sampling,
               **summarize(records, greedy=gen.sampling["greedy"], ks=ks),
               "errors": error_counts(records)}
    run_facts = {"timing_s": {"generate": gen.generate_s, "execute": round(execute_s, 3)},
                 "sample_duration_s": duration_stats(records)}
    return EvalRun(records, summary, {p.task_id: p.prompt for p in gen.problems}, run_facts)


def duration_stats(records: Sequence[SampleRecord], slowest: int = 5) -> dict[str, Any]:
    """The samples' sandbox wall times in brief (sum, median, max, the slowest few): a run fact."""
    if not records:
        return {}
    ds = sorted(r.duration_s for r in records)
    top = sorted(records, key=lambda r: -r.duration_s)[:slowest]
    return {"sum": round(sum(ds), 4), "median": ds[len(ds) // 2], "max": ds[-1],
            "slowest": [[r.task_id, r.sample_index, r.duration_s] for r in top]}


def evaluate(backend, benchmark: str, split: str, prompt_format: str, n_samples: int = 1, *,
             temperature: float = 0.0, top_p: float = 0.95, max_new_tokens: int = 128, limit: int = 0,
             ks: Iterable[int] = (1, 10, 100), problems: list[Problem] | None = None,
             sandbox: Sandbox | None = None, limits: Limits | None = None, workers: int | None = None,
             mbpp_path: str = "", humaneval_path: str = "", sanitizer: str = "none",
             per_task_s: dict[str, float] | None = None,
             on_progress: Callable[[float], None] | None = None) -> EvalRun:
    """Generate `n_samples` completions per problem with `backend`, run each in the sandbox, summarize."""
    check_split(benchmark, split, prompt_format)
    if problems is None:
        problems = load_problems(benchmark, split, prompt_format, limit=limit, mbpp_path=mbpp_path,
                                 humaneval_path=humaneval_path)
    gen = generate(backend, problems, n_samples, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    if on_progress:
        on_progress(0.5)
    t1 = time.perf_counter()
    results = execute(programs_of(gen, sanitizer), limits_of(gen, limits or Limits(timeout_s=5.0), per_task_s),
                      sandbox=sandbox, workers=workers)
    if on_progress:
        on_progress(1.0)
    return score(gen, results, benchmark, split, prompt_format, ks=ks, execute_s=time.perf_counter() - t1,
                 conventions_used={"sanitizer": sanitizer, "time_limit": "reference" if per_task_s else "fixed"})


def error_counts(records: list[SampleRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        if not r.passed:
            k = r.error_kind or r.status
            out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def reference_runtimes(problems: list[Problem], limits: Limits, *, sandbox: Sandbox | None = None) -> dict[str, float]:
    """Each task's reference solution, run once in the sandbox: its wall time (for the `reference` rule)."""
    res = execute([program_of(p, p.reference) for p in problems], limits, sandbox=sandbox)
    return {p.task_id: r.duration_s for p, r in zip(problems, res)}


def write_parquet(rows: list[dict[str, Any]], path, extra: tuple[str, ...] = ()) -> None:
    """Per-sample results as Parquet (one row per sample); `extra` integer columns (e.g. a checkpoint step).
    Only what follows from the inputs: a row's `duration_s` (a measurement) is left out, so the same
    completions give the same bytes (the stage's content hash); durations are run facts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("benchmark", pa.string()), ("split", pa.string()), ("prompt_format", pa.string()),
                        ("task_id", pa.string()), ("sample_index", pa.int32()), ("completion", pa.string()),
                        ("passed", pa.bool_()), ("status", pa.string()), ("error_kind", pa.string())]
                       + [(name, pa.int64()) for name in extra])
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, str(path))
