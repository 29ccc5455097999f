"""Teacher throughput against a loopback OpenAI-compatible server that answers after a fixed delay.

    python bench/bench_teacher.py [--concurrency 32] [--delay 0.1] [--requests 960] [--no-ledger]

The server runs in its own process (tests/support/openai_server.py). With every answer taking `delay`
seconds, the best possible rate is concurrency / delay requests per second; the target is >= 90% of it.
In the same run, against the same server, a bare aiohttp loop (same bodies and concurrency; no ledger,
retries, budget or progress) is the fastest fair baseline: the Teacher's rate / the bare loop's is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def bare_loop(url: str, key: str, bodies: list[dict], concurrency: int) -> float:
    """Requests/s of the plain aiohttp client posting `bodies` at `concurrency`: the baseline."""
    import aiohttp

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), headers=headers) as s:
        sem = asyncio.Semaphore(concurrency)

        async def one(body: dict) -> None:
            async with sem:
                async with s.post(url, data=json.dumps(body).encode()) as r:
                    json.loads(await r.read())

        await asyncio.gather(*(one(b) for b in bodies[:concurrency]))   # open the connections
        t0 = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return len(bodies) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--delay", type=float, default=0.1)
    ap.add_argument("--requests", type=int, default=3200)
    ap.add_argument("--no-ledger", action="store_true", help="do not commit answers to a ledger")
    args = ap.parse_args()

    from primer.config import StoreConfig
    from primer.settings.synth import TeacherConfig
    from primer.store import open_store
    from primer.teacher import Ledger, Teacher

    server = subprocess.Popen([sys.executable, "-m", "tests.support.openai_server", "--delay", str(args.delay)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = server.stdout.readline()
        port = int(line.split()[1])
        os.environ["PRIMER_BENCH_KEY"] = "sk-bench-0000"
        cfg = TeacherConfig(base_url=f"http://127.0.0.1:{port}/v1", model="loopback-model",
                            api_key_env="PRIMER_BENCH_KEY", concurrency=args.concurrency, timeout_s=30,
                            max_tokens=256)
        with tempfile.TemporaryDirectory() as tmp:
            ledger = None if args.no_ledger else Ledger(open_store(StoreConfig(root=tmp)), "bench",
                                                         commit_every=cfg.ledger_commit_every,
                                                         commit_interval_s=cfg.ledger_commit_interval_s)
            teacher = Teacher(cfg, ledger)
            warm = [teacher.request([{"role": "user", "content": f"warm-up {i}"}]) for i in range(args.concurrency)]
            teacher.run_sync(warm)  # opens the connections, imports everything
            reqs = [teacher.request([{"role": "user", "content": f"Write a short note number {i}."}])
                    for i in range(args.requests)]
            t0, c0 = time.perf_counter(), time.process_time()
            answers = teacher.run_sync(reqs)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            path, _ = teacher.body(reqs[0])
            bodies = [{**teacher.body(r)[1], "messages": [{"role": "user", "content": f"bare {i}"}]}
                      for i, r in enumerate(reqs)]   # other prompts: nothing cached on the server's side
            bare = asyncio.run(bare_loop(cfg.base_url + path, "sk-bench-0000", bodies, args.concurrency))
        ok = sum(a.ok for a in answers)
        bound = args.concurrency / args.delay
        rate = ok / wall
        print(f"requests={args.requests} ok={ok} concurrency={args.concurrency} delay={args.delay}s "
              f"ledger={'no' if args.no_ledger else 'yes'}")
        print(f"achieved {rate:.1f} req/s; bound {bound:.1f} req/s (concurrency / delay); "
              f"{100 * rate / bound:.1f}% of the bound; wall {wall:.2f}s")
        print(f"bare aiohttp loop {bare:.1f} req/s ({100 * bare / bound:.1f}% of the bound); "
              f"Teacher / bare loop = {rate / bare:.3f}")
        print(f"client CPU {1000 * cpu / max(1, ok):.2f} ms/request (the client alone could do "
              f"~{ok / max(cpu, 1e-9):.0f} req/s on one free core); load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
        return 0 if ok == args.requests else 1
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    raise SystemExit(main())
