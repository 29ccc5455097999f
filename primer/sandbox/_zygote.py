"""Primer sandbox fork server ("zygote").  Standard library only; started by primer.sandbox.executor as

    python -I -B _zygote.py            (its config, with the programs' environment, comes on stdin)

with a scrubbed environment.  It never imports anything from Primer, so no harness state, credential or
object can leak into the memory of the programs it forks.

Process tree (namespace mode):

    harness ─► Z  this process: sets up the network + mount namespaces (read-only host, tmpfs /tmp), forks S,
               │  then only waits for it
               └─ S  request server (reads the harness's requests on the pipes it inherited): pid 1 of a PID
                  │  namespace holding only it and the programs, own mount namespace with a /proc of that
                  │  namespace; hands each request to P, watches it, checks the proof, kill(-1)s whatever P
                  │  left, answers
                  └─ P  one per program, forked *ahead* (right after the previous answer, when nothing of the
                        previous program is left): session, fds, working dir, rlimits, as root; with the
                        request: uid switch, no_new_privs, the program

Outside a PID namespace (the fallback) Z is the server itself and kills a program's tree by session, uid
and /proc walk.

Wire protocol (harness <-> server): 4-byte big-endian length + UTF-8 JSON, one request then one response.
Completion proof (P <-> S): after the tests ran to their end, P writes b"F\\n" on its report pipe; only then
does S draw a fresh random nonce (it exists nowhere before) and send it on the nonce pipe; P must echo it
back as b"P<nonce>\\n".  Exit codes, stdout markers and objects inside P count for nothing.
"""

import ctypes
import fcntl
import io
import json
import os
import resource
import select
import signal
import struct
import sys
import time

sys.dont_write_bytecode = True

# Modules commonly used by HumanEval / MBPP / exercise solutions: imported once here, shared copy-on-write
# by every forked program.  Stdlib only; nothing that starts threads at import (no numpy / OpenBLAS).
PRELOAD = (
    "abc array bisect builtins calendar cmath collections collections.abc copy dataclasses datetime decimal "
    "enum fractions functools hashlib heapq io itertools json math numbers operator random re statistics "
    "string struct textwrap traceback types typing unicodedata"
).split()
for _m in PRELOAD:
    try:
        __import__(_m)
    except Exception:  # pragma: no cover - optional module missing
        pass

