"""Where MBPP comes from: the lookup order, the sha256-pinned download (against a loopback HTTP server), and a
bare clone with no MBPP anywhere failing with one message."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from primer.errors import InputError
from primer.scoring import data_files as D
from tests.conftest import REPO, write_mbpp_format_file


@pytest.fixture
def http_dir(tmp_path):
    """A real HTTP server on 127.0.0.1 serving `tmp_path/www`; yields (base URL, folder, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            seen.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root, seen
    server.shutdown()
    server.server_close()


def _pinned(path: Path, url: str) -> D.PinnedFile:
    return D.PinnedFile("mbpp.jsonl", url, hashlib.sha256(path.read_bytes()).hexdigest(), "MBPP")


def test_download_is_verified_cached_and_reused_offline(http_dir, tmp_path):
    base, www, seen = http_dir
    write_mbpp_format_file(www / "mbpp.jsonl", n=20)
    pinned = _pinned(www / "mbpp.jsonl", f"{base}/mbpp.jsonl")
    got = D.fetch_pinned(pinned, tmp_path / "cache")
    assert got.read_bytes() == (www / "mbpp.jsonl").read_bytes() and pinned.sha256 in str(got)
    assert len(seen) == 1
    (www / "mbpp.jsonl").unlink()  # upstream gone: the verified copy is used, nothing is fetched
    assert D.fetch_pinned(pinned, tmp_path / "cache") == got and len(seen) == 1
    got.write_text("edited\n")  # a cached copy changed after the fact is not trusted
    with pytest.raises(InputError, match="could not download"):
        D.fetch_pinned(pinned, tmp_path / "cache")


def test_wrong_hash_is_refused_and_nothing_is_kept(http_dir, tmp_path):
    base, www, _ = http_dir
    write_mbpp_format_file(www / "mbpp.jsonl", n=20)
    pinned = D.PinnedFile("mbpp.jsonl", f"{base}/mbpp.jsonl", "0" * 64, "MBPP")
    with pytest.raises(InputError, match=r"refused .*sha256 [0-9a-f]{64} is not the pinned 0{64}"):
        D.fetch_pinned(pinned, tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_the_real_pin_refuses_a_look_alike(http_dir, tmp_path, monkeypatch):
    """The product's own pin (upstream commit 2251e8c6, sha256 0b7004a7...): a file in MBPP's format that is
    not the upstream file is refused, and the lookup then names PRIMER_MBPP_PATH."""
    base, www, _ = http_dir
    write_mbpp_format_file(www / "mbpp.jsonl")
    monkeypatch.delenv(D.MBPP_ENV, raising=False)
    monkeypatch.setattr(D, "MBPP_BESIDE_CHECKOUT", tmp_path / "none" / "mbpp.jsonl")
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("PRIMER_MBPP_URL", f"{base}/mbpp.jsonl")
    assert D.MBPP_FILE.sha256 == "0b7004a79cd62d9ec7ecdd5a6e5f0ef1210ff00b286df3c5d5b57bf38c58e19a"
    assert D.MBPP_COMMIT in D.MBPP_FILE.url and D.MBPP_FILE.url.endswith("/mbpp/mbpp.jsonl")
    with pytest.raises(InputError, match=r"PRIMER_MBPP_PATH.*refused"):
        D.locate_mbpp()


def test_lookup_order(tmp_path, monkeypatch):
    shared = write_mbpp_format_file(tmp_path / "shared.jsonl", n=3)
    env = write_mbpp_format_file(tmp_path / "env.jsonl", n=3)
    monkeypatch.setattr(D, "MBPP_BESIDE_CHECKOUT", shared)
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(D.MBPP_ENV, str(env))
    assert D.locate_mbpp("s3://bucket/mbpp.jsonl") == "s3://bucket/mbpp.jsonl"  # configured wins, as given
    assert D.locate_mbpp() == str(env)
    monkeypatch.delenv(D.MBPP_ENV)
    assert D.locate_mbpp() == str(shared)
    monkeypatch.setattr(D, "MBPP_BESIDE_CHECKOUT", tmp_path / "none.jsonl")
    cached = D.cached_path(D.MBPP_FILE)
    cached.parent.mkdir(parents=True)
    shutil.copyfile(shared, cached)  # not the pinned content: not used
    assert D.find_mbpp_offline() == ""
    with pytest.raises(InputError, match="downloads disabled"):
        D.locate_mbpp(download=False)


def _bare_copy(dest: Path) -> Path:
    """The repository's tracked layout (code + tests), with nothing beside it."""
    for part in ("primer", "model", "tasks", "flows", "tests", "pyproject.toml"):
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(src, dest / part)
    return dest


def test_bare_clone_offline_without_mbpp_stops_with_one_message(tmp_path):
    clone = _bare_copy(tmp_path / "bare" / "primer")
    assert not (clone.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k != D.MBPP_ENV}
    env.update({"PYTHONPATH": str(clone), D.CACHE_ENV: str(tmp_path / "empty-cache"),
                "PRIMER_MBPP_URL": "http://127.0.0.1:9/mbpp.jsonl"})  # offline: nothing listens on port 9
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/scoring/test_reference_solutions.py", "tests/scoring/test_benchmark_data.py"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out
    assert out.count("PRIMER_MBPP_PATH") == 1 and "Traceback" not in out, out
    assert "MBPP not found" in out and "could not download" in out
