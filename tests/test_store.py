"""The artifact store, run against a local folder and a real S3-protocol server (moto) on loopback."""

import json

import pytest

from primer.config import StoreConfig
from primer.errors import StoreError
from primer.store import content_key, open_store


def test_write_read_roundtrip(store_cfg):
    store = open_store(store_cfg)
    uri = store.uri("misc", "hello.json")
    store.write_json(uri, {"a": 1})
    assert store.exists(uri)
    assert store.read_json(uri) == {"a": 1}
    assert uri.startswith("s3://") == store_cfg.root.startswith("s3://")


def test_stage_output_is_incomplete_until_manifest(store_cfg):
    store = open_store(store_cfg)
    out = store.output("demo", content_key("v1", {"x": 1}))
    with out.open_local("part-0.txt") as local:
        local.write_text("hello")
    assert store.exists(out.file_uri("part-0.txt"))
    assert not out.is_complete()
    with pytest.raises(StoreError, match="incomplete output"):
        out.read_manifest()
    manifest = out.commit({"kind": "demo"})
    assert out.is_complete()
    again = store.output("demo", out.key).read_manifest()
    assert again["content_hash"] == manifest["content_hash"]
    assert [f["name"] for f in again["files"]] == ["part-0.txt"]


def test_failed_write_commits_nothing(store_cfg):
    store = open_store(store_cfg)
    out = store.output("demo", "crash")
    with pytest.raises(RuntimeError):
        with out.open_local("part-0.txt") as local:
            local.write_text("half")
            raise RuntimeError("killed mid-write")
    assert not store.exists(out.file_uri("part-0.txt"))


def test_clean_partial_removes_an_unfinished_attempt(store_cfg):
    store = open_store(store_cfg)
    out = store.output("demo", "partial")
    with out.open_local("part-0.txt") as local:
        local.write_text("x")
    assert out.clean_partial() == 1
    assert not store.exists(out.file_uri("part-0.txt"))


def test_content_key_changes_with_any_input():
    base = content_key(1, {"seq_len": 256}, ["abc"])
    assert base == content_key(1, {"seq_len": 256}, ["abc"])
    assert base != content_key(1, {"seq_len": 512}, ["abc"])
    assert base != content_key(1, {"seq_len": 256}, ["abd"])
    assert base != content_key(2, {"seq_len": 256}, ["abc"])


def test_missing_bucket_is_a_clear_error(s3_env):
    with pytest.raises(StoreError, match="bucket does not exist"):
        open_store(StoreConfig(root="s3://no-such-bucket-primer/x", endpoint_url=s3_env["endpoint"]))


def test_unreachable_endpoint_is_a_clear_error(s3_env):
    from tests.conftest import free_port

    with pytest.raises(StoreError, match="cannot reach the store") as err:
        open_store(StoreConfig(root=f"s3://{s3_env['bucket']}/x", endpoint_url=f"http://127.0.0.1:{free_port()}"))
    assert "primer-test-secret-value-XYZ" not in str(err.value)


def test_manifest_is_valid_json_with_file_hashes(tmp_path):
    store = open_store(StoreConfig(root=str(tmp_path)))
    out = store.output("demo", "k")
    with out.open_local("a.bin") as local:
        local.write_bytes(b"abc")
    out.commit({"kind": "demo"})
    manifest = json.loads((tmp_path / "demo" / "k" / "manifest.json").read_text())
    assert manifest["files"][0]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert manifest["files"][0]["bytes"] == 3


def test_a_concurrent_writer_cannot_leave_a_manifest_over_missing_files(store_cfg):
    """Run A is writing; run B of the same stage and inputs starts and clears A's files as leftovers."""
    store = open_store(store_cfg)
    a, b = store.output("demo", "shared-key"), store.output("demo", "shared-key")
    for name in ("part-0.txt", "nested/part-1.txt"):
        with a.open_local(name) as local:
            local.write_text("a")
    assert a.missing_files() == []
    assert b.clean_partial() == 2  # B takes A's files for a crashed attempt's leftovers
    with pytest.raises(StoreError, match=r"2 file\(s\) written by this run vanished .*part-0.txt.*another run"):
        a.commit({"kind": "demo"})
    assert not a.is_complete()  # no manifest over missing files
    for name in ("part-0.txt", "nested/part-1.txt"):
        with b.open_local(name) as local:
            local.write_text("a")
    assert [f["name"] for f in b.commit({"kind": "demo"})["files"]] == ["nested/part-1.txt", "part-0.txt"]
    assert a.missing_files() == []  # B's identical files are in place now