import shutil  # noqa: E402  (supervisor cleanup; imported once here, not per program)
import traceback  # noqa: E402

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_MOVE = 8192
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def mount(src, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def prctl(option, arg2=0):
    _check(_libc.prctl(option, arg2, 0, 0, 0), f"prctl {option}")


def log(msg):
    try:
        os.write(2, f"[primer.sandbox.zygote {os.getpid()}] {msg}\n".encode())
    except OSError:
        pass


# ----------------------------------------------------------------------------------------------- set-up
CAPS = {"root": os.geteuid() == 0, "netns": False, "mountns": False, "pidns": False, "setuid": False,
        "warnings": []}
SANDBOX_ROOT = None  # directory holding per-program working dirs
SANDBOX_UID = None   # unique uid programs of this zygote run as (root mode)
PROGRAM_ENV = {}     # the programs' environment (from the config; plus HOME/TMPDIR/PWD = their working dir)


def _remount_all_readonly():
    """In our private mount namespace, bind-remount every mount point read-only (per-mount flag only:
    MS_BIND|MS_REMOUNT never touches the shared superblock, so the host is unaffected)."""
    flagmap = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
               "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    points = []
    for line in lines:
        parts = line.split()
        mp = parts[4].encode().decode("unicode_escape")
        opts = parts[5].split(",")
        flags = 0
        for o in opts:
            flags |= flagmap.get(o, 0)
        points.append((mp, flags))
    failed = []
    for mp, flags in sorted(points, key=lambda p: p[0].count("/")):
        try:
            mount(None, mp, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)
        except OSError:
            failed.append(mp)
    return failed


def _blocked_ancestor(path):
    """First directory on the way to ``path`` that an unprivileged uid cannot traverse, else None."""
    cur = "/"
    for part in [p for p in path.split("/") if p]:
        try:
            st = os.stat(cur)
        except OSError:
            return None
        if not st.st_mode & 0o001:
            return cur
        cur = os.path.join(cur, part)
    return None


def _expose_python_paths():
    """Python may live under a directory only root can enter (e.g. pyenv in /root, mode 0700).  Inside
    our mount namespace, cover such a directory with an empty read-only tmpfs and bind back only the
    interpreter's own paths (prefixes + sys.path), so the unprivileged program can import the stdlib
    and site-packages while everything else there (dotfiles, credentials) stays hidden."""
    wanted = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    wanted.update(p for p in sys.path if p and os.path.isabs(p) and os.path.exists(p))
    wanted = {os.path.realpath(p) for p in wanted} | wanted
    groups = {}
    for p in sorted(wanted):
        a = _blocked_ancestor(p)
        if a is not None and a != "/":
            groups.setdefault(a, set()).add(p)
    for n_group, (anc, paths) in enumerate(groups.items()):
        # keep only outermost paths
        keep = [p for p in sorted(paths) if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths)]
        staged = []
        for i, p in enumerate(keep):
            stage = f"/tmp/.stage{n_group}_{i}"
            if os.path.isdir(p):
                os.mkdir(stage)
            else:
                open(stage, "w").close()
            mount(p, stage, None, MS_BIND | MS_REC)
            staged.append((stage, p))
        mount("primer-mask", anc, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        for stage, p in staged:
            if os.path.isdir(stage):
                os.makedirs(p, 0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(p), 0o755, exist_ok=True)
                open(p, "w").close()
            mount(stage, p, None, MS_MOVE)
            mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
            if os.path.isdir(stage):
                os.rmdir(stage)
            else:
                os.unlink(stage)
        mount(None, anc, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    return sorted(groups)


def setup(cfg):
    global SANDBOX_ROOT, SANDBOX_UID
    PROGRAM_ENV.update(cfg.get("env") or {})
    mode = cfg.get("isolation", "auto")
    CAPS["private_proc"] = bool(cfg.get("private_proc", True))
    disk_mb = int(cfg.get("disk_mb", 64))
    if mode != "none" and CAPS["root"]:
        try:
            unshare(CLONE_NEWNET)
            CAPS["netns"] = True
            try:
                unshare(CLONE_NEWIPC | CLONE_NEWUTS)  # SysV IPC / hostname private too (best effort)
            except OSError:
                pass
        except OSError as e:
            CAPS["warnings"].append(f"no network namespace ({e}); network is NOT isolated")
        try:
            unshare(CLONE_NEWNS)
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            failed = _remount_all_readonly()
            if failed:
                CAPS["warnings"].append(f"could not remount read-only: {failed}")
            # Private, size-capped, non-world-writable tmpfs for the working dirs; it hides the host /tmp.
            mount("primer-sandbox", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
                  f"size={disk_mb}m,mode=0755,nr_inodes=65536")
            SANDBOX_ROOT = "/tmp"
            CAPS["mountns"] = True
            CAPS["masked"] = _expose_python_paths()
        except OSError as e:
            CAPS["warnings"].append(f"no private mount namespace ({e}); filesystem is NOT read-only")
        # Probe PID namespaces once: fork a child that unshares and forks.
        pid = os.fork()
        if pid == 0:
            try:
                unshare(CLONE_NEWPID)
                q = os.fork()
                if q == 0:
                    os._exit(0 if os.getpid() == 1 else 3)
                _, st = os.waitpid(q, 0)
                os._exit(os.waitstatus_to_exitcode(st))
            except BaseException:
                os._exit(2)
        _, st = os.waitpid(pid, 0)
        CAPS["pidns"] = os.waitstatus_to_exitcode(st) == 0
        if not CAPS["pidns"]:
            CAPS["warnings"].append("no PID namespace; falling back to subreaper + process-tree kill")
    elif mode != "none":
        CAPS["warnings"].append(
            "not running as root: no namespaces, no uid switch; network and filesystem are NOT isolated "
            "(rlimits, session kill, subreaper, env scrub, audit-hook network block still apply)")
    else:
        CAPS["warnings"].append("isolation='none' requested: namespaces disabled (uid switch, rlimits, session "
                                "kill, subreaper and audit-hook network block still apply)")
    if CAPS["root"]:
        blocked = [] if CAPS["mountns"] else sorted(
            {a for a in map(_blocked_ancestor, [sys.base_prefix, sys.prefix] + sys.path[1:]) if a})
        if blocked:
            CAPS["warnings"].append(f"programs stay root (no uid switch, no RLIMIT_NPROC): Python lives under "
                                    f"{blocked}, which other uids cannot enter, and there is no mount namespace")
        else:
            SANDBOX_UID = 100000 + os.getpid()  # unique among live zygotes: pid is unique
            CAPS["setuid"] = True
    if SANDBOX_ROOT is None:
        import tempfile  # noqa: PLC0415
        SANDBOX_ROOT = tempfile.mkdtemp(prefix="primer-sandbox-")
        os.chmod(SANDBOX_ROOT, 0o755)


# ------------------------------------------------------------------------------------------ the program
def _audit_no_network(event, args):  # installed in P only when there is no network namespace
    if event.startswith("socket.") and event not in ("socket.gethostname", "socket.sethostname"):
        raise PermissionError(f"network disabled in sandbox ({event})")


_HARD_LIMITS = {r: resource.getrlimit(r)[1] for r in (
    resource.RLIMIT_AS, resource.RLIMIT_DATA, resource.RLIMIT_CPU, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE,
    resource.RLIMIT_NOFILE, resource.RLIMIT_CORE, resource.RLIMIT_MEMLOCK, resource.RLIMIT_MSGQUEUE)}


def _set_limits(lim):
    """The program's rlimits (P, still root: a later request with higher limits can raise them again)."""
    mem = int(lim["memory_mb"]) * 1024 * 1024
    nproc = int(lim["max_processes"])
    if not CAPS["setuid"]:
        # rlimit NPROC counts every process of the real uid: leave room for those already running.
        nproc += _count_uid_processes(os.getuid())
    for res, val in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_DATA, mem),
                     (resource.RLIMIT_CPU, int(lim["cpu_s"])), (resource.RLIMIT_NPROC, nproc),
                     (resource.RLIMIT_FSIZE, int(lim["max_file_mb"]) * 1024 * 1024),
                     (resource.RLIMIT_NOFILE, int(lim["max_open_files"])),
                     (resource.RLIMIT_CORE, 0), (resource.RLIMIT_MEMLOCK, 0),
                     (resource.RLIMIT_MSGQUEUE, 0)):
        hard = _HARD_LIMITS[res]  # the fork server's own: what this machine allows
        if hard != resource.RLIM_INFINITY:
            val = min(val, hard)
        try:
            resource.setrlimit(res, (val, val))
        except (ValueError, OSError):
            pass


