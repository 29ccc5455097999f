import os
import subprocess
import sys

import pytest

from primer.sandbox import ExecResult, Limits, Program, Sandbox, run_many, run_program

from .conftest import leftovers


def test_run_program_pass_fail_error_kinds(sandbox):
    r = run_program("def f(x):\n    return 2 * x\n", "assert f(2) == 4\n", sandbox=sandbox)
    assert isinstance(r, ExecResult) and r.passed and r.status == "passed" and r.error_kind is None
    assert r.duration_s > 0
    r = run_program("def f(x):\n    return x\n", "assert f(2) == 4\n", sandbox=sandbox)
    assert r.status == "failed" and r.error_kind == "tests:AssertionError" and "AssertionError" in r.stderr_tail
    r = run_program("def f(x)\n    return x\n", "assert f(2) == 4\n", sandbox=sandbox)
    assert r.status == "failed" and r.error_kind == "code:SyntaxError"
    r = run_program("print('hello')\nimport sys\nprint('err', file=sys.stderr)\n", sandbox=sandbox)
    assert r.passed and r.stdout_tail == "hello\n" and r.stderr_tail == "err\n"


def test_namespace_isolation_is_active_here(sandbox):
    """This machine allows namespaces (root): the full layer set must be in use, not a silent fallback."""
    r = sandbox.run(("import os\nprint(os.getpid(), os.getuid())\n"
                     "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
                     "try:\n    os.kill(1, 0)\n    print('can signal 1')\nexcept PermissionError:\n    print('no')\n"
                     "print(open('/proc/1/status').read().split('Uid:')[1].split()[0])\n", ""))
    assert r.passed, r
    assert set(r.isolation) == {"netns", "mountns", "pidns", "setuid", "proc"}, (r.isolation, sandbox.caps)
    first, procs, signal_1, uid_1 = r.stdout_tail.splitlines()
    pid, uid = map(int, first.split())
    assert uid >= 100000
    # host processes are not visible: only the program and pid 1, the request server (root, out of reach)
    assert procs == f"[1, {pid}]" and signal_1 == "no" and uid_1 == "0"


def test_run_many_preserves_order(sandbox):
    progs = [Program(f"import time\ntime.sleep({0.05 * (i % 3)})\nx = {i}\n", f"assert x == {i}\nprint(x)\n")
             for i in range(12)]
    progs[5] = Program("x = 0\n", "assert x == 5\n")
    res = sandbox.run_many(progs, timeout_s=5)
    assert [r.passed for r in res] == [i != 5 for i in range(12)]
    assert [r.stdout_tail for i, r in enumerate(res) if i != 5] == [f"{i}\n" for i in range(12) if i != 5]


def test_module_level_run_many_and_tuple_programs():
    res = run_many([("a = 1", "assert a == 1"), "raise ValueError('x')", Program("b = 2", "assert b == 3")],
                   workers=2, timeout_s=5)
    assert [r.status for r in res] == ["passed", "failed", "failed"]
    assert res[1].error_kind == "code:ValueError"


def test_limits_and_env(sandbox):
    assert Limits(timeout_s=2.5).as_wire()["cpu_s"] == 4
    r = sandbox.run(("import os, resource\nprint(resource.getrlimit(resource.RLIMIT_NPROC)[0], "
                     "resource.getrlimit(resource.RLIMIT_FSIZE)[0], os.getcwd() == os.environ['HOME'], "
                     "sorted(os.environ))\n", ""), Limits(max_processes=7, max_file_mb=2))
    assert r.passed, r
    assert r.stdout_tail.startswith(f"7 {2 << 20} True")
    for bad in ("OPENAI_API_KEY", "AWS_REGION", "GITHUB_TOKEN", "my_secret"):
        with pytest.raises(ValueError):
            Sandbox(1, env={bad: "x"})


def test_zygote_never_sees_harness_environment(marker, monkeypatch):
    monkeypatch.setenv("SOME_HARNESS_ONLY_VAR", marker)
    with Sandbox(1) as sb:
        sb.warm()
        zpid = sb._idle[0].proc.pid
        with open(f"/proc/{zpid}/environ", "rb") as f:
            assert marker.encode() not in f.read()


def test_leftover_checker_sees_a_real_leftover(marker):
    p = subprocess.Popen(["/bin/sh", "-c", f"sleep 30; echo {marker}"])
    try:
        assert any(pid == p.pid for pid, _ in leftovers(marker))
    finally:
        p.kill()
        p.wait()


def test_harness_recovers_when_fork_server_dies(marker):
    with Sandbox(1) as sb:
        sb.warm()
        os.kill(sb._idle[0].proc.pid, 9)
        r = sb.run(("x = 1", "assert x == 1"))
        assert r.status in ("error", "passed")
        assert sb.run(("x = 1", "assert x == 1")).passed


def test_closed_sandbox_refuses():
    sb = Sandbox(1)
    sb.close()
    with pytest.raises(RuntimeError):
        sb.run(("x = 1", ""))


def test_cli_python_is_this_interpreter():
    assert Sandbox(1).python == sys.executable
