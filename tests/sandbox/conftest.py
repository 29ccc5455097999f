import os
import time
import uuid

import pytest

from primer.sandbox import Sandbox

MARK_VAR = "PRIMER_SANDBOX_TEST_MARK"


@pytest.fixture(scope="session")
def marker() -> str:
    return "primermark" + uuid.uuid4().hex[:12]


def _make(marker: str, isolation: str = "auto") -> Sandbox:
    return Sandbox(2, isolation=isolation, env={MARK_VAR: marker}).warm()


@pytest.fixture(scope="session")
def sandbox(marker):
    sb = _make(marker)
    yield sb
    sb.close()


@pytest.fixture(scope="session")
def fallback_sandbox(marker):
    sb = _make(marker, "none")
    yield sb
    sb.close()


def _zygote_pids(sb: Sandbox | None) -> set[int]:
    if sb is None:
        return set()
    return {z.proc.pid for z in list(sb._idle) if z.proc is not None}


def leftovers(marker: str, sb: Sandbox | None = None) -> list[tuple[int, str]]:
    """Processes carrying the marker (environ or argv), running as a sandbox uid (100000 + zygote pid, the
    namespace mode), or still children of a fork server (which is a subreaper: escapees land there) other
    than its request server (namespace mode: pid 1 of the programs' PID namespace) and the program process
    it forked ahead for its next request outside a namespace. Those run as the fork server's uid and have
    run nothing; a program process forked ahead stays root until its request comes, so it is never a
    sandbox-uid process."""
    zpids = _zygote_pids(sb)
    spares = {p for z in list(sb._idle) for p in (z.spare_pid, z.server_pid) if p} if sb is not None else set()
    uids = {100000 + p for p in zpids} if sb is not None and sb.caps.get("setuid") else set()
    found = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    env = f.read()
            except OSError:
                env = b""
            with open(f"/proc/{d}/status") as f:
                st = {line.split(":")[0]: line.split()[1:] for line in f if ":" in line}
        except OSError:
            continue
        uid, ppid = int(st["Uid"][0]), int(st["PPid"][0])
        spare = int(d) in spares and uid == os.geteuid()
        if marker.encode() in cmd or marker.encode() in env or uid in uids or (ppid in zpids and not spare):
            found.append((int(d), cmd.replace(b"\0", b" ").decode(errors="replace")))
    return found


def assert_no_leftovers(marker: str, sb: Sandbox | None = None, grace_s: float = 1.0) -> None:
    deadline = time.monotonic() + grace_s
    while True:
        left = leftovers(marker, sb)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"
