"""A real local Prefect stack driven through scripts/stack.sh, as users run it (shared by the e2e tests)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO, free_port

FAKE_SECRET = "sk-primer-e2e-FAKE-7f3c9a1b5d"
OUTPUTS = REPO / "test-outputs"


class Stack:
    def __init__(self, base: Path, **env: str):
        self.base = base
        self.port = free_port()
        self.store = base / "store"
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.ui = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update({
            "PRIMER_STACK_DIR": str(base / "stack"), "PRIMER_STACK_PORT": str(self.port),
            "PRIMER_STORE_ROOT": str(self.store), "PRIMER_STACK_TIMEOUT": "300",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # a secret the worker (and every flow run) can see, as a user's real keys would be
            "PRIMER_E2E_API_KEY": FAKE_SECRET, "OPENAI_API_KEY": FAKE_SECRET,
        })
        self.env.update(env)
        self.cli_env = {**self.env, "PREFECT_HOME": str(base / "stack" / "prefect-home"),
                        "PREFECT_API_URL": self.api}

    def sh(self, *args: str, timeout: float = 420) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(REPO / "scripts" / "stack.sh"), *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def prefect(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / ".venv" / "bin" / "prefect"), *args], cwd=REPO, env=self.cli_env,
                              capture_output=True, text=True, timeout=timeout)

    def post(self, path: str, body: dict | None = None):
        import httpx

        r = httpx.post(self.api + path, json=body or {}, timeout=60)
        r.raise_for_status()
        return r.json()

    def get(self, path: str):
        import httpx

        r = httpx.get(self.api + path, timeout=60)
        r.raise_for_status()
        return r.json()
