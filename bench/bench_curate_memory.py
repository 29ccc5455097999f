"""Peak memory and throughput of a whole curate run at two corpus sizes (issue 13: memory bounded by shard).

Each size runs the real curate flow (Prefect, the default task runner, dedup, heuristic annotation, the
classifier, decontamination) in a fresh child process on real Python files of this machine: this venv's
site-packages, the standard library and the base interpreter's site-packages (`max_docs` per source is
chosen so that the total is about the requested number of files). The child reports its own peak RSS
(`ru_maxrss`) and CPU seconds; throughput per core = input documents / CPU seconds of the run.

    python bench/bench_curate_memory.py [--sizes 5000 30000] [--json out.json]

Slow on a small machine (~30,000 files is minutes of CPU); run it once, not in a loop.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from prefect.testing.utilities import prefect_test_harness
from flows.curate import curate
over = json.loads(sys.argv[2])
with prefect_test_harness(server_startup_timeout=180):   # a temporary server + database, as in the tests
    t0 = time.time()
    uri = curate("tiny", over)
    wall = time.time() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
manifest = json.loads(open(uri + "/manifest.json").read())
print("RESULT " + json.dumps({"peak_rss_mb": round(ru.ru_maxrss / 1024, 1), "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
      "wall_s": round(wall, 1), "docs_in": manifest["funnel"][0]["docs"], "docs_kept": manifest["documents"],
      "shards": len(manifest["datasets"]["documents"]["files"]), "timings_s": manifest["run"]["timings_s"]}))
"""


def sources() -> list[str]:
    base_site = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["purelib"]
    out = ["python:site-packages", "python:stdlib"]
    if Path(base_site).is_dir() and Path(base_site).resolve() != Path(sysconfig.get_paths()["purelib"]).resolve():
        out.append(base_site)
    return out


def count_files(uri: str) -> int:
    from primer.config import SourceSpec
    from tasks.sources import resolve_source

    return len(resolve_source(SourceSpec(uri=uri)).files)


def max_docs_for(total: int, counts: list[int]) -> int:
    """The per-source cap giving about `total` files over all sources."""
    lo, hi = 1, max(counts)
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(min(c, mid) for c in counts) < total:
            lo = mid + 1
        else:
            hi = mid
    return lo


def run(size: int, srcs: list[str], counts: list[int]) -> dict:
    cap = max_docs_for(size, counts)
    with tempfile.TemporaryDirectory(prefix="primer-bench-curate-") as tmp:
        over = {"store.root": tmp, "curate.sources": [{"uri": u} for u in srcs], "curate.max_docs": cap,
                "curate.dedup_buckets": 16}
        proc = subprocess.run([sys.executable, "-c", CHILD, str(REPO), json.dumps(over)], capture_output=True,
                              text=True, env={**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"curate run of {size} files failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result.update(files_requested=size, max_docs_per_source=cap,
                  docs_per_cpu_s=round(result["docs_in"] / max(result["cpu_s"], 1e-9), 1))
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 30000])
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    srcs = sources()
    counts = [count_files(u) for u in srcs]
    print(f"sources: {dict(zip(srcs, counts))}", flush=True)
    results = []
    for size in args.sizes:
        r = run(size, srcs, counts)
        results.append(r)
        print(json.dumps(r), flush=True)
    first = results[0]
    summary = {"runs": results,
               "rss_ratio_last_vs_first": round(results[-1]["peak_rss_mb"] / first["peak_rss_mb"], 2),
               "per_core_throughput_ratio_last_vs_first": round(results[-1]["docs_per_cpu_s"] / first["docs_per_cpu_s"], 2)}
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
