"""Primer's code executor: runs untrusted Python (model completions, synthetic exercises) with tests.

See docs/sandbox.md for the isolation layers and the threat model.  In short: a pool of warm fork servers
(``_zygote.py``, started with a scrubbed environment); each serves requests as pid 1 of a PID namespace that
holds only it and its programs, and forks one program process per request, ahead of it; the program runs in
a private network namespace, on a read-only view of the filesystem with a size-capped private tmpfs working
dir, as a unique unprivileged uid, under rlimits, and everything it starts is killed before the answer.
Whether it passed is decided outside the program by a nonce handshake that only starts after the tests ran
to their end.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

log = logging.getLogger("primer.sandbox")

ZYGOTE_PATH = Path(__file__).with_name("_zygote.py")
STATUSES = ("passed", "failed", "timeout", "error")

#: Environment the programs see (plus HOME/TMPDIR/PWD = their working dir).  Nothing else is passed on.
SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
_FORBIDDEN_ENV_PARTS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "SESSION")
_FORBIDDEN_ENV_PREFIXES = ("AWS_", "OPENAI_", "ANTHROPIC_", "HF_", "HUGGING", "GITHUB_", "GH_", "AZURE_",
                           "GOOGLE_", "GCP_", "PREFECT_", "S3_", "MINIO_")


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for k in env:
        ku = k.upper()
        if any(p in ku for p in _FORBIDDEN_ENV_PARTS) or ku.startswith(_FORBIDDEN_ENV_PREFIXES):
            raise ValueError(f"refusing to pass environment variable {k!r} into the sandbox")
    return dict(env)


@dataclass(frozen=True)
class Limits:
    """Per-program limits.  ``cpu_s`` defaults to ``ceil(timeout_s) + 1`` (RLIMIT_CPU, per process)."""

    timeout_s: float = 5.0
    memory_mb: int = 1024           # RLIMIT_AS (+ RLIMIT_DATA) per process
    max_processes: int = 16         # RLIMIT_NPROC for the program's unique uid
    max_file_mb: int = 16           # RLIMIT_FSIZE
    max_open_files: int = 128       # RLIMIT_NOFILE
    max_output_bytes: int = 1 << 20  # stdout+stderr beyond this: killed, failed/output_limit
    tail_bytes: int = 8192          # how much of the end of stdout/stderr is kept
    cpu_s: int | None = None

    def as_wire(self) -> dict:
        d = asdict(self)
        if d["cpu_s"] is None:
            d["cpu_s"] = int(-(-self.timeout_s // 1)) + 1
        return d


@dataclass(frozen=True)
class Program:
    """Candidate code plus test code, run in one namespace (``__name__ == "__main__"``)."""

    code: str
    tests: str = ""


ProgramLike = Union[Program, str, tuple]


@dataclass(frozen=True)
class ExecResult:
    status: str                     # passed | failed | timeout | error
    error_kind: str | None          # e.g. "tests:AssertionError", "code:SyntaxError", "early_exit", ...
    stdout_tail: str
    stderr_tail: str
    duration_s: float
    exit_code: int | None = None
    signal: int | None = None
    isolation: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _as_program(p: ProgramLike) -> Program:
    if isinstance(p, Program):
        return p
    if isinstance(p, str):
        return Program(p)
    if isinstance(p, tuple) and len(p) == 2:
        return Program(*p)
    raise TypeError(f"not a program: {type(p)!r}")


class _Zygote:
    """One warm fork server. Not thread-safe: one request at a time (the pool guarantees it)."""

    def __init__(self, python: str, isolation: str, disk_mb: int, private_proc: bool = True,
                 env: dict[str, str] | None = None):
        self.python, self.isolation, self.disk_mb = python, isolation, disk_mb
        self.private_proc, self.env = private_proc, dict(env or SAFE_ENV)
        self.proc: subprocess.Popen | None = None
        self.caps: dict = {}
        self.spare_pid: int | None = None
        self.server_pid: int | None = None
        self._start()

    def _start(self) -> None:
        # The config goes on stdin, not argv: the programs' environment is not for every `ps` to read.
        cfg = json.dumps({"isolation": self.isolation, "disk_mb": self.disk_mb, "private_proc": self.private_proc,
                          "env": self.env}).encode()
        env = {"PATH": SAFE_ENV["PATH"], "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        self.proc = subprocess.Popen(
            [self.python, "-I", "-B", str(ZYGOTE_PATH)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=env, cwd="/",
            close_fds=True, start_new_session=True, bufsize=0,
        )
        try:
            self.proc.stdin.write(struct.pack(">I", len(cfg)) + cfg)
        except OSError:
            pass
        hello = self._recv(30.0)
        if hello is None or "hello" not in hello:
            self.kill()
            raise RuntimeError("sandbox fork server failed to start")
        self.caps = hello["caps"]
        self.server_pid = hello.get("server")  # namespace mode: the server, pid 1 of the programs' namespace
        self.spare_pid = hello.get("spare")

    def _recv(self, timeout: float) -> dict | None:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = bytearray()
        need = 4
        length = None
        while len(buf) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return None
            chunk = os.read(fd, max(need - len(buf), 65536) if length else need - len(buf))
            if not chunk:
                return None
            buf += chunk
            if length is None and len(buf) >= 4:
                (length,) = struct.unpack(">I", bytes(buf[:4]))
                del buf[:4]
                need = length
        return json.loads(bytes(buf[:need]))

    def request(self, req: dict, timeout: float) -> dict | None:
        data = json.dumps(req).encode()
        try:
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        except (BrokenPipeError, OSError):
            return None
        res = self._recv(timeout)
        if res is not None:
            self.spare_pid = res.pop("spare", None)  # outside a PID namespace: the program process forked ahead
        return res

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except Exception:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except Exception:
                pass
        self.proc = None

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(5)
        except Exception:
            pass
        self.kill()


class Sandbox:
    """A pool of ``workers`` warm fork servers.  Thread-safe; reuse one instance for many programs.

    ``isolation``: "auto" (namespaces where the machine allows, logged fallback otherwise) or "none"
    (no namespaces: uid switch / rlimits / session / subreaper only; for tests of the fallback path).
    ``disk_mb``: size of the private tmpfs holding the working dir (namespace mode).
    ``private_proc``: mount a /proc showing only the program's own PID namespace (~1-2 ms per program).
    ``env``: extra environment variables for the programs (names that look like credentials are refused).
    """

    def __init__(self, workers: int | None = None, *, isolation: str = "auto", disk_mb: int = 64,
                 private_proc: bool = True, python: str | None = None, env: dict[str, str] | None = None):
        if isolation not in ("auto", "none"):
            raise ValueError("isolation must be 'auto' or 'none'")
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.isolation, self.disk_mb, self.private_proc = isolation, disk_mb, private_proc
        self.python = python or sys.executable
        self.env = {**SAFE_ENV, **_check_env(env or {})}
        self._idle: list[_Zygote] = []
        self._cv = threading.Condition()
        self._started = 0
        self._closed = False
        self._warned = False
        self.caps: dict = {}

    # -- pool management
    def _acquire(self) -> _Zygote:
        with self._cv:
            while True:
                if self._closed:
                    raise RuntimeError("sandbox is closed")
                if self._idle:
                    return self._idle.pop()
                if self._started < self.workers:
                    self._started += 1
                    break
                self._cv.wait()
        try:
            z = _Zygote(self.python, self.isolation, self.disk_mb, self.private_proc, self.env)
        except BaseException:
            with self._cv:
                self._started -= 1
                self._cv.notify()
            raise
        self._note_caps(z.caps)
        return z

    def _note_caps(self, caps: dict) -> None:
        self.caps = caps
        if not self._warned:
            self._warned = True
            for w in caps.get("warnings", []):
                log.warning("sandbox isolation fallback: %s", w)

    def _release(self, z: _Zygote | None) -> None:
        with self._cv:
            if z is None or not z.alive() or self._closed:
                self._started -= 1
                if z is not None:
                    z.kill()
            else:
                self._idle.append(z)
            self._cv.notify()

    def warm(self) -> "Sandbox":
        """Start all fork servers now (otherwise they start lazily)."""
        zs = []
        with self._cv:
            missing = self.workers - self._started
        for _ in range(missing):
            zs.append(self._acquire())
        for z in zs:
            self._release(z)
        return self

    def close(self) -> None:
        with self._cv:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cv.notify_all()
        for z in idle:
            z.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running
    def run(self, program: ProgramLike, limits: Limits | None = None, **kw) -> ExecResult:
        if limits is None:
            limits = Limits(**kw)
        elif kw:
            raise TypeError("pass either limits= or keyword limits, not both")
        p = _as_program(program)
        req = {"code": p.code, "tests": p.tests, "limits": limits.as_wire()}
        z = self._acquire()
        res = None
        try:
            res = z.request(req, timeout=limits.timeout_s + 15.0)
        finally:
            if res is None:
                z.kill()
                self._release(None)
            else:
                self._release(z)
        if res is None:
            return ExecResult("error", "sandbox_crash", "", "fork server died or hung", 0.0)
        return ExecResult(res["status"], res["error_kind"], res["stdout"], res["stderr"], res["duration_s"],
                          res.get("exit_code"), res.get("signal"), tuple(res.get("isolation") or ()))

    def run_many(self, programs: Iterable[ProgramLike], limits: Limits | Sequence[Limits] | None = None,
                 **kw) -> list[ExecResult]:
        """Run all programs with at most ``workers`` at a time; results in input order. ``limits`` is one
        `Limits` for all, or one per program (per-task time limits)."""
        progs = [_as_program(p) for p in programs]
        if limits is None:
            limits = Limits(**kw)
        per = [limits] * len(progs) if isinstance(limits, Limits) else list(limits)
        if len(per) != len(progs):
            raise ValueError(f"{len(per)} limits for {len(progs)} programs")
        if not progs:
            return []
        n = min(self.workers, len(progs))
        with ThreadPoolExecutor(n, thread_name_prefix="primer-sandbox") as ex:
            return list(ex.map(self.run, progs, per))


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """Process-wide shared pool (``os.cpu_count()`` workers), closed at interpreter exit."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            import atexit

            _default = Sandbox()
            atexit.register(_default.close)
        return _default


def run_program(code: str, tests: str = "", *, timeout_s: float = 5.0, memory_mb: int = 1024,
                sandbox: Sandbox | None = None, **limits) -> ExecResult:
    """Run ``code`` then ``tests`` in one fresh sandboxed process; see :class:`Limits` for ``limits``."""
    sb = sandbox or default_sandbox()
    return sb.run(Program(code, tests), Limits(timeout_s=timeout_s, memory_mb=memory_mb, **limits))


def run_many(programs: Sequence[ProgramLike], *, workers: int | None = None, timeout_s: float = 5.0,
             memory_mb: int = 1024, sandbox: Sandbox | None = None, **limits) -> list[ExecResult]:
    """Run many programs with bounded parallelism (``workers``, default: CPU count); order preserved."""
    lim = Limits(timeout_s=timeout_s, memory_mb=memory_mb, **limits)
    if sandbox is not None:
        return sandbox.run_many(programs, lim)
    if workers is None or workers == (os.cpu_count() or 1):
        return default_sandbox().run_many(programs, lim)
    with Sandbox(workers) as sb:
        return sb.run_many(programs, lim)