def _death_signal(parent):
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() != parent:  # the server died before the death signal was armed
        os._exit(0)


def run_child(workdir, fds, parent, limits_ahead=None):
    """Runs in P, forked by the server ahead of its request, while no other program of this server is alive.
    Never returns. Until the request comes P stays root and does what does not depend on the program: its
    session, its fds (0 /dev/null, 1/2 stdout/stderr pipes, 3 report pipe, 4 nonce pipe, 5 request pipe),
    its working dir, and the rlimits of the previous request (usually the same). With the request: the
    rlimits if they differ, then the uid switch, no_new_privs, the death signal again (the uid switch
    clears it), and the program. The environment and sys.std* were made once by the server."""
    try:
        os.setsid()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 16) for fd in fds]  # above every target: no dup2 clobbers a source
        high.insert(0, os.open("/dev/null", os.O_RDONLY))
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(len(high), 65536)
        os.chdir(workdir)
        os.environ["HOME"] = os.environ["TMPDIR"] = os.environ["PWD"] = workdir
        _death_signal(parent)
        if limits_ahead is not None:
            _set_limits(limits_ahead)
        body = _read_msg(5)
        if body is None:  # no request: the server is shutting down
            os._exit(0)
        os.close(5)
        req = json.loads(body)
        del body
        if req["limits"] != limits_ahead:
            _set_limits(req["limits"])
        if CAPS["setuid"]:
            os.setgroups([])
            os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
            os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
        try:
            prctl(PR_SET_NO_NEW_PRIVS, 1)
        except OSError:
            pass
        _death_signal(parent)
        if not CAPS["netns"]:
            sys.addaudithook(_audit_no_network)
        code, tests = req["code"], req["tests"]
        del req, fds
    except BaseException:
        try:
            os.write(2, traceback.format_exc().encode())
        except OSError:
            pass
        os._exit(120)

    import builtins
    # Pin what the runner needs before user code runs: candidate code may rebind builtins.compile/exec (to
    # make the tests a no-op) or install trace hooks that jump over asserts.
    _compile, _exec, _settrace, _setprofile = compile, exec, sys.settrace, sys.setprofile
    g = {"__name__": "__main__", "__builtins__": builtins}
    stage = "code"
    try:
        c = _compile(code, "<candidate>", "exec")
        del code
        _exec(c, g)
        stage = "tests"
        _settrace(None)
        _setprofile(None)
        c = _compile(tests, "<tests>", "exec")
        del tests
        _exec(c, g)
        stage = "done"
    except BaseException as e:  # noqa: BLE001 - SystemExit / KeyboardInterrupt are failures too
        kind = type(e).__name__
        try:
            traceback.print_exc(limit=5)
        except BaseException:
            pass
        _flush()
        try:
            os.write(3, f"X{stage}:{kind}\n".encode()[:200])
        except BaseException:
            pass
        os._exit(1)
    if sys.gettrace() is not None or sys.getprofile() is not None:
        # a trace/profile hook set during the tests could have skipped statements: not a pass
        os.write(2, b"sandbox: trace/profile hook active at the end of the tests\n")
        os.write(3, b"Xtests:TraceHookActive\n")
        os._exit(1)
    _flush()
    # --- completion proof: the nonce is created by C only after it receives "F"
    try:
        os.write(3, b"F\n")
        nonce = b""
        while len(nonce) < 32:
            chunk = os.read(4, 32 - len(nonce))
            if not chunk:
                break
            nonce += chunk
        os.write(3, b"P" + nonce + b"\n")
    except BaseException:
        os._exit(1)
    os._exit(0)


