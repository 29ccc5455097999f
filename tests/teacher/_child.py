"""Child process for the SIGKILL tests: answers N requests through the Teacher with a ledger."""

import sys

from primer.config import StoreConfig
from primer.settings.synth import TeacherConfig
from primer.store import open_store
from primer.teacher import Ledger, Teacher


def main() -> None:
    base_url, root, n, concurrency, commit_every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    interval = float(sys.argv[6]) if len(sys.argv) > 6 else 0.05
    cfg = TeacherConfig(base_url=base_url, model="loopback-model", api_key_env="PRIMER_TEST_OPENAI_KEY",
                        concurrency=concurrency, timeout_s=30, max_retries=20, backoff_base_s=0.01,
                        backoff_max_s=0.1, ledger_commit_every=commit_every, ledger_commit_interval_s=interval)
    store = open_store(StoreConfig(root=root))
    ledger = Ledger(store, "kill", commit_every=cfg.ledger_commit_every,
                    commit_interval_s=cfg.ledger_commit_interval_s)
    teacher = Teacher(cfg, ledger)
    reqs = [teacher.request([{"role": "user", "content": f"Write sample number {i}."}]) for i in range(n)]
    answers = teacher.run_sync(reqs)
    bad = [a for a in answers if not a.ok]
    print(f"DONE ok={len(answers) - len(bad)} bad={len(bad)} cached={sum(a.cached for a in answers)}", flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
