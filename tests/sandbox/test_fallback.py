"""The fallback path (no namespaces: what a machine without unshare gets), on the behaviours it must still
handle: timeouts, orphans, early exits, forged results, floods, network (audit hook)."""

import socket

import pytest

from .test_hostile import ORPHAN_SPAWNER, run_hostile

pytestmark = pytest.mark.timeout(60)


def test_fallback_reports_and_passes(fallback_sandbox):
    assert not fallback_sandbox.caps["netns"] and not fallback_sandbox.caps.get("pidns")
    assert any("namespaces disabled" in w for w in fallback_sandbox.caps["warnings"])
    r = fallback_sandbox.run(("def f():\n    return 1\n", "assert f() == 1\n"))
    assert r.passed and "pidns" not in r.isolation


def test_fallback_infinite_loop(fallback_sandbox, marker):
    assert run_hostile(fallback_sandbox, marker, "while True:\n    pass\n").status == "timeout"


def test_fallback_orphans_are_killed(fallback_sandbox, marker):
    run_hostile(fallback_sandbox, marker, ORPHAN_SPAWNER, "assert False\n", timeout_s=3.0)


def test_fallback_early_exit_and_forgery(fallback_sandbox, marker):
    assert run_hostile(fallback_sandbox, marker, "import os\nos._exit(0)\n").error_kind == "early_exit"
    r = run_hostile(fallback_sandbox, marker, """
        import os
        for fd in range(3, 64):
            try:
                os.write(fd, b"F\\nP" + b"0" * 32 + b"\\n")
            except OSError:
                pass
        os._exit(0)
    """, timeout_s=3.0)
    assert r.error_kind == "bad_proof"


def test_fallback_output_flood(fallback_sandbox, marker):
    r = run_hostile(fallback_sandbox, marker, "while True:\n    print('y' * 10000)\n", timeout_s=5.0)
    assert r.error_kind == "output_limit"


def test_fallback_network_blocked_by_audit_hook(fallback_sandbox, marker):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    try:
        r = run_hostile(fallback_sandbox, marker, f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {srv.getsockname()[1]}), timeout=2)
        """, timeout_s=5.0)
        assert r.error_kind == "code:PermissionError"
        with pytest.raises(BlockingIOError):
            srv.accept()
    finally:
        srv.close()