def _flush():
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except BaseException:
            pass


def _count_uid_processes(uid):
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


# ------------------------------------------------------------------------------------------ supervisor
def _children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read()
            ppid = int(s[s.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _kill_descendants(root_pid):
    """Fallback kill: SIGKILL every descendant of root_pid (we are a subreaper, so orphans of the
    program re-parent to us and stay in this tree).  SIGSTOP first so a fork bomb cannot outrun us."""
    for _ in range(50):
        kids = _children_map()
        todo, found = [root_pid], []
        while todo:
            p = todo.pop()
            for k in kids.get(p, ()):
                found.append(k)
                todo.append(k)
        if not found:
            return
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for p in found:
                try:
                    os.kill(p, sig)
                except OSError:
                    pass
        _reap_all(block=False)
        time.sleep(0.002)


def _reap_all(block=True, deadline=None):
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return True
        except InterruptedError:
            continue
        if pid == 0:
            if not block:
                return False
        if deadline is not None and time.monotonic() > deadline:
            return False


def fork_program(workdir, limits_ahead=None):
    """Fork P ahead of its request (see run_child), in a fresh working dir. Called only once the previous
    program and everything it started are dead, so no program runs while the next one is made. Returns
    (pid, stdout, stderr, report, nonce, request pipe ends the server keeps, working dir)."""
    os.mkdir(workdir, 0o700)
    if CAPS["setuid"]:
        os.chown(workdir, SANDBOX_UID, SANDBOX_UID)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    rep_r, rep_w = os.pipe()
    non_r, non_w = os.pipe()
    req_r, req_w = os.pipe()
    child_fds = [out_w, err_w, rep_w, non_r, req_r]
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        run_child(workdir, child_fds, parent, limits_ahead)  # closes every fd but its own six
        os._exit(121)
    for fd in child_fds:
        os.close(fd)
    return pid, out_r, err_r, rep_r, non_w, req_w, workdir


def _kill_namespace():
    """The server is pid 1 of the programs' PID namespace: kill(-1) reaches every other process in it (nested
    namespaces included) and forks racing with it fail; orphans re-parent to the server, which reaps them."""
    for _ in range(100):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:  # ESRCH: nothing left
            return
        _reap_all(block=True, deadline=time.monotonic() + 5)


def supervise(req, body, child, pidns, own_proc):
    """Runs in the server: hands the request to the program process forked ahead, watches it, kills what is
    left of it, and returns the result."""
    result = {"status": "error", "error_kind": "sandbox_internal", "stdout": "", "stderr": "",
              "duration_s": 0.0, "exit_code": None, "signal": None, "isolation": []}
    try:
        lim = req["limits"]
        iso = [k for k in ("netns", "mountns", "setuid") if CAPS[k]] + (["pidns"] if pidns else [])
        if own_proc:
            iso.append("proc")
        result["isolation"] = iso
        pid, out_r, err_r, rep_r, non_w, req_w, workdir = child
        t0 = time.monotonic()
        try:
            _write_all(req_w, struct.pack(">I", len(body)) + body)
        except OSError:
            pass  # P died before its request: its exit is seen below
        os.close(req_w)
        del req, body
        deadline = t0 + float(lim["timeout_s"])
        tail = int(lim["tail_bytes"])
        max_out = int(lim["max_output_bytes"])
        bufs = {out_r: bytearray(), err_r: bytearray()}
        total_out = 0
        rep = bytearray()
        nonce = None
        proof_ok = False
        reason = None
        status = None
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        open_fds = {out_r, err_r, rep_r}
        exited = False
        wstatus = None
        exit_seen_at = None
        while True:
            now = time.monotonic()
            if not exited:
                if now >= deadline:
                    reason = "wall_timeout"
                    break
                wait = deadline - now
            else:
                # program ended: its whole PID namespace is gone; drain what is left in the pipes
                if not open_fds or now - exit_seen_at > 0.2:
                    break
                wait = 0.2 - (now - exit_seen_at)
            rl = list(open_fds)
            if pidfd is not None and not exited:
                rl.append(pidfd)
            try:
                ready, _, _ = select.select(rl, [], [], min(wait, 0.05 if pidfd is None else wait))
            except InterruptedError:
                continue
            for fd in ready:
                if fd == pidfd:
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    open_fds.discard(fd)
                    continue
                if fd == rep_r:
                    rep += chunk
                    if len(rep) > 4096:
                        reason = "report_flood"
                        break
                    if nonce is None and rep.startswith(b"F\n"):
                        # tests finished: only now does a nonce exist anywhere
                        nonce = os.urandom(16).hex().encode()
                        try:
                            os.write(non_w, nonce)
                        except OSError:
                            pass
                    if nonce is not None and rep == b"F\nP" + nonce + b"\n":
                        proof_ok = True
                else:
                    total_out += len(chunk)
                    b = bufs[fd]
                    b += chunk
                    if len(b) > 2 * tail:
                        del b[:-tail]
                    if total_out > max_out:
                        reason = "output_limit"
                        break
            if reason:
                break
            if not exited:
                try:
                    wpid, wstatus = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    wpid, wstatus = pid, 0
                if wpid == pid:
                    exited = True
                    exit_seen_at = time.monotonic()
                    if pidfd is not None:
                        os.close(pidfd)
                        pidfd = None
                    if pidns:  # what it started dies with it (as if it were its namespace's init)
                        _kill_namespace()
        duration = time.monotonic() - t0
        if pidfd is not None:
            os.close(pidfd)
        # ---- kill everything that is left
        if not exited:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                _, wstatus = os.waitpid(pid, 0)
            except ChildProcessError:
                wstatus = None
        _kill_rest(pid, pidns)
        # ---- verdict
        rc = sig = None
        if wstatus is not None:
            if os.WIFEXITED(wstatus):
                rc = os.WEXITSTATUS(wstatus)
            elif os.WIFSIGNALED(wstatus):
                sig = os.WTERMSIG(wstatus)
        rep_s = bytes(rep).decode("utf-8", "replace")
        if reason == "wall_timeout":
            status, kind = "timeout", "wall_timeout"
        elif reason:
            status, kind = "failed", reason
        elif proof_ok:
            status, kind = "passed", None
        elif rep_s.startswith("X"):
            status, kind = "failed", rep_s[1:].split("\n", 1)[0]
        elif sig in (signal.SIGXCPU, signal.SIGKILL) and sig is not None:
            status, kind = "timeout", "cpu_timeout"
        elif sig is not None:
            status, kind = "failed", f"signal:{signal.Signals(sig).name}"
        elif rc == 120:
            status, kind = "error", "sandbox_setup"
        elif nonce is not None:
            status, kind = "failed", "bad_proof"
        else:
            status, kind = "failed", "early_exit"
        result.update(status=status, error_kind=kind, duration_s=round(duration, 6), exit_code=rc, signal=sig,
                      stdout=bytes(bufs[out_r][-tail:]).decode("utf-8", "replace"),
                      stderr=bytes(bufs[err_r][-tail:]).decode("utf-8", "replace"))
    except BaseException:
        result["stderr"] = traceback.format_exc()[-4000:]
        if child is not None:  # whatever went wrong here, nothing of the program may outlive its request
            try:
                os.kill(child[0], signal.SIGKILL)
            except OSError:
                pass
            _kill_rest(child[0], pidns)
    finally:
        if child is not None:
            for fd in child[1:5]:
                try:
                    os.close(fd)
                except OSError:
                    pass
            try:
                os.rmdir(child[6])  # most programs leave it empty
            except OSError:
                shutil.rmtree(child[6], ignore_errors=True)
    return result


def _kill_rest(pid, pidns):
    """Kill and reap everything the program started (it is dead itself or being killed)."""
    if pidns:
        _kill_namespace()
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        if CAPS["setuid"]:
            _kill_uid(SANDBOX_UID)
        _kill_descendants(os.getpid())
    _reap_all(block=True, deadline=time.monotonic() + 5)


def _kill_uid(uid):
    """Root fallback without PID namespace: a helper running as the program's unique uid kills every
    process of that uid (kill(-1) only reaches processes the caller may signal: exactly that uid)."""
    h = os.fork()
    if h == 0:
        try:
            os.setresuid(uid, uid, uid)
            for _ in range(3):
                os.kill(-1, signal.SIGKILL)
        except BaseException:
            pass
        os._exit(0)
    try:
        os.waitpid(h, 0)
    except ChildProcessError:
        pass


# ------------------------------------------------------------------------------------------ main loop
def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _send(obj):
    _send_bytes(json.dumps(obj).encode())


def _send_bytes(data):
    _write_all(1, struct.pack(">I", len(data)) + data)


def _read_msg(fd):
    hdr = _read_exact(fd, 4)
    return None if hdr is None else _read_exact(fd, struct.unpack(">I", hdr)[0])


def _program_process_state():
    """Made once in the server and inherited by every program process: its environment (plus HOME/TMPDIR/PWD
    set per program) and sys.std* over fds 0-2 (the program's pipes once it has dup'ed them there; the server
    itself never uses sys.std*, only os.read/os.write on the harness pipes)."""
    os.environ.clear()
    os.environ.update(PROGRAM_ENV)
    sys.argv = ["<program>"]
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=False)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # Python's default: EPIPE as an exception
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGALRM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def serve(pidns, own_proc, hello):
    """The request loop. A program process is always forked ahead: right after the previous program's answer
    (in namespace mode; outside one, just before it, so the answer can name it for leftover checks)."""
    import gc  # noqa: PLC0415
    _program_process_state()
    gc.collect()
    gc.freeze()  # keep the collector from touching (and so copying) the shared heap in every fork
    n = 0
    limits_ahead = None
    nxt = None

    def ahead():
        nonlocal n, nxt
        n += 1
        try:
            nxt = fork_program(os.path.join(SANDBOX_ROOT, f"w{n}"), limits_ahead if CAPS["root"] else None)
        except OSError as e:
            nxt = None
            log(f"cannot fork a program process: {e}")

    ahead()
    if hello is not None:
        _send({**hello, "spare": None if pidns or nxt is None else nxt[0]})
    while True:
        body = _read_msg(0)
        if body is None:
            break
        if nxt is None:
            ahead()
        try:
            req = json.loads(body)
        except ValueError:
            req = None
        if nxt is None or req is None:
            res = {"status": "error", "error_kind": "sandbox_setup", "stdout": "",
                   "stderr": "bad request" if req is None else "cannot fork a program process", "duration_s": 0.0,
                   "exit_code": None, "signal": None, "isolation": []}
        else:
            res = supervise(req, body, nxt, pidns, own_proc)
            limits_ahead = req["limits"]
        nxt = None
        del body, req
        if pidns:
            _send(res)
            ahead()
        else:
            ahead()
            res["spare"] = nxt[0] if nxt else None  # not a leftover of the program: the harness may tell them apart
            _send(res)
    if nxt is not None:  # shutting down: the waiting program process sees EOF instead of a request and exits
        os.close(nxt[5])
        for fd in nxt[1:5]:
            os.close(fd)
        _reap_all(block=True, deadline=time.monotonic() + 5)
        shutil.rmtree(nxt[6], ignore_errors=True)


def main():
    cfg = json.loads(_read_msg(0) or b"{}")  # on stdin, not argv: the environment is not shown in ps
    setup(cfg)
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)  # anything escaping a program lands here and is killed
    except OSError:
        pass
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for w in CAPS["warnings"]:
        log(w)
    hello = {"hello": 1, "caps": CAPS, "pid": os.getpid()}
    if not CAPS["pidns"]:
        serve(False, False, hello)
    else:
        # The server runs as pid 1 of a PID namespace that holds only it and the programs, with its own mount
        # namespace and a /proc showing only that PID namespace. This process only waits for it.
        unshare(CLONE_NEWPID)
        ready_r, ready_w = os.pipe()
        server = os.fork()
        if server == 0:
            os.close(ready_r)
            _death_signal(0)  # its parent is outside its PID namespace: getppid() is 0 while that lives
            own_proc = False
            if CAPS["mountns"] and CAPS.get("private_proc", True):
                try:
                    unshare(CLONE_NEWNS)
                    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
                    own_proc = True
                except OSError as e:
                    log(f"no private /proc ({e})")
            os.write(ready_w, b"1" if own_proc else b"0")
            os.close(ready_w)
            serve(True, own_proc, None)
            os._exit(0)
        os.close(ready_w)
        own = os.read(ready_r, 1)
        os.close(ready_r)
        if own:
            _send({**hello, "server": server, "spare": None})
        while True:
            try:
                os.waitpid(server, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    if not CAPS["mountns"]:
        shutil.rmtree(SANDBOX_ROOT, ignore_errors=True)  # host temp dir of the fallback mode


if __name__ == "__main__":
    main()
